"""The split conformal quantile: the finite-sample corrected order statistic of calibration scores."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks


class ConformalThreshold(NamedTuple):
  """A calibrated split conformal threshold (a pytree: pass it through ``jit`` and ``vmap``).

  Attributes:
    threshold: shape ``()``, the dtype of the scores: the
      ``ceil((n + 1)(1 - alpha))``-th smallest of the ``n`` calibration
      scores. A prediction set or interval holds every candidate whose score
      is at most this.
  """

  threshold: jax.Array


def _exact(alpha: float) -> Fraction:
  # The shortest decimal that round-trips (repr): alpha=0.3 is exactly 3/10, so
  # (n + 1)(1 - alpha) = 7 for n = 9, not 7 plus a binary rounding error.
  return Fraction(repr(float(alpha)))


def quantile_rank(num_scores: int, alpha: float) -> int:
  """The 1-based rank ``k = ceil((n + 1)(1 - alpha))`` of the conformal quantile among ``n`` scores.

  ``alpha`` is read as the shortest decimal that round-trips (``repr``), so
  ``alpha=0.1`` is exactly 1/10 and no binary rounding moves ``k``.

  Args:
    num_scores: the number ``n`` of calibration scores.
    alpha: the miscoverage level in ``(0, 1)``.

  Returns:
    ``k``; it exceeds ``n`` when the calibration set is too small for ``alpha``.

  Raises:
    ValueError: ``alpha`` outside ``(0, 1)``, or ``num_scores`` not a non-negative int.
    TypeError: ``alpha`` not a real number.

  Examples:
    >>> from jaxuq.conformal import quantile_rank
    >>> quantile_rank(99, 0.1), quantile_rank(100, 0.1), quantile_rank(9, 0.3)
    (90, 91, 7)
  """
  if isinstance(num_scores, bool) or not isinstance(num_scores, numbers.Integral) or num_scores < 0:
    raise ValueError(f"num_scores must be a non-negative int, got {num_scores!r}")
  alpha = _checks.check_level(alpha, "alpha")
  return math.ceil((int(num_scores) + 1) * (1 - _exact(alpha)))


def min_calibration_size(alpha: float) -> int:
  """The smallest calibration set for which the conformal quantile is finite: ``ceil(1/alpha - 1)``.

  ``ceil((n + 1)(1 - alpha)) <= n`` holds exactly when ``n >= (1 - alpha) / alpha``.

  Args:
    alpha: the miscoverage level in ``(0, 1)``.

  Returns:
    The smallest ``n >= 1`` that :func:`calibrate` accepts.

  Raises:
    ValueError: ``alpha`` outside ``(0, 1)``.
    TypeError: ``alpha`` not a real number.

  Examples:
    >>> from jaxuq.conformal import min_calibration_size
    >>> min_calibration_size(0.1), min_calibration_size(0.05), min_calibration_size(0.3)
    (9, 19, 3)
  """
  alpha = _checks.check_level(alpha, "alpha")
  a = _exact(alpha)
  return max(1, math.ceil((1 - a) / a))


def calibrate(scores: ArrayLike, alpha: float) -> ConformalThreshold:
  """The split conformal threshold: the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score.

  If the calibration and test examples are exchangeable, a test example's
  score is at most this threshold with probability at least ``1 - alpha``,
  and (without ties among the scores) at most ``1 - alpha + 1/(n + 1)``: the
  empirical quantile at level ``ceil((n + 1)(1 - alpha)) / n`` rather than
  ``1 - alpha`` pays for the finite calibration set. No interpolation: the
  threshold is one of the scores.

  Args:
    scores: the conformity scores of the ``n`` calibration examples, shape
      ``(n,)`` (a method's ``score`` output; higher means less conforming).
    alpha: the miscoverage level in ``(0, 1)``, a Python float (static under
      ``jit``).

  Returns:
    A :class:`ConformalThreshold`.

  Raises:
    ValueError: ``alpha`` outside ``(0, 1)``; ``scores`` not 1-D, empty, or
      not finite (when concrete); fewer than :func:`min_calibration_size`
      scores (the quantile would be infinite).
    TypeError: ``alpha`` not a real number.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> scores = jnp.arange(1.0, 20.0)  # n = 19 scores 1..19
    >>> float(conformal.calibrate(scores, alpha=0.1).threshold)  # ceil(20 * 0.9) = 18th smallest
    18.0

  References:
    Papadopoulos, H., Proedrou, K., Vovk, V., Gammerman, A. (2002). Inductive
    Confidence Machines for Regression. ECML.
    Lei, J., G'Sell, M., Rinaldo, A., Tibshirani, R. J., Wasserman, L. (2018).
    Distribution-Free Predictive Inference for Regression. JASA 113(523).
  """
  alpha = _checks.check_level(alpha, "alpha")
  s = _checks.as_float(scores, "scores")
  _checks.check_ndim(s, 1, "scores", "(n,)")
  _checks.check_nonempty(s, "scores", "(n,)")
  n = s.shape[0]
  k = quantile_rank(n, alpha)
  if k > n:
    raise ValueError(
      f"alpha={alpha} needs at least {min_calibration_size(alpha)} calibration scores, got "
      f"n={n}: the conformal quantile is the ceil((n + 1)(1 - alpha)) = {k}-th smallest of n "
      f"scores. Calibrate on more examples or use alpha >= {1 / (n + 1):.4g}"
    )
  _checks.check_finite(s, "scores")
  return ConformalThreshold(_kth_smallest(s, jnp.int32(k)))


@jax.jit
def _kth_smallest(s: jax.Array, k: jax.Array) -> jax.Array:
  return jnp.sort(s)[k - 1]  # k traced: a new alpha does not recompile


# What the predict functions accept: a ConformalThreshold, or a scalar score threshold.
ThresholdLike = ConformalThreshold | ArrayLike


def threshold_value(threshold: ThresholdLike) -> jax.Array:
  """The scalar threshold of a :class:`ConformalThreshold` (or a scalar given directly)."""
  t = threshold.threshold if isinstance(threshold, ConformalThreshold) else threshold
  t = _checks.as_float(t, "threshold")
  if t.ndim != 0:
    raise ValueError(
      f"threshold must be a ConformalThreshold from calibrate or a scalar, got shape {t.shape}"
    )
  _checks.check_not_nan(t, "threshold")  # +inf is a valid threshold (every set full)
  return t
