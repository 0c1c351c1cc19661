"""Regression: Gaussian NLL, CRPS from samples, interval coverage and quantile calibration.

``samples`` have the sample axis first, ``(samples, batch...)``, and ``y`` the
shape ``batch...``. Quantiles and intervals come from
:func:`jaxuq.summarize` (linear interpolation between order statistics, as
``numpy.quantile``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxuq._src.gaussian import normal_nll_std
from jaxuq._src.metrics import _checks
from jaxuq._src.summaries import summarize

_DEFAULT_LEVELS = tuple(np.round(np.arange(1, 20) / 20, 2).tolist())


def _check_samples_y(samples: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
  s = _checks.as_float(samples, "samples")
  t = _checks.as_float(y, "y")
  if s.ndim < 1 or s.shape[0] < 1 or s.shape[1:] != t.shape:
    raise ValueError(
      f"samples must have shape (samples, *y.shape) with at least one sample; got samples "
      f"{s.shape} and y {t.shape}"
    )
  if t.size == 0:
    raise ValueError(f"y must not be empty, got shape {t.shape}")
  _checks.check_finite(s, "samples")
  _checks.check_finite(t, "y")
  dtype = jnp.result_type(s, t)
  return s.astype(dtype), t.astype(dtype)


def _wide(*arrays: jax.Array) -> tuple[jax.Array, ...]:
  wide = _checks.compute_dtype(jnp.result_type(*arrays))
  return tuple(a.astype(wide) for a in arrays)


def central_interval(samples: ArrayLike, level: float = 0.9) -> tuple[jax.Array, jax.Array]:
  """The central interval holding ``level`` of the samples: quantiles ``(1∓level)/2``.

  Args:
    samples: shape ``(samples, batch...)``.
    level: the nominal coverage in ``(0, 1)``, e.g. 0.9.

  Returns:
    ``(lower, upper)``, each of shape ``batch...``.

  Raises:
    ValueError: no sample axis or ``level`` outside ``(0, 1)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import central_interval
    >>> lower, upper = central_interval(jnp.arange(11.0)[:, None], level=0.8)  # 10 % each side
    >>> float(lower[0]), float(upper[0])
    (1.0, 9.0)

  References:
    Khosravi, A., Nahavandi, S., Creighton, D., Atiya, A. F. (2011).
    Comprehensive Review of Neural Network-Based Prediction Intervals and New
    Advances. IEEE Trans. Neural Networks 22(9), 1341-1356.
  """
  level = _checks.check_level(level)
  s = _checks.as_float(samples, "samples")
  _checks.check_finite(s, "samples")  # a nan sample would give a nan (or shifted) end
  q = summarize(s, levels=((1 - level) / 2, (1 + level) / 2)).quantiles
  return q[0], q[1]


def gaussian_nll(
  mean: ArrayLike, std: ArrayLike, y: ArrayLike, *, reduction: str = "mean"
) -> jax.Array:
  """The negative log-likelihood of ``y`` under ``Normal(mean, std²)``.

  ``NLL = ½ log(2π σ²) + (y - μ)² / (2σ²)``, averaged over all entries.

  Args:
    mean: predicted means, shape ``batch...``.
    std: predicted standard deviations (positive), broadcastable to ``mean``
      (a scalar for a homoscedastic model).
    y: targets, the shape of ``mean``.
    reduction: ``'mean'`` (a scalar) or ``'none'`` (shape ``batch...``).

  Returns:
    The mean NLL in nats, or one value per entry.

  Raises:
    ValueError: shapes do not match, ``std`` not positive or any input not
      finite (when known).

  Examples:
    >>> from jaxuq.metrics import gaussian_nll
    >>> round(float(gaussian_nll(0.0, 1.0, 0.0)), 4)  # ½ log 2π
    0.9189

  References:
    Nix, D. A., Weigend, A. S. (1994). Estimating the Mean and Variance of the
    Target Probability Distribution. IEEE ICNN.
  """
  _checks.check_reduction(reduction)
  mu, sigma, t = (_checks.as_float(a, n) for a, n in ((mean, "mean"), (std, "std"), (y, "y")))
  if mu.shape != t.shape:
    raise ValueError(f"mean and y must have the same shape, got {mu.shape} and {t.shape}")
  try:
    broadcast = np.broadcast_shapes(sigma.shape, mu.shape)
  except ValueError:
    broadcast = None
  if broadcast != mu.shape:
    raise ValueError(f"std of shape {sigma.shape} does not broadcast to mean's {mu.shape}")
  for a, n in ((mu, "mean"), (sigma, "std"), (t, "y")):
    _checks.check_finite(a, n)
  if _checks.is_concrete(sigma) and sigma.size and not float(_checks.range_of(sigma)[0]) > 0:
    raise ValueError(f"std must be positive, got a minimum of {float(_checks.range_of(sigma)[0])}")
  dtype = jnp.result_type(mu, sigma, t)
  values = _gaussian_nll(*_wide(mu, jnp.broadcast_to(sigma, mu.shape), t))
  return _checks.narrow(_checks.reduce(values, reduction), dtype)


@jax.jit
def _gaussian_nll(mu: jax.Array, sigma: jax.Array, t: jax.Array) -> jax.Array:
  return normal_nll_std(mu, sigma, t)


def crps(samples: ArrayLike, y: ArrayLike, *, reduction: str = "mean") -> jax.Array:
  """The continuous ranked probability score of the empirical distribution of the samples.

  Energy form, exact for the empirical distribution ``F̂`` of ``x_1..x_m``:
  ``CRPS(F̂, y) = (1/m) Σ_i |x_i - y| - (1/(2m²)) Σ_{i,j} |x_i - x_j|``. The
  double sum is computed from the sorted samples in ``O(m log m)``:
  ``Σ_{i,j} |x_i - x_j| = 2 Σ_k (2k - m - 1) x_(k)`` (``k = 1..m``). Equals the
  integral ``∫ (F̂(z) - 1[y <= z])² dz``; reduces to ``|x - y|`` for one sample.

  Args:
    samples: shape ``(samples, batch...)``.
    y: targets, shape ``batch...``.
    reduction: ``'mean'`` (a scalar) or ``'none'`` (shape ``batch...``).

  Returns:
    The mean CRPS (in the units of ``y``), or one value per entry.

  Raises:
    ValueError: shapes do not match, or a sample or target is not finite.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import crps
    >>> float(crps(jnp.array([[0.0], [2.0]]), jnp.array([1.0])))  # 1 - 2/4
    0.5

  References:
    Gneiting, T., Raftery, A. E. (2007). Strictly Proper Scoring Rules,
    Prediction, and Estimation. JASA 102(477), 359-378 (eq. 21).
    Hersbach, H. (2000). Decomposition of the Continuous Ranked Probability Score
    for Ensemble Prediction Systems. Weather and Forecasting 15(5), 559-570.
  """
  _checks.check_reduction(reduction)
  s, t = _check_samples_y(samples, y)
  return _checks.narrow(_checks.reduce(_crps(*_wide(s, t)), reduction), s.dtype)


@jax.jit
def _crps(s: jax.Array, t: jax.Array) -> jax.Array:
  m = s.shape[0]
  spread = jnp.abs(s - t[None]).mean(axis=0)
  weights = (2 * jnp.arange(1, m + 1) - m - 1).astype(s.dtype)
  # The weights sum to 0, so the pair term is unchanged by a shift; centring each column on
  # its middle sample keeps samples far from 0 (1e5 +- 1) from cancelling away in float32.
  x = jnp.sort(s, axis=0)
  pair = jnp.tensordot(weights, x - x[m // 2][None], axes=1) / (m * m)  # ½ mean |x_i - x_j|
  return spread - pair


def interval_coverage(samples: ArrayLike, y: ArrayLike, level: float = 0.9) -> jax.Array:
  """The prediction interval coverage probability (PICP) of the central interval.

  ``PICP = (1/N) Σ_i 1[l_i <= y_i <= u_i]`` with ``(l_i, u_i)`` the central
  ``level`` interval of the samples (:func:`central_interval`); a calibrated
  model has ``PICP ≈ level``.

  Args:
    samples: shape ``(samples, batch...)``.
    y: targets, shape ``batch...``.
    level: the nominal coverage in ``(0, 1)``.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: shapes do not match or ``level`` outside ``(0, 1)``, or
      non-finite values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import interval_coverage
    >>> samples = jnp.tile(jnp.arange(11.0)[:, None], (1, 4))  # every interval [1, 9] at 0.8
    >>> float(interval_coverage(samples, jnp.array([0.0, 1.0, 5.0, 9.5]), level=0.8))
    0.5

  References:
    Khosravi, A., Nahavandi, S., Creighton, D., Atiya, A. F. (2011).
    Comprehensive Review of Neural Network-Based Prediction Intervals and New
    Advances. IEEE Trans. Neural Networks 22(9), 1341-1356.
  """
  s, t = _check_samples_y(samples, y)
  lower, upper = central_interval(s, level)
  inside = (lower <= t) & (t <= upper)
  return _checks.narrow(inside.astype(_checks.compute_dtype(s.dtype)).mean(), s.dtype)


def mean_interval_width(samples: ArrayLike, level: float = 0.9) -> jax.Array:
  """The mean width of the central ``level`` interval (MPIW): ``(1/N) Σ_i (u_i - l_i)``.

  Args:
    samples: shape ``(samples, batch...)``.
    level: the nominal coverage in ``(0, 1)``.

  Returns:
    A scalar, in the units of the samples.

  Raises:
    ValueError: no sample axis or ``level`` outside ``(0, 1)``.

  References:
    Khosravi, A., Nahavandi, S., Creighton, D., Atiya, A. F. (2011).
    Comprehensive Review of Neural Network-Based Prediction Intervals and New
    Advances. IEEE Trans. Neural Networks 22(9), 1341-1356.
  """
  lower, upper = central_interval(samples, level)
  return _checks.narrow(_checks.widen(upper - lower).mean(), lower.dtype)


class QuantileCalibration(NamedTuple):
  """Expected against observed frequency of ``y`` below each predicted quantile.

  Attributes:
    expected: the quantile levels ``p``, shape ``(levels,)``.
    observed: the fraction of targets at or below the predicted ``p``-quantile.
  """

  expected: jax.Array
  observed: jax.Array


def quantile_calibration_curve(
  samples: ArrayLike, y: ArrayLike, levels: Sequence[float] = _DEFAULT_LEVELS
) -> QuantileCalibration:
  """The calibration curve of a regression model: expected vs observed quantile coverage.

  For each level ``p``: ``observed(p) = (1/N) Σ_i 1[y_i <= q_i(p)]`` with
  ``q_i(p)`` the ``p``-quantile of input ``i``'s samples. A calibrated model
  lies on the diagonal. Intervals too wide (under-confident) give a curve
  below it at low ``p`` and above it at high ``p``; too narrow (over-confident),
  the reverse: above at low ``p``, below at high ``p``.

  Args:
    samples: shape ``(samples, batch...)``.
    y: targets, shape ``batch...``.
    levels: quantile levels in ``[0, 1]``; 0.05, 0.10, ..., 0.95 by default.

  Returns:
    A :class:`QuantileCalibration`.

  Raises:
    ValueError: shapes do not match, levels outside ``[0, 1]``, or non-finite values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import quantile_calibration_curve
    >>> curve = quantile_calibration_curve(jnp.arange(11.0)[:, None], jnp.array([2.5]), (0.1, 0.5))
    >>> curve.observed.tolist()  # 2.5 is above the 0.1-quantile (1) and below the median (5)
    [0.0, 1.0]

  References:
    Kuleshov, V., Fenner, N., Ermon, S. (2018). Accurate Uncertainties for Deep
    Learning Using Calibrated Regression. ICML.
  """
  s, t = _check_samples_y(samples, y)
  summary = summarize(s, levels=levels)
  below = (t[None] <= summary.quantiles).astype(_checks.compute_dtype(s.dtype))
  curve = QuantileCalibration(
    expected=summary.levels, observed=below.reshape(below.shape[0], -1).mean(axis=1)
  )
  return _checks.narrow(curve, s.dtype)
