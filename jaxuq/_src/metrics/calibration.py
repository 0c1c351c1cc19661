"""Calibration of class probabilities: log loss, Brier score, ECE and reliability diagrams.

``probs`` has shape ``(batch, classes)`` (e.g. the mean over MC samples) and
sums to 1 over classes (checked when the values are known, never
renormalised); ``labels`` holds integer class indices, shape ``(batch,)``.
"""

from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks

_LAYOUT = "(batch, classes)"


def _check(probs: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
  p = _checks.as_float(probs, "probs")
  _checks.check_ndim(p, 2, "probs", _LAYOUT)
  _checks.check_nonempty(p, "probs", _LAYOUT)
  _checks.check_simplex(p, "probs")
  return p, _checks.check_labels(labels, p.shape[:1], p.shape[1])


def nll(probs: ArrayLike, labels: ArrayLike, *, reduction: str = "mean") -> jax.Array:
  """The negative log-likelihood (log loss, cross-entropy) of the true class.

  ``NLL = -(1/N) Σ_i log p_{i, y_i}`` in nats. Not clipped: a true class of
  probability 0 gives ``inf`` (scikit-learn's ``log_loss`` clips at the dtype's
  eps instead; they agree for probabilities above it).

  Args:
    probs: shape ``(batch, classes)``.
    labels: integer classes, shape ``(batch,)``.
    reduction: ``'mean'`` (a scalar) or ``'none'`` (shape ``(batch,)``).

  Returns:
    The mean NLL, or one value per example.

  Raises:
    ValueError: bad shapes, probabilities not on the simplex, labels out of range.
    TypeError: non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import nll
    >>> round(float(nll(jnp.array([[0.5, 0.5], [0.9, 0.1]]), jnp.array([0, 0]))), 4)
    0.3993

  References:
    Good, I. J. (1952). Rational Decisions. Journal of the Royal Statistical
    Society B 14(1), 107-114.
  """
  _checks.check_reduction(reduction)
  p, y = _check(probs, labels)
  return _checks.narrow(_checks.reduce(_nll(_checks.widen(p), y), reduction), p.dtype)


@jax.jit
def _nll(p: jax.Array, y: jax.Array) -> jax.Array:
  return -jnp.log(jnp.take_along_axis(p, y[:, None], axis=1)[:, 0])


def brier_score(probs: ArrayLike, labels: ArrayLike, *, reduction: str = "mean") -> jax.Array:
  """The multiclass Brier score: squared error summed over classes, averaged over examples.

  ``BS = (1/N) Σ_i Σ_c (p_ic - 1[y_i = c])²``, between 0 and 2. This is
  Brier's original definition and scikit-learn's ``brier_score_loss`` for
  more than two classes; for two classes scikit-learn (``scale_by_half='auto'``)
  reports half of it, the squared error of the positive class alone.

  Args:
    probs: shape ``(batch, classes)``.
    labels: integer classes, shape ``(batch,)``.
    reduction: ``'mean'`` (a scalar) or ``'none'`` (shape ``(batch,)``).

  Returns:
    The mean Brier score, or one value per example.

  Raises:
    ValueError: as :func:`nll`.
    TypeError: as :func:`nll`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import brier_score
    >>> round(float(brier_score(jnp.array([[0.8, 0.2]]), jnp.array([0]))), 4)
    0.08

  References:
    Brier, G. W. (1950). Verification of Forecasts Expressed in Terms of
    Probability. Monthly Weather Review 78(1), 1-3.
  """
  _checks.check_reduction(reduction)
  p, y = _check(probs, labels)
  return _checks.narrow(_checks.reduce(_brier(_checks.widen(p), y), reduction), p.dtype)


@jax.jit
def _brier(p: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.square(p - jax.nn.one_hot(y, p.shape[1], dtype=p.dtype)).sum(axis=1)


class ReliabilityDiagram(NamedTuple):
  """Per-bin data of a reliability diagram (top-label, equal-width bins).

  Attributes:
    edges: bin edges ``b / num_bins``, shape ``(num_bins + 1,)``; bin ``b`` is
      ``(edges[b], edges[b + 1]]``.
    confidence: mean top-label confidence in each bin, ``nan`` where empty.
    accuracy: fraction of correct top-label predictions per bin, ``nan`` where empty.
    counts: number of examples per bin (int32).
  """

  edges: jax.Array
  confidence: jax.Array
  accuracy: jax.Array
  counts: jax.Array


def _check_num_bins(num_bins: object) -> int:
  if isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral) or num_bins < 1:
    raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
  return int(num_bins)


def _binned(probs: ArrayLike, labels: ArrayLike, num_bins: object):
  """Bin edges, per-bin sums of (confidence, correct) and counts, summed in the wide dtype."""
  num_bins = _check_num_bins(num_bins)
  p, y = _check(probs, labels)
  return p.dtype, _bin_sums(p, y, num_bins=num_bins)


def _edges(num_bins: int, dtype) -> jax.Array:
  """The bin edges ``b / num_bins``, each rounded to nearest in ``dtype``."""
  np_dtype = np.dtype(dtype)
  return jnp.asarray(np.arange(num_bins + 1, dtype=np_dtype) / np_dtype.type(num_bins))


@functools.partial(jax.jit, static_argnames="num_bins")
def _bin_sums(p: jax.Array, y: jax.Array, *, num_bins: int):
  # Bins are found in float32 (float64 for float64 input), with edges b / B rounded to
  # nearest there, whether or not x64 is on: float32's 0.6 sits on the edge 3/5 and goes
  # to the lower bin, as a user who wrote 0.6 means. (Widened to float64 first, it would
  # be 0.6000000238 > 0.6, one bin up.) bfloat16 and float16 values are float32 values.
  by = p.astype(jnp.float64 if p.dtype == jnp.float64 else jnp.float32)
  # Edges from NumPy on the host (correctly rounded): under jit XLA turned b / B into
  # b * (1 / B), an ulp off for 23 of B = 1..100 (0.54 became 0.53999996, a bin too low).
  lower = _edges(num_bins, by.dtype)
  # Bin b holds edges[b] < conf <= edges[b + 1]; conf >= 1/classes > 0.
  index = jnp.clip(jnp.searchsorted(lower, by.max(axis=1), side="left") - 1, 0, num_bins - 1)
  wide = _checks.widen(p)
  conf = wide.max(axis=1)
  correct = (p.argmax(axis=1) == y).astype(wide.dtype)
  edges = _edges(num_bins, wide.dtype)
  sums = jax.ops.segment_sum(jnp.stack([conf, correct], axis=1), index, num_bins)
  count = jax.ops.segment_sum(jnp.ones(index.shape, jnp.int32), index, num_bins)
  return edges, sums, count


def expected_calibration_error(
  probs: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> jax.Array:
  """The top-label expected calibration error over equal-width confidence bins.

  ``ECE = Σ_b (n_b / N) |acc_b - conf_b|`` where bin ``b`` holds the examples
  whose top probability ``max_c p_ic`` lies in ``(b/B, (b+1)/B]``, ``acc_b`` is
  the fraction of them whose ``argmax`` is the label (ties to the lowest class)
  and ``conf_b`` their mean top probability. The usual definition of Guo et
  al. (2017), 15 bins by default. The edges ``b/B`` are rounded to the nearest
  float32 (float64 for float64 probabilities), with or without x64: a
  confidence written as 0.6 lies on the edge 3/5 and counts in the lower bin.

  Args:
    probs: shape ``(batch, classes)``.
    labels: integer classes, shape ``(batch,)``.
    num_bins: the number of equal-width bins ``B`` on ``[0, 1]``.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: as :func:`nll`, or ``num_bins`` not a positive int.
    TypeError: as :func:`nll`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import expected_calibration_error
    >>> p = jnp.array([[0.9, 0.1], [0.9, 0.1]])
    >>> round(float(expected_calibration_error(p, jnp.array([0, 1]))), 4)  # |0.5 - 0.9|
    0.4

  References:
    Naeini, M. P., Cooper, G., Hauskrecht, M. (2015). Obtaining Well Calibrated
    Probabilities Using Bayesian Binning. AAAI.
    Guo, C., Pleiss, G., Sun, Y., Weinberger, K. Q. (2017). On Calibration of
    Modern Neural Networks. ICML.
  """
  dtype, (_, sums, count) = _binned(probs, labels, num_bins)
  total = count.sum().astype(sums.dtype)  # a float count: strict dtype promotion allows it
  return _checks.narrow(jnp.abs(sums[:, 1] - sums[:, 0]).sum() / total, dtype)


def reliability_diagram(
  probs: ArrayLike, labels: ArrayLike, num_bins: int = 15
) -> ReliabilityDiagram:
  """The data of a reliability diagram: per-bin confidence, accuracy and count.

  Uses the bins of :func:`expected_calibration_error`;
  ``ECE = Σ_b counts_b |accuracy_b - confidence_b| / N`` over non-empty bins.

  Args:
    probs: shape ``(batch, classes)``.
    labels: integer classes, shape ``(batch,)``.
    num_bins: the number of equal-width bins on ``[0, 1]``.

  Returns:
    A :class:`ReliabilityDiagram`.

  Raises:
    ValueError: as :func:`expected_calibration_error`.
    TypeError: as :func:`nll`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import reliability_diagram
    >>> d = reliability_diagram(jnp.array([[0.9, 0.1], [0.9, 0.1]]), jnp.array([0, 1]), num_bins=5)
    >>> d.counts.tolist(), round(float(d.confidence[4]), 4), float(d.accuracy[4])
    ([0, 0, 0, 0, 2], 0.9, 0.5)

  References:
    DeGroot, M. H., Fienberg, S. E. (1983). The Comparison and Evaluation of
    Forecasters. The Statistician 32, 12-22.
    Guo, C., Pleiss, G., Sun, Y., Weinberger, K. Q. (2017). On Calibration of
    Modern Neural Networks. ICML.
  """
  dtype, (edges, sums, count) = _binned(probs, labels, num_bins)
  safe = jnp.where(count > 0, count, 1).astype(sums.dtype)
  diagram = ReliabilityDiagram(
    edges=edges,
    confidence=jnp.where(count > 0, sums[:, 0] / safe, jnp.nan),
    accuracy=jnp.where(count > 0, sums[:, 1] / safe, jnp.nan),
    counts=count,
  )
  return _checks.narrow(diagram, dtype)
