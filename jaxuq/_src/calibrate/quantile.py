"""Quantile recalibration of regression samples (Kuleshov et al. 2018), by isotonic regression.

Each example's samples define a CDF ``F_i``: the inverse of NumPy's linear
quantile (``jnp.quantile``), so that ``F_i(Q_i(p)) = p`` between the smallest
and the largest sample, ``F_i = 0`` below them and 1 above. On calibration
data the levels ``p_i = F_i(y_i)`` (the PIT) are mapped to their empirical
frequencies ``P̂(p_i) = |{j : p_j <= p_i}| / N`` by isotonic regression, giving
a non-decreasing map ``R`` (linear between the fitted points and the added
knots ``(0, 0)`` and ``(1, 1)``; right-continuous, so ``R(0)`` is the fraction
of calibration targets below all their samples). The recalibrated CDF is ``R ∘ F_i`` and the recalibrated
``τ``-quantile is ``Q_i(R⁻¹(τ))``. With this ``P̂`` the data are already
monotone and PAV pools only ties; the map is the (interpolated) empirical CDF
of the PIT values.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.calibrate.isotonic import pav
from jaxuq._src.calibrate.pit import cdf_of_samples, sample_cdf
from jaxuq._src.metrics import _checks


class QuantileRecalibration(NamedTuple):
  """The recalibration map ``R``: knots of a non-decreasing piecewise-linear map of ``[0, 1]``.

  Attributes:
    levels: predicted CDF levels (PIT values of the calibration data) in
      ``[0, 1]``, sorted, with 0 and 1 added: shape ``(n + 2,)``.
    frequencies: ``R`` at ``levels``, the observed frequencies, non-decreasing
      from 0 to 1: shape ``(n + 2,)``.
  """

  levels: jax.Array
  frequencies: jax.Array


def fit_quantile_recalibration(samples: ArrayLike, y: ArrayLike) -> QuantileRecalibration:
  """Fits the isotonic map from predicted CDF levels to observed frequencies.

  Computes ``p_i = F_i(y_i)`` (:func:`sample_cdf`) on held-out calibration
  data and fits ``R(p_i) ≈ P̂(p_i)``, the fraction of calibration levels at
  or below ``p_i``, by isotonic regression (:func:`isotonic_regression`).
  Apply with :func:`recalibrated_quantile`, :func:`recalibrated_interval` or
  :func:`recalibrated_cdf`. Deterministic; runs under ``jax.jit``.

  Recalibrated quantiles are quantiles of the samples, so they stay between
  each example's smallest and largest sample: with ``S`` samples, levels
  whose recalibrated level ``R⁻¹(τ)`` falls where many targets lie outside the
  samples (a large ``R(0)`` or a small ``R(1⁻)``) cannot be reached. Use more
  samples, or std scaling, for far tails.

  Args:
    samples: shape ``(samples, batch...)``, at least 2 samples per example.
    y: targets, shape ``batch...``; all entries form the calibration set.

  Returns:
    A :class:`QuantileRecalibration`.

  Raises:
    ValueError: shapes do not match, fewer than 2 samples, an empty
      calibration set, non-finite values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import fit_quantile_recalibration
    >>> samples = jnp.tile(jnp.array([[0.0], [1.0]]), (1, 4))  # every CDF: F(y) = y on [0, 1]
    >>> fit = fit_quantile_recalibration(samples, jnp.array([0.1, 0.2, 0.3, 0.4]))
    >>> fit.frequencies.tolist()  # level 0.4 is observed for every target
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]

  References:
    Kuleshov, V., Fenner, N., Ermon, S. (2018). Accurate Uncertainties for Deep
    Learning Using Calibrated Regression. ICML.
  """
  s, t = validate.check_samples(samples, y)
  wide = _checks.compute_dtype(s.dtype)
  fit = _fit(s.reshape(s.shape[0], -1).astype(wide), t.reshape(-1).astype(wide))
  return _checks.narrow(QuantileRecalibration(*fit), s.dtype)


@jax.jit
def _fit(s: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  p = jnp.sort(cdf_of_samples(s, t))
  observed = jnp.searchsorted(p, p, side="right") / p.shape[0]
  fitted = pav(p, observed.astype(p.dtype), jnp.ones_like(p))
  zero, one = jnp.zeros(1, p.dtype), jnp.ones(1, p.dtype)
  return jnp.concatenate([zero, p, one]), jnp.concatenate([zero, fitted, one])


def _knots(fit: QuantileRecalibration) -> tuple[jax.Array, jax.Array]:
  if not isinstance(fit, QuantileRecalibration):
    raise TypeError(
      "fit must be a QuantileRecalibration (from fit_quantile_recalibration), got "
      f"{type(fit).__name__}"
    )
  a = _checks.as_float(fit.levels, "fit.levels")
  b = _checks.as_float(fit.frequencies, "fit.frequencies")
  if a.ndim != 1 or a.shape != b.shape or a.shape[0] < 2:
    raise ValueError(
      "fit.levels and fit.frequencies must be knots of one shape (n,), n >= 2, got shapes "
      f"{a.shape} and {b.shape}"
    )
  for x, name in ((a, "fit.levels"), (b, "fit.frequencies")):
    _checks.check_finite(x, name)
    if _checks.is_concrete(x) and not bool(_monotone_unit(x)):
      raise ValueError(f"{name} must be non-decreasing values in [0, 1], got {x}")
  return a, b


@jax.jit
def _monotone_unit(x: jax.Array) -> jax.Array:
  return (x[0] >= 0) & (x[-1] <= 1) & (jnp.diff(x) >= 0).all()


def _forward(a: jax.Array, b: jax.Array, p: jax.Array) -> jax.Array:
  """``R(p)``: right-continuous, linear between knots ``(a_k, b_k)``; ``a_0 = 0``, ``a_-1 = 1``."""
  k = jnp.clip(jnp.searchsorted(a, p, side="right"), 1, a.shape[0] - 1)
  a0, a1, b0, b1 = a[k - 1], a[k], b[k - 1], b[k]
  frac = jnp.clip((p - a0) / jnp.where(a1 > a0, a1 - a0, 1), 0, 1)
  return jnp.where(p >= 1, 1, b0 + frac * (b1 - b0))


def _inverse(a: jax.Array, b: jax.Array, level: jax.Array) -> jax.Array:
  """``R⁻¹(τ)``: the smallest ``p`` with ``R(p) >= τ``, for ``0 < τ < 1``."""
  k = jnp.clip(jnp.searchsorted(b, level, side="left"), 1, b.shape[0] - 1)
  a0, a1, b0, b1 = a[k - 1], a[k], b[k - 1], b[k]
  return a0 + (level - b0) / jnp.where(b1 > b0, b1 - b0, 1) * (a1 - a0)


def recalibrated_cdf(fit: QuantileRecalibration, samples: ArrayLike, y: ArrayLike) -> jax.Array:
  """The recalibrated CDF at ``y``: ``R(F_i(y_i))``, uniform on ``[0, 1]`` when calibrated.

  Args:
    fit: a :class:`QuantileRecalibration`.
    samples: shape ``(samples, batch...)``, at least 2 samples.
    y: values, shape ``batch...``.

  Returns:
    Levels in ``[0, 1]``, shape ``batch...``.

  Raises:
    TypeError: ``fit`` is not a :class:`QuantileRecalibration`.
    ValueError: as :func:`sample_cdf`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import QuantileRecalibration, recalibrated_cdf
    >>> fit = QuantileRecalibration(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.0, 0.8, 1.0]))
    >>> samples = jnp.linspace(0.0, 10.0, 11)[:, None]
    >>> [round(float(v), 4) for v in recalibrated_cdf(fit, samples, jnp.array([5.0]))]  # R(0.5)
    [0.8]
  """
  a, b = _knots(fit)
  p = sample_cdf(samples, y)
  return _forward(a.astype(p.dtype), b.astype(p.dtype), p)


def recalibrated_quantile(
  fit: QuantileRecalibration, samples: ArrayLike, level: float
) -> jax.Array:
  """The recalibrated ``level``-quantile of each example: ``Q_i(R⁻¹(level))``.

  Args:
    fit: a :class:`QuantileRecalibration`.
    samples: shape ``(samples, batch...)``, at least 2 samples.
    level: the quantile level ``τ`` in ``(0, 1)`` (static under ``jax.jit``).

  Returns:
    Shape ``batch...``: on data like the calibration data, a fraction ``τ`` of
    targets lies at or below it.

  Raises:
    TypeError: ``fit`` is not a :class:`QuantileRecalibration`, ``level`` not a float.
    ValueError: ``level`` outside ``(0, 1)``, or bad samples.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import QuantileRecalibration, recalibrated_quantile
    >>> fit = QuantileRecalibration(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.0, 0.8, 1.0]))
    >>> samples = jnp.linspace(0.0, 10.0, 11)[:, None]
    >>> recalibrated_quantile(fit, samples, 0.8).tolist()  # R(0.5) = 0.8: the median
    [5.0]
  """
  level = _checks.check_level(level)
  a, b = _knots(fit)
  s, _ = validate.check_samples(samples)
  wide = _checks.compute_dtype(jnp.result_type(s, a))
  p = _inverse(a.astype(wide), b.astype(wide), jnp.asarray(level, wide))
  q = _quantile(s.astype(wide), p)
  return q.astype(_checks.result_dtype(s.dtype))


@jax.jit
def _quantile(s: jax.Array, p: jax.Array) -> jax.Array:
  return jnp.quantile(s, jnp.clip(p, 0, 1), axis=0)


def recalibrated_interval(
  fit: QuantileRecalibration, samples: ArrayLike, level: float = 0.9
) -> tuple[jax.Array, jax.Array]:
  """The recalibrated central interval: quantiles ``(1 ∓ level) / 2`` of :func:`recalibrated_quantile`.

  Args:
    fit: a :class:`QuantileRecalibration`.
    samples: shape ``(samples, batch...)``, at least 2 samples.
    level: the nominal coverage in ``(0, 1)``, e.g. 0.9.

  Returns:
    ``(lower, upper)``, each of shape ``batch...``.

  Raises:
    TypeError: as :func:`recalibrated_quantile`.
    ValueError: as :func:`recalibrated_quantile`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import QuantileRecalibration, recalibrated_interval
    >>> fit = QuantileRecalibration(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.0, 0.8, 1.0]))
    >>> lower, upper = recalibrated_interval(fit, jnp.linspace(0.0, 10.0, 11)[:, None], 0.6)
    >>> float(lower[0]), float(upper[0])  # sample quantiles at R⁻¹(0.2) = 0.125 and R⁻¹(0.8) = 0.5
    (1.25, 5.0)
  """
  level = _checks.check_level(level)
  lower = recalibrated_quantile(fit, samples, (1 - level) / 2)
  return lower, recalibrated_quantile(fit, samples, (1 + level) / 2)
