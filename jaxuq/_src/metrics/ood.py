"""Out-of-distribution detection scores: AUROC, average precision, FPR at a TPR.

Convention: ``labels`` are 1 for out-of-distribution inputs (the positive
class) and 0 for in-distribution ones; ``scores`` are uncertainties, higher
meaning "more likely out of distribution". Every function sorts once and uses
cumulative counts, so ties are handled exactly and the cost is ``O(n log n)``;
counts are integers, only the final ratios are floating point.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks
from jaxuq._src.metrics._sorting import cumulative, sort_by, tie_bounds


def auroc(labels: ArrayLike, scores: ArrayLike) -> jax.Array:
  """The area under the ROC curve, equal to the Mann-Whitney statistic with ties counted half.

  ``AUROC = (1 / (n₁ n₀)) Σ_{i: y_i=1} Σ_{j: y_j=0} (1[s_i > s_j] + ½ 1[s_i = s_j])``:
  the probability that a random out-of-distribution input scores higher than a
  random in-distribution one. Computed from the sorted scores: for each
  positive, the number of negatives strictly below and tied with it.

  Args:
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.
    scores: uncertainty scores, higher = more likely out of distribution, shape ``(n,)``.

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
    >>> float(auroc(jnp.array([0, 0, 1, 1]), jnp.array([0.1, 0.5, 0.5, 0.9])))
    0.875

  References:
    Mann, H. B., Whitney, D. R. (1947). On a Test of Whether One of Two Random
    Variables is Stochastically Larger than the Other. Ann. Math. Statist. 18(1).
    Hanley, J. A., McNeil, B. J. (1982). The Meaning and Use of the Area under a
    Receiver Operating Characteristic (ROC) Curve. Radiology 143(1), 29-36.
  """
  return _auroc(*_checks.check_binary(labels, scores))


@jax.jit
def _auroc(y: jax.Array, s: jax.Array) -> jax.Array:
  s, pos = sort_by(s, y)
  start, end = tie_bounds(s)
  cneg = cumulative(1 - pos)
  below = cneg[start]
  tied = cneg[end] - below
  n_pos = pos.sum().astype(s.dtype)
  n_neg = s.shape[0] - n_pos
  twice_u = jnp.sum(jnp.where(pos == 1, 2 * below + tied, 0).astype(s.dtype))
  return twice_u / (2 * n_pos * n_neg)


def average_precision(labels: ArrayLike, scores: ArrayLike) -> jax.Array:
  """Average precision: the step-wise area under the precision-recall curve.

  ``AP = Σ_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds ``t_k``
  in decreasing order, where ``P_k`` and ``R_k`` are the precision and recall
  of "out of distribution if ``score >= t_k``". Tied scores share one
  threshold. Equivalently the mean, over positives, of the precision at the
  threshold equal to their score. No interpolation; scikit-learn's
  ``average_precision_score`` definition.

  Args:
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.
    scores: higher = more likely out of distribution, shape ``(n,)``.

  Returns:
    A scalar in ``(0, 1]``; the fraction of positives for uninformative scores.

  Raises:
    ValueError: as :func:`auroc` (under ``jax.jit``, no positives gives ``nan``).
    TypeError: as :func:`auroc`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import average_precision
    >>> round(float(average_precision(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1]))), 4)
    0.8333

  References:
    Zhu, M. (2004). Recall, Precision and Average Precision. Technical report,
    University of Waterloo.
    Davis, J., Goadrich, M. (2006). The Relationship Between Precision-Recall and
    ROC Curves. ICML.
  """
  return _average_precision(*_checks.check_binary(labels, scores))


@jax.jit
def _average_precision(y: jax.Array, s: jax.Array) -> jax.Array:
  desc, pos = sort_by(-s, y)  # ascending in -score, i.e. descending score
  _, end = tie_bounds(desc)  # one past each tie group
  precision = cumulative(pos)[end].astype(s.dtype) / end.astype(s.dtype)
  return jnp.sum(jnp.where(pos == 1, precision, 0)) / pos.sum().astype(s.dtype)


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


def _check_tpr(tpr: object) -> float:
  if isinstance(tpr, bool) or not isinstance(tpr, numbers.Real):
    raise TypeError(f"tpr must be a float in (0, 1], got {tpr!r}")
  if not 0.0 < float(tpr) <= 1.0:
    raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
  return float(tpr)


def threshold_at_tpr(labels: ArrayLike, scores: ArrayLike, tpr: float = 0.95) -> OperatingPoint:
  """The highest score threshold whose true-positive rate reaches ``tpr``.

  Among the thresholds at the distinct scores, the largest ``t`` with
  ``TPR(t) = #{y=1, s >= t} / n₁ >= tpr``; it has the lowest false-positive
  rate of all thresholds reaching the target. Ties are never split: a tie
  group is above the threshold or not as a whole. ``TPR(t)`` is compared
  with ``tpr`` in the scores' floating type, so a rate equal to the target's
  decimal value (``4/5`` for ``tpr=0.8``) reaches it.

  Args:
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.
    scores: higher = more likely out of distribution, shape ``(n,)``.
    tpr: the target true-positive rate in ``(0, 1]``.

  Returns:
    An :class:`OperatingPoint` (threshold, achieved TPR, FPR).

  Raises:
    ValueError: as :func:`auroc`, or ``tpr`` outside ``(0, 1]``. Under
      ``jax.jit`` one class only gives ``nan`` in every field.
    TypeError: as :func:`auroc`.

  References:
    Hendrycks, D., Gimpel, K. (2017). A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks. ICLR.
  """
  target = _check_tpr(tpr)
  y, s = _checks.check_binary(labels, scores)
  return _threshold_at_tpr(y, s, jnp.asarray(target, s.dtype))


@jax.jit
def _threshold_at_tpr(y: jax.Array, s: jax.Array, target: jax.Array) -> OperatingPoint:
  desc, pos = sort_by(-s, y)
  _, end = tie_bounds(desc)
  tp = cumulative(pos)[end]
  n_pos = pos.sum()
  rate = tp.astype(s.dtype) / n_pos.astype(s.dtype)
  reach = rate >= target  # monotone: False...False True...True
  first = jnp.argmax(reach)  # the last position always reaches (rate 1)
  n_neg = s.shape[0] - n_pos
  fpr = (end[first] - tp[first]).astype(s.dtype) / n_neg.astype(s.dtype)
  defined = (n_pos > 0) & (n_neg > 0)  # one class only (possible under jit): nan
  return OperatingPoint(
    threshold=jnp.where(defined, -desc[first], jnp.nan),
    tpr=jnp.where(defined, rate[first], jnp.nan),
    fpr=jnp.where(defined, fpr, jnp.nan),
  )


def fpr_at_tpr(labels: ArrayLike, scores: ArrayLike, tpr: float = 0.95) -> jax.Array:
  """The false-positive rate at the first threshold reaching a true-positive rate (FPR@95).

  The fraction of in-distribution inputs wrongly flagged when the threshold is
  set to catch at least ``tpr`` of the out-of-distribution ones; see
  :func:`threshold_at_tpr` for the threshold and the tie handling.

  Args:
    labels: 1 = out of distribution (positive), 0 = in distribution, shape ``(n,)``.
    scores: higher = more likely out of distribution, shape ``(n,)``.
    tpr: the target true-positive rate in ``(0, 1]``, 0.95 by default.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: as :func:`threshold_at_tpr`.
    TypeError: as :func:`auroc`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import fpr_at_tpr
    >>> float(fpr_at_tpr(jnp.array([0, 0, 1, 1]), jnp.array([0.1, 0.5, 0.5, 0.9]), tpr=1.0))
    0.5

  References:
    Hendrycks, D., Gimpel, K. (2017). A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks. ICLR.
    Liang, S., Li, Y., Srikant, R. (2018). Enhancing the Reliability of
    Out-of-Distribution Image Detection in Neural Networks. ICLR.
  """
  return threshold_at_tpr(labels, scores, tpr).fpr
