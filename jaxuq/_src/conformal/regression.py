"""Conformal regression: intervals from absolute, std-normalised and CQR scores.

A method is a :class:`ConformalRegressor`, a NamedTuple of two pure
functions: ``score(*predictions, y)`` for calibration and
``predict_interval(threshold, *predictions)``, which returns ``(lower,
upper)``: every ``y`` whose score is at most the threshold. The bounds are
widened by the rounding of the arithmetic that builds them (``4 eps`` of the
numbers involved, a few ulps), so that a target whose score equals the
threshold is inside too: with discrete targets whole groups of tied scores
sit at the threshold, and dropping them broke the coverage guarantee (0.50
for 0.9 on a two-valued target). Targets and predictions have shape
``(n,)``; MC samples ``(samples, n)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.conformal.quantile import ThresholdLike, threshold_value
from jaxuq._src.metrics import _checks
from jaxuq._src.metrics.regression import central_interval


class ConformalRegressor(NamedTuple):
  """A conformal regression method: scores and intervals, hyperparameters fixed.

  Built by :func:`absolute_residual`, :func:`normalized_residual` or :func:`cqr`.

  Attributes:
    score: ``score(*predictions, y) -> (n,)``, the calibration scores.
    predict_interval: ``predict_interval(threshold, *predictions) -> (lower,
      upper)``, each of shape ``(n,)``; ``threshold`` is a
      :class:`ConformalThreshold` (or a scalar).
  """

  score: Callable[..., jax.Array]
  predict_interval: Callable[..., tuple[jax.Array, jax.Array]]


def _vector(x: ArrayLike, name: str, n: int | None = None) -> jax.Array:
  v = _checks.as_float(x, name)
  v = v.astype(_checks.result_dtype(v.dtype))  # float32 at least
  if v.ndim != 1 or (n is not None and v.shape[0] != n):
    want = "(n,)" if n is None else f"({n},) like the first prediction"
    raise ValueError(f"{name} must have shape {want}, got shape {v.shape}")
  _checks.check_nonempty(v, name, "(n,)")
  _checks.check_finite(v, name)
  return v


def _check_std(std: ArrayLike, n: int, beta: float) -> jax.Array:
  s = _vector(std, "std", n)
  if _checks.is_concrete(s):
    low = float(_checks.range_of(s)[0])
    if low < 0 or low + beta <= 0:
      raise ValueError(
        f"std must be >= 0 with std + beta > 0 (beta={beta}), got a minimum std of {low}; "
        "pass a positive beta to guard against zero spread"
      )
  return s


def absolute_residual() -> ConformalRegressor:
  """Absolute residuals around a point prediction: score ``|y - prediction|``.

  The interval is ``prediction ± threshold``: the same width everywhere.

  Returns:
    A :class:`ConformalRegressor` with ``score(prediction, y)`` and
    ``predict_interval(threshold, prediction)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> method = conformal.absolute_residual()
    >>> method.score(jnp.array([1.0, 2.0]), jnp.array([1.5, 0.0])).tolist()
    [0.5, 2.0]
    >>> [b.round(4).tolist() for b in method.predict_interval(0.5, jnp.array([1.0]))]
    [[0.5], [1.5]]

  References:
    Lei, J., G'Sell, M., Rinaldo, A., Tibshirani, R. J., Wasserman, L. (2018).
    Distribution-Free Predictive Inference for Regression. JASA 113(523).
  """

  def score(prediction: ArrayLike, y: ArrayLike) -> jax.Array:
    mu = _vector(prediction, "prediction")
    return jnp.abs(_vector(y, "y", mu.shape[0]) - mu)

  def predict_interval(threshold: ThresholdLike, prediction: ArrayLike):
    t = _residual_threshold(threshold)
    mu = _vector(prediction, "prediction")
    return _widened(mu - t, mu + t, jnp.abs(mu) + t)

  return ConformalRegressor(score, predict_interval)


def _widened(lower: jax.Array, upper: jax.Array, size: jax.Array):
  """``(lower, upper)`` moved out by ``4 eps * size``: more than the rounding of the
  score's and the bounds' arithmetic, so that ``score(y) <= threshold`` implies
  ``lower <= y <= upper`` in floating point too."""
  eps = jnp.finfo(jnp.result_type(lower, upper)).eps
  slack = 4 * eps * jnp.abs(size)
  return lower - slack, upper + slack


def _residual_threshold(threshold: ThresholdLike) -> jax.Array:
  """A residual method's threshold: residual scores are >= 0, so a negative one is refused."""
  t = threshold_value(threshold)
  if _checks.is_concrete(t) and float(t) < 0:
    raise ValueError(
      f"threshold must be >= 0 for a residual score (|y - prediction|, scaled), got {float(t)}: "
      "an interval with lower > upper; pass the ConformalThreshold from calibrate(scores, alpha)"
    )
  return t


