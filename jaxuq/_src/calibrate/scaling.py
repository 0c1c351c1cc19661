"""Logit scaling for classification: the fitted pytrees, their NLL and the apply function.

Logits have shape ``(batch, classes)`` (a deterministic network) or
``(samples, batch, classes)`` (MC dropout passes, sample axis first). A fit
maps each sample's logits ``z`` to ``scale * z + bias`` and the calibrated
prediction is the mean over samples of ``softmax(scale * z + bias)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.metrics import _checks


class TemperatureScaling(NamedTuple):
  """A fitted temperature: calibrated probabilities are ``softmax(logits / temperature)``.

  Attributes:
    temperature: the temperature ``T > 0``, a scalar (float32 at least).
    nll: the mean NLL on the calibration data at ``T`` (nats), a scalar.
  """

  temperature: jax.Array
  nll: jax.Array


class VectorScaling(NamedTuple):
  """Fitted per-class scales and biases: probabilities are ``softmax(scale * logits + bias)``.

  Attributes:
    scale: one factor per class, shape ``(classes,)``.
    bias: one offset per class, shape ``(classes,)``, centred to sum to 0
      (softmax does not change when a constant is added to every class).
    nll: the mean NLL on the calibration data at the fit (nats), a scalar.
  """

  scale: jax.Array
  bias: jax.Array
  nll: jax.Array


def as_samples(z: jax.Array) -> jax.Array:
  """Logits with a sample axis: ``(batch, classes)`` becomes ``(1, batch, classes)``."""
  return z if z.ndim == 3 else z[None]


def affine(z: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  """``scale * z + bias`` with a scalar or per-class (last axis) ``scale`` and ``bias``."""

  def expand(v: jax.Array) -> jax.Array:
    return v if v.ndim == 0 else v.reshape((1,) * (z.ndim - 1) + v.shape)

  return expand(scale) * z + expand(bias)


def mean_log_prob(z: jax.Array, y: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  """``log((1/S) Σ_s softmax(scale * z_s + bias)[y])`` per example, shape ``(batch,)``.

  ``z`` has shape ``(samples, batch, classes)``; computed with ``logsumexp``
  over samples, in ``z``'s dtype.
  """
  log_p = jax.nn.log_softmax(affine(z, scale, bias), axis=-1)
  picked = jnp.take_along_axis(log_p, y[None, :, None], axis=-1)[..., 0]
  return jax.nn.logsumexp(picked, axis=0) - jnp.log(z.shape[0]).astype(z.dtype)


def scaled_nll(z: jax.Array, y: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  """The mean NLL of the sample-averaged probabilities of the scaled logits (a scalar)."""
  return -mean_log_prob(z, y, scale, bias).mean()


def scale_and_bias(fit: TemperatureScaling | VectorScaling) -> tuple[jax.Array, jax.Array]:
  """The fit's ``(scale, bias)``, checked: a fit built by hand or loaded may be malformed."""
  if isinstance(fit, TemperatureScaling):
    t = _checks.as_float(fit.temperature, "fit.temperature")
    if t.ndim != 0:
      raise ValueError(
        f"fit.temperature must be a scalar, got shape {t.shape}; per-class scales are a "
        "VectorScaling"
      )
    validate.check_positive(t, "fit.temperature", "a temperature is a positive number")
    return 1 / t, jnp.zeros((), t.dtype)
  if isinstance(fit, VectorScaling):
    scale = _checks.as_float(fit.scale, "fit.scale")
    bias = _checks.as_float(fit.bias, "fit.bias")
    if scale.ndim != 1 or bias.shape != scale.shape:
      raise ValueError(
        f"fit.scale and fit.bias must both have shape (classes,), got {scale.shape} and "
        f"{bias.shape}"
      )
    _checks.check_finite(scale, "fit.scale")
    _checks.check_finite(bias, "fit.bias")
    return scale, bias
  raise TypeError(
    f"fit must be a TemperatureScaling or a VectorScaling (from fit_temperature or "
    f"fit_vector_scaling), got {type(fit).__name__}"
  )


def calibrated_probs(fit: TemperatureScaling | VectorScaling, logits: ArrayLike) -> jax.Array:
  """Calibrated class probabilities: the fit applied to every sample's logits, then averaged.

  For MC dropout logits ``(samples, batch, classes)`` the scaling acts on each
  sample's logits before the softmax, and the probabilities are averaged over
  samples afterwards: ``p = (1/S) Σ_s softmax(z_s / T)`` (temperature) or
  ``(1/S) Σ_s softmax(scale * z_s + bias)`` (vector scaling), the predictive
  that the fit minimised the NLL of.

  Args:
    fit: a :class:`TemperatureScaling` or :class:`VectorScaling`.
    logits: shape ``(batch, classes)`` or ``(samples, batch, classes)``.

  Returns:
    Probabilities of shape ``(batch, classes)`` summing to 1 over classes, in
    the logits' dtype at least float32 (computed in float32 at least).

  Raises:
    TypeError: ``fit`` is not a scaling fit.
    ValueError: bad logits (see :func:`fit_temperature`), or a vector scaling
      fitted for another number of classes.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import TemperatureScaling, calibrated_probs
    >>> fit = TemperatureScaling(temperature=jnp.array(2.0), nll=jnp.array(0.0))
    >>> p = calibrated_probs(fit, jnp.array([[2.0, 0.0]]))  # softmax([1, 0])
    >>> [round(float(v), 4) for v in p[0]]
    [0.7311, 0.2689]
  """
  scale, bias = scale_and_bias(fit)
  z = validate.check_logits(logits)
  if scale.ndim == 1 and scale.shape[0] != z.shape[-1]:
    raise ValueError(
      f"logits must have {scale.shape[0]} classes (the vector scaling was fitted for "
      f"{scale.shape[0]}), got shape {z.shape}"
    )
  wide = _checks.compute_dtype(jnp.result_type(z, scale))
  probs = _probs(as_samples(z).astype(wide), scale.astype(wide), bias.astype(wide))
  return probs.astype(_checks.result_dtype(z.dtype))


@jax.jit
def _probs(z: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  return jax.nn.softmax(affine(z, scale, bias), axis=-1).mean(axis=0)
