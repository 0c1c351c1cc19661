"""Out-of-distribution detection scores: AUROC, average precision, ROC curve, FPR at a TPR.

Every function takes ``(scores, labels)``, scores first. ``labels`` are 1 for
out-of-distribution inputs (the positive class) and 0 for in-distribution
ones; ``scores`` are uncertainties, higher meaning "more likely out of
distribution". Every function sorts once and uses cumulative counts, so ties
are handled exactly and the cost is ``O(n log n)``. Counts are integers; only
the final ratios are floating point, in float32 at least (float64 under x64),
so bfloat16 scores do not round the counts.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks
from jaxuq._src.metrics._sorting import cumulative, sort_by, tie_bounds


def auroc(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
  """The area under the ROC curve, equal to the Mann-Whitney statistic with ties counted half.

  ``AUROC = (1 / (n₁ n₀)) Σ_{i: y_i=1} Σ_{j: y_j=0} (1[s_i > s_j] + ½ 1[s_i = s_j])``:
  the probability that a random out-of-distribution input scores higher than a
  random in-distribution one. Computed from the sorted scores: for each
  positive, the number of negatives strictly below and tied with it.

  Args:
    scores: uncertainty scores, higher = more likely out of distribution, shape ``(n,)``.
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.

  Returns:
    A scalar in ``[0, 1]``; 0.5 for uninformative scores.

  Raises:
    ValueError: shapes differ or are not 1-D, labels not in {0, 1}, only one
      class present (AUROC undefined), or non-finite scores. Under ``jax.jit``
      values are not checked and one class only gives ``nan``.
    TypeError: float labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import auroc
    >>> float(auroc(jnp.array([0.1, 0.5, 0.5, 0.9]), jnp.array([0, 0, 1, 1])))
    0.875

  References:
    Mann, H. B., Whitney, D. R. (1947). On a Test of Whether One of Two Random
    Variables is Stochastically Larger than the Other. Ann. Math. Statist. 18(1).
    Hanley, J. A., McNeil, B. J. (1982). The Meaning and Use of the Area under a
    Receiver Operating Characteristic (ROC) Curve. Radiology 143(1), 29-36.
  """
  s, y = _checks.check_binary(scores, labels)
  return _checks.narrow(_auroc(_checks.widen(s), y), s.dtype)


@jax.jit
def _auroc(s: jax.Array, y: jax.Array) -> jax.Array:
  s, pos = sort_by(s, y)
  start, end = tie_bounds(s)
  cneg = cumulative(1 - pos)
  below = cneg[start]
  tied = cneg[end] - below
  n_pos = pos.sum().astype(s.dtype)
  n_neg = s.shape[0] - n_pos
  twice_u = jnp.sum(jnp.where(pos == 1, 2 * below + tied, 0).astype(s.dtype))
  return twice_u / (2 * n_pos * n_neg)


def average_precision(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Average precision: the step-wise area under the precision-recall curve.

  ``AP = Σ_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds ``t_k``
  in decreasing order, where ``P_k`` and ``R_k`` are the precision and recall
  of "out of distribution if ``score >= t_k``". Tied scores share one
  threshold. Equivalently the mean, over positives, of the precision at the
  threshold equal to their score. No interpolation; scikit-learn's
  ``average_precision_score`` definition.

  Args:
    scores: higher = more likely out of distribution, shape ``(n,)``.
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.

  Returns:
    A scalar in ``(0, 1]``; the fraction of positives for uninformative scores.

  Raises:
    ValueError: as :func:`auroc` (under ``jax.jit``, no positives gives ``nan``).
    TypeError: as :func:`auroc`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import average_precision
    >>> round(float(average_precision(jnp.array([0.9, 0.8, 0.1]), jnp.array([1, 0, 1]))), 4)
    0.8333

  References:
    Zhu, M. (2004). Recall, Precision and Average Precision. Technical report,
    University of Waterloo.
    Davis, J., Goadrich, M. (2006). The Relationship Between Precision-Recall and
    ROC Curves. ICML.
  """
  s, y = _checks.check_binary(scores, labels)
  return _checks.narrow(_average_precision(_checks.widen(s), y), s.dtype)