def normalized_residual(*, beta: float = 0.0) -> ConformalRegressor:
  """Residuals normalised by a spread, e.g. the MC dropout std: ``|y - mean| / (std + beta)``.

  The interval is ``mean ± threshold (std + beta)``: wide where the model is
  uncertain. With MC dropout, ``mean`` and ``std`` are the predictive mean and
  standard deviation of the samples (:func:`jaxuq.summarize`); coverage is
  guaranteed whatever their quality, and the better ``std`` tracks the error,
  the more the widths adapt.

  Args:
    beta: a non-negative constant added to ``std`` (Papadopoulos et al. 2011),
      which keeps the score finite where the std is zero and damps it where it
      is tiny.

  Returns:
    A :class:`ConformalRegressor` with ``score(mean, std, y)`` and
    ``predict_interval(threshold, mean, std)``.

  Raises:
    ValueError: ``beta`` negative or not finite. The functions raise where
      ``std`` is negative, or zero with ``beta = 0`` (when concrete).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> method = conformal.normalized_residual()
    >>> method.score(jnp.array([0.0, 0.0]), jnp.array([1.0, 4.0]), jnp.array([2.0, 2.0])).tolist()
    [2.0, 0.5]
    >>> [b.round(4).tolist() for b in method.predict_interval(2.0, jnp.array([0.0]), jnp.array([4.0]))]
    [[-8.0], [8.0]]

  References:
    Papadopoulos, H., Vovk, V., Gammerman, A. (2011). Regression Conformal
    Prediction with Nearest Neighbours. JAIR 40, 815-840.
    Lei, J., G'Sell, M., Rinaldo, A., Tibshirani, R. J., Wasserman, L. (2018).
    Distribution-Free Predictive Inference for Regression. JASA 113(523).
  """
  if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 <= float(beta) < 1e300:
    raise ValueError(f"beta must be a finite float >= 0, got {beta!r}")
  beta = float(beta)

  def score(mean: ArrayLike, std: ArrayLike, y: ArrayLike) -> jax.Array:
    mu = _vector(mean, "mean")
    s = _check_std(std, mu.shape[0], beta)
    return jnp.abs(_vector(y, "y", mu.shape[0]) - mu) / (s + beta)

  def predict_interval(threshold: ThresholdLike, mean: ArrayLike, std: ArrayLike):
    t = _residual_threshold(threshold)
    mu = _vector(mean, "mean")
    half = t * (_check_std(std, mu.shape[0], beta) + beta)
    return _widened(mu - half, mu + half, jnp.abs(mu) + half)

  return ConformalRegressor(score, predict_interval)


def _sample_bounds(samples: ArrayLike, level: float) -> tuple[jax.Array, jax.Array]:
  s = _checks.as_float(samples, "samples")
  if s.ndim != 2 or s.shape[0] < 1:
    raise ValueError(f"samples must have shape (samples, n), got shape {s.shape}")
  _checks.check_nonempty(s, "samples", "(samples, n)")
  _checks.check_finite(s, "samples")
  return central_interval(s, level)


def cqr(level: float) -> ConformalRegressor:
  """Conformalized quantile regression (CQR) with the quantiles of MC samples.

  The lower and upper predictions ``lo, hi`` are the ``(1 ∓ level)/2``
  quantiles of each input's samples (:func:`jaxuq.metrics.central_interval`);
  the score is ``max(lo - y, y - hi)`` (negative inside) and the interval
  ``[lo - threshold, hi + threshold]``: the MC interval widened, or narrowed
  when the threshold is negative, until it covers. Where it is narrowed by
  more than half its width the interval is empty (``lower > upper``).

  Args:
    level: the nominal level of the MC interval in ``(0, 1)``, typically
      ``1 - alpha``.

  Returns:
    A :class:`ConformalRegressor` with ``score(samples, y)`` and
    ``predict_interval(threshold, samples)``; ``samples`` of shape
    ``(samples, n)``.

  Raises:
    ValueError: ``level`` outside ``(0, 1)``.
    TypeError: ``level`` not a real number.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> method = conformal.cqr(level=0.8)
    >>> samples = jnp.arange(11.0)[:, None]  # the 0.1 and 0.9 quantiles are 1 and 9
    >>> method.score(samples, jnp.array([10.0])).tolist()  # max(1 - 10, 10 - 9)
    [1.0]
    >>> [b.round(4).tolist() for b in method.predict_interval(-0.5, samples)]
    [[1.5], [8.5]]

  References:
    Romano, Y., Patterson, E., Candès, E. J. (2019). Conformalized Quantile
    Regression. NeurIPS.
  """
  level = _checks.check_level(level, "level")

  def score(samples: ArrayLike, y: ArrayLike) -> jax.Array:
    lo, hi = _sample_bounds(samples, level)
    t = _vector(y, "y", lo.shape[0])
    return jnp.maximum(lo - t, t - hi)

  def predict_interval(threshold: ThresholdLike, samples: ArrayLike):
    t = threshold_value(threshold)
    lo, hi = _sample_bounds(samples, level)
    size = jnp.maximum(jnp.abs(lo), jnp.abs(hi)) + jnp.abs(t)
    return _widened(lo - t, hi + t, size)

  return ConformalRegressor(score, predict_interval)
