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