@jax.jit
def _average_precision(s: jax.Array, y: jax.Array) -> jax.Array:
  desc, pos = sort_by(-s, y)  # ascending in -score, i.e. descending score
  _, end = tie_bounds(desc)  # one past each tie group
  precision = cumulative(pos)[end].astype(s.dtype) / end.astype(s.dtype)
  return jnp.sum(jnp.where(pos == 1, precision, 0)) / pos.sum().astype(s.dtype)


class RocCurve(NamedTuple):
  """The ROC curve: rates of "out of distribution if ``score >= threshold``" at every threshold.

  Attributes:
    fpr: false-positive rates, shape ``(n + 1,)``, non-decreasing from 0 to 1.
    tpr: true-positive rates, shape ``(n + 1,)``, non-decreasing from 0 to 1.
    thresholds: shape ``(n + 1,)``: ``inf`` (nothing flagged), then the
      scores in decreasing order. Tied scores share one point, repeated once
      per tied input (the shape stays ``(n + 1,)`` under ``jax.jit``).
  """

  fpr: jax.Array
  tpr: jax.Array
  thresholds: jax.Array


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> RocCurve:
  """The receiver operating characteristic: TPR against FPR over every score threshold.

  For each threshold ``t`` among the scores, ``TPR(t) = #{y=1, s >= t} / n₁``
  and ``FPR(t) = #{y=0, s >= t} / n₀``. Ties are never split: a tie group is
  above the threshold or not as a whole, so the points are those of
  scikit-learn's ``roc_curve(..., drop_intermediate=False)``, each repeated
  once per input of its tie group, after a first point ``(0, 0)``. The
  trapezoidal area under it is :func:`auroc`.

  Args:
    scores: higher = more likely out of distribution, shape ``(n,)``.
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.

  Returns:
    A :class:`RocCurve` of ``n + 1`` points.

  Raises:
    ValueError: as :func:`auroc`. Under ``jax.jit`` one class only gives
      ``nan`` rates for the missing class.
    TypeError: as :func:`auroc`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import roc_curve
    >>> roc = roc_curve(jnp.array([0.1, 0.5, 0.5, 0.9]), jnp.array([0, 0, 1, 1]))
    >>> roc.fpr.tolist(), roc.tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0, 1.0])

  References:
    Fawcett, T. (2006). An Introduction to ROC Analysis. Pattern Recognition
    Letters 27(8), 861-874.
  """
  s, y = _checks.check_binary(scores, labels)
  return _checks.narrow(_roc_curve(_checks.widen(s), y), s.dtype)


def _counts_above(s: jax.Array, y: jax.Array):
  """Scores descending; per position the true and false positives at its tie group's threshold."""
  desc, pos = sort_by(-s, y)  # ascending in -score, i.e. descending score
  _, end = tie_bounds(desc)  # one past each tie group
  tp = cumulative(pos)[end]
  return -desc, tp, end - tp


@jax.jit
def _roc_curve(s: jax.Array, y: jax.Array) -> RocCurve:
  thresholds, tp, fp = _counts_above(s, y)
  n_pos = tp[-1].astype(s.dtype)
  n_neg = fp[-1].astype(s.dtype)
  zero = jnp.zeros(1, s.dtype)
  return RocCurve(
    fpr=jnp.concatenate([zero, _checks.rate(fp.astype(s.dtype), n_neg)]),
    tpr=jnp.concatenate([zero, _checks.rate(tp.astype(s.dtype), n_pos)]),
    thresholds=jnp.concatenate([jnp.full(1, jnp.inf, s.dtype), thresholds]),
  )


class OperatingPoint(NamedTuple):
  """A decision threshold and its rates on the data it was chosen on.

  Attributes:
    threshold: inputs with ``score >= threshold`` are declared out of distribution.
    tpr: the fraction of out-of-distribution inputs at or above the threshold.
    fpr: the fraction of in-distribution inputs at or above the threshold.
  """

  threshold: jax.Array
  tpr: jax.Array
  fpr: jax.Array


