"""Built-in reducers for :func:`jaxuq.mc_reduce`: moments, and classifier summaries.

Both merge chunk statistics with the pairwise update of Chan, Golub and
LeVeque (mean and sum of squared deviations), which stays accurate when the
mean is large compared with the spread, unlike sums of squares.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import entr

from jaxuq._src.metrics import _checks
from jaxuq._src.reduce import Reducer


def _acc_dtype(dtype: Any) -> Any:
  """float32 at least (bfloat16 and float16 sums would saturate), float64 kept."""
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.promote_types(dtype, jnp.float32)
  return jnp.float32


class _Moments(NamedTuple):
  """One output leaf's running moments (a class of its own: a user's dict may hold 'm2').

  The mean is kept as ``shift + offset``: ``shift`` one sample of the first
  chunk, ``offset`` the mean's distance from it. Outputs far from 0 (1e6 + 0.1
  noise in float32) then merge through small numbers, and the rounding of
  1e6-sized means never enters the spread.
  """

  shift: jax.Array
  offset: jax.Array
  m2: jax.Array
  c2: jax.Array | None  # the co-moment across the last axis, with covariance=True


def _is_moments(t: Any) -> bool:
  return isinstance(t, _Moments)


def _chan(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
  """Merges (count, mean, M2) of two disjoint sets (Chan et al. 1979)."""
  n = n_a + n_b
  frac = jnp.where(n > 0, n_b / jnp.maximum(n, 1), 0.0).astype(mean_a.dtype)
  delta = mean_b - mean_a
  mean = mean_a + delta * frac
  m2 = m2_a + m2_b + delta * delta * (n_a.astype(frac.dtype) * frac)
  return mean, m2, delta, frac


def _chunk_deviations(x: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
  """A chunk's mean and its samples' deviations from it, both in ``dtype``.

  Shifted by the chunk's first sample first (``x - x[0]`` is exact for samples
  close together), so that outputs far from 0 (1e6 + 0.1 noise in float32) do
  not lose their spread to the rounding of the chunk's sum.
  """
  x = x.astype(dtype)
  shifted = x - x[:1]
  offset = shifted.mean(axis=0)
  return x[0] + offset, shifted - offset[None]


@functools.cache
def moments_reducer(covariance: bool = False) -> Reducer:
  """Mean and variance of every output leaf over the samples (optionally the covariance).

  The variance divides by the number of samples (``ddof = 0``, as
  :func:`jaxuq.predictive_std`). With ``covariance=True`` each leaf of shape
  ``(..., d)`` also gets the covariance across its last axis, ``(..., d, d)``.
  Sums accumulate in float32 at least (float64 inputs stay float64). Integer
  outputs are converted to float32 first: exact up to ``2**24`` in magnitude;
  beyond it, subtract an offset inside the predictive function (the eager summaries such as :func:`jaxuq.predictive_std`
  refuse such integers; inside ``mc_reduce`` their values are never seen).

  Args:
    covariance: also return ``'cov'``.

  Returns:
    A :class:`jaxuq.Reducer` whose result is ``{'count', 'mean', 'var'[, 'cov']}``
    (``mean``, ``var`` and ``cov`` with the output's tree structure).

  References:
    Chan, T. F., Golub, G. H. & LeVeque, R. J. (1979). Updating formulae and a
    pairwise algorithm for computing sample variances. Technical Report
    STAN-CS-79-773, Stanford University.
  """

  def init(example):
    def leaf(a):
      if jnp.issubdtype(a.dtype, jnp.complexfloating):
        raise TypeError(
          f"moments_reducer takes real outputs, got a leaf of dtype {a.dtype}; reduce the "
          "real and imaginary parts as two outputs (jnp.real(y), jnp.imag(y))"
        )
      dtype = _acc_dtype(a.dtype)
      c2 = None
      if covariance:
        if len(a.shape) < 1:
          raise ValueError(
            "moments_reducer(covariance=True) needs outputs with a last axis to take the "
            f"covariance across; got a leaf of shape {tuple(a.shape)}"
          )
        c2 = jnp.zeros((*a.shape, a.shape[-1]), dtype)
      zeros = jnp.zeros(a.shape, dtype)
      return _Moments(zeros, zeros, zeros, c2)

    return {"count": jnp.zeros((), jnp.int32), "leaves": jax.tree.map(leaf, example)}

  def merge(a, b):
    n_a, n_b = a["count"], b["count"]

    def leaf(la, lb):
      # b's offset in a's frame: the shifts are samples close together, so their difference
      # is exact; an empty a takes b as it is.
      b_offset = (lb.shift - la.shift) + lb.offset
      offset, m2, delta, frac = _chan(n_a, la.offset, la.m2, n_b, b_offset, lb.m2)
      c2 = None
      if covariance:
        outer = delta[..., :, None] * delta[..., None, :]
        c2 = la.c2 + lb.c2 + outer * (n_a.astype(frac.dtype) * frac).astype(offset.dtype)
      merged = _Moments(la.shift, offset, m2, c2)
      return jax.tree.map(lambda x, y: jnp.where(n_a > 0, x, y), merged, lb)

    leaves = jax.tree.map(leaf, a["leaves"], b["leaves"], is_leaf=_is_moments)
    return {"count": n_a + n_b, "leaves": leaves}

  def update(state, chunk):
    def leaf(st, x):
      x = x.astype(st.offset.dtype)
      shifted = x - x[:1]
      offset = shifted.mean(axis=0)
      d = shifted - offset[None]
      c2 = jnp.einsum("s...i,s...j->...ij", d, d) if covariance else None
      return _Moments(x[0], offset, jnp.square(d).sum(axis=0), c2)

    n = jax.tree.leaves(chunk)[0].shape[0]
    part = jax.tree.map(leaf, state["leaves"], chunk, is_leaf=_is_moments)
    return merge(state, {"count": jnp.asarray(n, jnp.int32), "leaves": part})

  def finalize(state):
    n = jnp.maximum(state["count"], 1)
    leaves = state["leaves"]
    out = {
      "count": state["count"],
      "mean": jax.tree.map(lambda t: t.shift + t.offset, leaves, is_leaf=_is_moments),
      "var": jax.tree.map(lambda t: t.m2 / n.astype(t.m2.dtype), leaves, is_leaf=_is_moments),
    }
    if covariance:
      out["cov"] = jax.tree.map(lambda t: t.c2 / n.astype(t.c2.dtype), leaves, is_leaf=_is_moments)
    return out

  return Reducer(init, update, merge, finalize)


def _check_probabilities(result) -> None:
  # The mean of probability vectors is one; the mean of logits or sigmoids almost never.
  _checks.check_simplex(
    result["mean_probs"],
    "classification_reducer's samples (averaged over the passes; pass from_logits=True for logits)",
  )


@functools.cache
def classification_reducer(from_logits: bool = False) -> Reducer:
  """The MC summaries of a classifier, streamed: mean probabilities, entropies, MI, votes, std.

  The samples are class probabilities ``(batch..., classes)`` per pass (or
  logits with ``from_logits=True``, turned into probabilities pass by pass).
  In nats with ``0 log 0 = 0``, as :mod:`jaxuq.metrics`:

  * ``mean_probs``: ``p̄ = (1/S) Σ_s p_s``;
  * ``predictive_entropy``: ``H[p̄]``;
  * ``expected_entropy``: ``(1/S) Σ_s H[p_s]``;
  * ``mutual_information``: ``H[p̄] - (1/S) Σ_s H[p_s]`` (BALD's score; the
    difference form, so rounding of about ``1e-7 log(classes)`` in float32 can
    show; values below 0 from rounding are returned as 0);
  * ``votes``: how many passes predicted each class (``argmax``, ties to the
    lowest index) and ``variation_ratio``: ``1 - max votes / S``;
  * ``class_std``: the standard deviation of each class probability over the
    passes (``ddof = 0``), ``(batch..., classes)``.

  With ``from_logits=False`` the reducer's ``check`` refuses samples that are
  not probabilities: after the reduction, ``mean_probs`` must lie in
  ``[0, 1]`` and sum to 1 over the classes (the tolerance of
  :mod:`jaxuq.metrics`). Logits, sigmoids or unnormalised scores fail it, so
  they raise instead of giving finite, plausible, wrong entropies.

  Args:
    from_logits: the samples are logits (softmax over the last axis per pass).

  Returns:
    A :class:`jaxuq.Reducer` for predictive functions returning one array.

  Raises:
    ValueError: (from :func:`jaxuq.mc_reduce`) the function returns more than
      one array or a scalar; or, with ``from_logits=False``, its samples'
      mean is not a probability vector.

  References:
    Gal, Y., Islam, R. & Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
    Chan, T. F., Golub, G. H. & LeVeque, R. J. (1979). Updating formulae and a
    pairwise algorithm for computing sample variances. Stanford CS report.
  """

  def _probs(example):
    leaves = jax.tree.leaves(example)
    if len(leaves) != 1 or len(leaves[0].shape) < 1:
      raise ValueError(
        "classification_reducer needs a predictive function returning one array of "
        f"probabilities (or logits) with a last class axis; got {example}"
      )
    return leaves[0]

  def init(example):
    p = _probs(example)
    dtype = _acc_dtype(p.dtype)
    return {
      "count": jnp.zeros((), jnp.int32),
      "mean": jnp.zeros(p.shape, dtype),
      "m2": jnp.zeros(p.shape, dtype),
      "entropy_sum": jnp.zeros(p.shape[:-1], dtype),
      "votes": jnp.zeros(p.shape, jnp.int32),
    }

  def merge(a, b):
    mean, m2, _, _ = _chan(a["count"], a["mean"], a["m2"], b["count"], b["mean"], b["m2"])
    return {
      "count": a["count"] + b["count"],
      "mean": mean,
      "m2": m2,
      "entropy_sum": a["entropy_sum"] + b["entropy_sum"],
      "votes": a["votes"] + b["votes"],
    }

  def update(state, chunk):
    x = jax.tree.leaves(chunk)[0].astype(state["mean"].dtype)
    p = jax.nn.softmax(x, axis=-1) if from_logits else x
    mean, d = _chunk_deviations(p, p.dtype)
    part = {
      "count": jnp.asarray(p.shape[0], jnp.int32),
      "mean": mean,
      "m2": jnp.square(d).sum(axis=0),
      "entropy_sum": entr(p).sum(axis=-1).sum(axis=0),
      # int32 sums also under jax_enable_x64 (a wider sum changed the state's dtype)
      "votes": jax.nn.one_hot(p.argmax(axis=-1), p.shape[-1], dtype=jnp.int32).sum(
        axis=0, dtype=jnp.int32
      ),
    }
    return merge(state, part)

  def finalize(state):
    n = jnp.maximum(state["count"], 1)
    mean = state["mean"]
    pe = entr(mean).sum(axis=-1)
    ee = state["entropy_sum"] / n.astype(mean.dtype)
    return {
      "count": state["count"],
      "mean_probs": mean,
      "predictive_entropy": pe,
      "expected_entropy": ee,
      "mutual_information": jnp.maximum(pe - ee, 0.0),
      "votes": state["votes"],
      # (n - most votes) / n: exactly 0 when every pass agrees (1 - votes / n rounded below 0)
      "variation_ratio": (n - state["votes"].max(axis=-1)).astype(mean.dtype)
      / n.astype(mean.dtype),
      "class_std": jnp.sqrt(state["m2"] / n.astype(mean.dtype)),
    }

  return Reducer(init, update, merge, finalize, None if from_logits else _check_probabilities)
