"""The Gaussian negative log-likelihood, shared by the training loss and the metric."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normal_nll(mean: jax.Array, variance: jax.Array, y: jax.Array) -> jax.Array:
  """``-log Normal(y; mean, variance)`` entry by entry: ``½ log(2π σ²) + (y - μ)² / (2σ²)``.

  Args:
    mean: means ``μ``.
    variance: variances ``σ²`` (positive), broadcastable to ``mean``.
    y: observations, broadcastable to ``mean``.

  Returns:
    The negative log-likelihoods in nats, of the broadcast shape.
  """
  return 0.5 * (jnp.log(2 * jnp.pi) + jnp.log(variance) + jnp.square(y - mean) / variance)


def normal_nll_std(mean: jax.Array, std: jax.Array, y: jax.Array) -> jax.Array:
  """:func:`normal_nll` from standard deviations: ``log σ + ½ log 2π + ½ ((y - μ) / σ)²``.

  Never forms ``σ²``, which under- or overflows in float32 for ``σ`` below
  ~1e-19 or above ~1e19 (``log`` of it is then ``-inf`` or ``inf``).
  """
  return jnp.log(std) + 0.5 * (jnp.log(2 * jnp.pi) + jnp.square((y - mean) / std))