def check_target_tpr(target_tpr: object) -> float:
  """A target true-positive rate in ``(0, 1]``, as a Python float."""
  if isinstance(target_tpr, bool) or not isinstance(target_tpr, numbers.Real):
    raise TypeError(f"target_tpr must be a float in (0, 1], got {target_tpr!r}")
  if not 0.0 < float(target_tpr) <= 1.0:
    raise ValueError(f"target_tpr must be in (0, 1], got {target_tpr!r}")
  return float(target_tpr)


def threshold_at_tpr(
  scores: ArrayLike, labels: ArrayLike, target_tpr: float = 0.95
) -> OperatingPoint:
  """The highest score threshold whose true-positive rate reaches ``target_tpr``.

  Among the thresholds at the distinct scores, the largest ``t`` with
  ``TPR(t) = #{y=1, s >= t} / n₁ >= target_tpr``; it has the lowest
  false-positive rate of all thresholds reaching the target: the first point
  of :func:`roc_curve` reaching it. Ties are never split. ``TPR(t)`` is
  compared with ``target_tpr`` in the scores' floating type (float32 at
  least), so a rate equal to the target's decimal value (``4/5`` for
  ``target_tpr=0.8``) reaches it.

  Args:
    scores: higher = more likely out of distribution, shape ``(n,)``.
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.
    target_tpr: the target true-positive rate in ``(0, 1]``.

  Returns:
    An :class:`OperatingPoint` (threshold, achieved TPR, FPR).

  Raises:
    ValueError: as :func:`auroc`, or ``target_tpr`` outside ``(0, 1]``. Under
      ``jax.jit`` one class only gives ``nan`` in every field.
    TypeError: as :func:`auroc`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import threshold_at_tpr
    >>> op = threshold_at_tpr(jnp.array([0.1, 0.5, 0.5, 0.9]), jnp.array([0, 0, 1, 1]), 0.5)
    >>> round(float(op.threshold), 4), float(op.tpr), float(op.fpr)
    (0.9, 0.5, 0.0)

  References:
    Hendrycks, D., Gimpel, K. (2017). A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks. ICLR.
  """
  target = check_target_tpr(target_tpr)
  s, y = _checks.check_binary(scores, labels)
  wide = _checks.widen(s)
  return _checks.narrow(_threshold_at_tpr(wide, y, jnp.asarray(target, wide.dtype)), s.dtype)


@jax.jit
def _threshold_at_tpr(s: jax.Array, y: jax.Array, target: jax.Array) -> OperatingPoint:
  roc = _roc_curve(s, y)
  reach = roc.tpr[1:] >= target  # monotone: False...False True...True
  reach = reach.at[-1].set(True)  # the last position has every positive: rate 1
  first = jnp.argmax(reach)
  n_pos = y.sum()
  defined = (n_pos > 0) & (n_pos < s.shape[0])  # one class only (possible under jit): nan
  return OperatingPoint(
    threshold=jnp.where(defined, roc.thresholds[1:][first], jnp.nan),
    tpr=jnp.where(defined, roc.tpr[1:][first], jnp.nan),
    fpr=jnp.where(defined, roc.fpr[1:][first], jnp.nan),
  )


def fpr_at_tpr(scores: ArrayLike, labels: ArrayLike, target_tpr: float = 0.95) -> jax.Array:
  """The false-positive rate at the first threshold reaching a true-positive rate (FPR@95).

  The fraction of in-distribution inputs wrongly flagged when the threshold is
  set to catch at least ``target_tpr`` of the out-of-distribution ones; see
  :func:`threshold_at_tpr` for the threshold and the tie handling.

  Args:
    scores: higher = more likely out of distribution, shape ``(n,)``.
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.
    target_tpr: the target true-positive rate in ``(0, 1]``, 0.95 by default.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: as :func:`threshold_at_tpr`.
    TypeError: as :func:`auroc`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import fpr_at_tpr
    >>> s, y = jnp.array([0.1, 0.5, 0.5, 0.9]), jnp.array([0, 0, 1, 1])
    >>> float(fpr_at_tpr(s, y, target_tpr=1.0))
    0.5

  References:
    Hendrycks, D., Gimpel, K. (2017). A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks. ICLR.
    Liang, S., Li, Y., Srikant, R. (2018). Enhancing the Reliability of
    Out-of-Distribution Image Detection in Neural Networks. ICLR.
  """
  return threshold_at_tpr(scores, labels, target_tpr).fpr
