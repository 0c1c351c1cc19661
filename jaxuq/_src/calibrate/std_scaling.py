"""Std scaling for regression (Levi et al. 2019; Laves et al. 2020): one factor on the MC std.

The predictive ``Normal(μ_i, (s σ_i)²)`` has the Gaussian NLL
``(1/N) Σ_i [½ log(2π s² σ_i²) + r_i² / (2 s² σ_i²)]`` with ``r_i = y_i - μ_i``,
whose minimiser over ``s > 0`` has the closed form ``s² = (1/N) Σ_i r_i² / σ_i²``
(set the derivative ``1/s - (1/N) Σ_i r_i² / (s³ σ_i²)`` to zero).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.gaussian import normal_nll_std
from jaxuq._src.metrics import _checks


class StdScaling(NamedTuple):
  """A fitted std factor: calibrated std ``scale * std``.

  Attributes:
    scale: the factor ``s > 0``, a scalar; above 1 the MC std was too small.
    nll: the mean Gaussian NLL on the calibration data at ``s`` (nats), a scalar.
  """

  scale: jax.Array
  nll: jax.Array


def fit_std_scaling(mean: ArrayLike, std: ArrayLike, y: ArrayLike) -> StdScaling:
  """Fits one factor ``s`` of the predictive std by minimising the held-out Gaussian NLL.

  ``s = sqrt((1/N) Σ_i (y_i - μ_i)² / σ_i²)``: the root mean square of the
  standardised residuals, which is 1 for a calibrated Gaussian predictive.
  Closed form, so exact and deterministic; it runs under ``jax.jit``. Pass
  the MC mean and std (``jaxuq.predictive_mean``, ``jaxuq.predictive_std``),
  or the total std of a heteroscedastic model. Computed in float32 at least.

  Args:
    mean: predicted means ``μ``, shape ``batch...``, on held-out calibration data.
    std: predicted standard deviations ``σ`` (positive), the shape of ``mean``.
    y: targets, the shape of ``mean``.

  Returns:
    A :class:`StdScaling`; apply it with :func:`scale_std` or :func:`scale_samples`.

  Raises:
    ValueError: shapes differ, the calibration set is empty, values are not
      finite, or ``std`` is not positive (when the values are known).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import fit_std_scaling
    >>> fit = fit_std_scaling(jnp.zeros(2), jnp.ones(2), jnp.array([2.0, -2.0]))
    >>> float(fit.scale)  # residuals of 2 standard deviations
    2.0

  References:
    Levi, D., Gispan, L., Giladi, N., Fetaya, E. (2019). Evaluating and
    Calibrating Uncertainty Prediction in Regression Tasks. arXiv:1905.11659.
    Laves, M.-H., Ihler, S., Fast, J. F., Kahrs, L. A., Ortmaier, T. (2020).
    Well-Calibrated Regression Uncertainty in Medical Imaging with Deep
    Learning. MIDL.
  """
  arrays = {n: _checks.as_float(a, n) for n, a in (("mean", mean), ("std", std), ("y", y))}
  validate.check_same_shape(arrays)
  for name in ("mean", "y"):
    _checks.check_finite(arrays[name], name)
  validate.check_positive(arrays["std"], "std")
  dtype = jnp.result_type(*arrays.values())
  wide = _checks.compute_dtype(dtype)
  scale, nll = _fit(*(a.astype(wide) for a in arrays.values()))
  return _checks.narrow(StdScaling(scale=scale, nll=nll), dtype)


@jax.jit
def _fit(mu: jax.Array, sigma: jax.Array, t: jax.Array):
  scale = jnp.sqrt(jnp.square((t - mu) / sigma).mean())
  return scale, normal_nll_std(mu, scale * sigma, t).mean()


def _scale(fit: StdScaling) -> jax.Array:
  if not isinstance(fit, StdScaling):
    raise TypeError(f"fit must be a StdScaling (from fit_std_scaling), got {type(fit).__name__}")
  scale = _checks.as_float(fit.scale, "fit.scale")
  if scale.ndim != 0:
    raise ValueError(f"fit.scale must be a scalar, got shape {scale.shape}")
  _checks.check_finite(scale, "fit.scale")
  if _checks.is_concrete(scale) and float(scale) < 0:
    raise ValueError(
      f"fit.scale must be >= 0 (a factor on standard deviations), got {float(scale)}: a "
      "negative one would mirror the samples about their mean"
    )
  return scale


def scale_std(fit: StdScaling, std: ArrayLike) -> jax.Array:
  """The calibrated standard deviation ``fit.scale * std``.

  Args:
    fit: a :class:`StdScaling`.
    std: predicted standard deviations, any shape.

  Returns:
    ``fit.scale * std``, the shape of ``std``, float32 at least.

  Raises:
    TypeError: ``fit`` is not a :class:`StdScaling`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import StdScaling, scale_std
    >>> scale_std(StdScaling(jnp.array(2.0), jnp.array(0.0)), jnp.array([0.5, 1.0])).tolist()
    [1.0, 2.0]
  """
  s = _scale(fit)
  sigma = _checks.as_float(std, "std")
  out = _checks.result_dtype(jnp.result_type(sigma, s))
  return (s.astype(out) * sigma.astype(out)).astype(out)


def scale_samples(fit: StdScaling, samples: ArrayLike) -> jax.Array:
  """MC samples spread about their mean by ``fit.scale``: ``mean + s * (samples - mean)``.

  The result has the same mean and ``s`` times the std of the input samples,
  so the sample-based metrics (intervals, CRPS, quantile calibration) see the
  scaled predictive.

  Args:
    fit: a :class:`StdScaling`.
    samples: shape ``(samples, batch...)``, sample axis first.

  Returns:
    The scaled samples, the shape of ``samples``, float32 at least.

  Raises:
    TypeError: ``fit`` is not a :class:`StdScaling`.
    ValueError: ``samples`` has no sample axis or is empty.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import StdScaling, scale_samples
    >>> fit = StdScaling(jnp.array(3.0), jnp.array(0.0))
    >>> scale_samples(fit, jnp.array([[1.0], [3.0]]))[:, 0].tolist()  # mean 2, spread x3
    [-1.0, 5.0]
  """
  s = _scale(fit)
  x = _checks.as_float(samples, "samples")
  if x.ndim < 1 or x.size == 0:
    raise ValueError(f"samples must have shape (samples, batch...), non-empty, got {x.shape}")
  out = _checks.result_dtype(jnp.result_type(x, s))
  return _spread(_checks.widen(x), s.astype(_checks.compute_dtype(out))).astype(out)


@jax.jit
def _spread(x: jax.Array, s: jax.Array) -> jax.Array:
  mu = x.mean(axis=0)
  return mu[None] + s * (x - mu[None])
