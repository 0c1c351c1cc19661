"""Built-in reducers for :func:`jaxuq.mc_reduce`: moments, and classifier summaries.

Both merge chunk statistics with the pairwise update of Chan, Golub and
LeVeque (mean and sum of squared deviations), which stays accurate when the
mean is large compared with the spread, unlike sums of squares.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import entr

from jaxuq._src.reduce import Reducer


def _acc_dtype(dtype: Any) -> Any:
  """float32 at least (bfloat16 and float16 sums would saturate), float64 kept."""
  return (
    jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(dtype, jnp.floating) else (jnp.float32)
  )


def _chan(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
  """Merges (count, mean, M2) of two disjoint sets (Chan et al. 1979)."""
  n = n_a + n_b
  frac = jnp.where(n > 0, n_b / jnp.maximum(n, 1), 0.0).astype(mean_a.dtype)
  delta = mean_b - mean_a
  mean = mean_a + delta * frac
  m2 = m2_a + m2_b + delta * delta * (n_a * frac).astype(mean_a.dtype)
  return mean, m2, delta, frac


def _chunk_moments(x: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
  x = x.astype(dtype)
  mean = x.mean(axis=0)
  return mean, jnp.square(x - mean[None]).sum(axis=0)


@functools.cache
def moments_reducer(covariance: bool = False) -> Reducer:
  """Mean and variance of every output leaf over the samples (optionally the covariance).

  The variance divides by the number of samples (``ddof = 0``, as
  :func:`jaxuq.predictive_std`). With ``covariance=True`` each leaf of shape
  ``(..., d)`` also gets the covariance across its last axis, ``(..., d, d)``.
  Sums accumulate in float32 at least (float64 inputs stay float64).

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
      dtype = _acc_dtype(a.dtype)
      zeros = {"mean": jnp.zeros(a.shape, dtype), "m2": jnp.zeros(a.shape, dtype)}
      if covariance:
        if len(a.shape) < 1:
          raise ValueError(
            "moments_reducer(covariance=True) needs outputs with a last axis to take the "
            f"covariance across; got a leaf of shape {tuple(a.shape)}"
          )
        zeros["c2"] = jnp.zeros((*a.shape, a.shape[-1]), dtype)
      return zeros

    return {"count": jnp.zeros((), jnp.int32), "leaves": jax.tree.map(leaf, example)}

  def merge(a, b):
    n_a, n_b = a["count"], b["count"]

    def leaf(la, lb):
      mean, m2, delta, frac = _chan(n_a, la["mean"], la["m2"], n_b, lb["mean"], lb["m2"])
      out = {"mean": mean, "m2": m2}
      if covariance:
        outer = delta[..., :, None] * delta[..., None, :]
        out["c2"] = la["c2"] + lb["c2"] + outer * (n_a * frac).astype(mean.dtype)
      return out

    is_leaf = lambda t: isinstance(t, dict) and "m2" in t  # noqa: E731
    leaves = jax.tree.map(leaf, a["leaves"], b["leaves"], is_leaf=is_leaf)
    return {"count": n_a + n_b, "leaves": leaves}

  def update(state, chunk):
    def leaf(st, x):
      mean, m2 = _chunk_moments(x, st["mean"].dtype)
      out = {"mean": mean, "m2": m2}
      if covariance:
        d = x.astype(mean.dtype) - mean[None]
        out["c2"] = jnp.einsum("s...i,s...j->...ij", d, d)
      return out

    is_leaf = lambda t: isinstance(t, dict) and "m2" in t  # noqa: E731
    n = jax.tree.leaves(chunk)[0].shape[0]
    part = jax.tree.map(leaf, state["leaves"], chunk, is_leaf=is_leaf)
    return merge(state, {"count": jnp.asarray(n, jnp.int32), "leaves": part})

  def finalize(state):
    n = jnp.maximum(state["count"], 1)
    is_leaf = lambda t: isinstance(t, dict) and "m2" in t  # noqa: E731
    leaves = state["leaves"]
    out = {
      "count": state["count"],
      "mean": jax.tree.map(lambda t: t["mean"], leaves, is_leaf=is_leaf),
      "var": jax.tree.map(lambda t: t["m2"] / n.astype(t["m2"].dtype), leaves, is_leaf=is_leaf),
    }
    if covariance:
      out["cov"] = jax.tree.map(
        lambda t: t["c2"] / n.astype(t["c2"].dtype), leaves, is_leaf=is_leaf
      )
    return out

  return Reducer(init, update, merge, finalize)


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

  Args:
    from_logits: the samples are logits (softmax over the last axis per pass).

  Returns:
    A :class:`jaxuq.Reducer` for predictive functions returning one array.

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
    mean, m2 = _chunk_moments(p, p.dtype)
    part = {
      "count": jnp.asarray(p.shape[0], jnp.int32),
      "mean": mean,
      "m2": m2,
      "entropy_sum": entr(p).sum(axis=-1).sum(axis=0),
      "votes": jax.nn.one_hot(p.argmax(axis=-1), p.shape[-1], dtype=jnp.int32).sum(axis=0),
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
      "variation_ratio": 1.0
      - state["votes"].max(axis=-1).astype(mean.dtype) / n.astype(mean.dtype),
      "class_std": jnp.sqrt(state["m2"] / n.astype(mean.dtype)),
    }

  return Reducer(init, update, merge, finalize)
