"""Tie groups of sorted arrays in O(n), for the rank-based metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def tie_bounds(sorted_values: jax.Array) -> tuple[jax.Array, jax.Array]:
  """For each position of a sorted 1-D array, where its run of equal values starts and ends.

  Args:
    sorted_values: shape ``(n,)``, sorted (either direction), ``n >= 1``.

  Returns:
    ``(start, end)``, int32 of shape ``(n,)``: the run holding position ``i``
    is ``sorted_values[start[i]:end[i]]``. Two cumulative scans, no search.
  """
  n = sorted_values.shape[0]
  index = jnp.arange(n, dtype=jnp.int32)
  differs = sorted_values[1:] != sorted_values[:-1]
  first = jnp.concatenate([jnp.ones(1, bool), differs])
  last = jnp.concatenate([differs, jnp.ones(1, bool)])
  start = jax.lax.cummax(jnp.where(first, index, 0))
  end = jax.lax.cummin(jnp.where(last, index + 1, n), reverse=True)
  return start, end


def cumulative(x: jax.Array, dtype=jnp.int32) -> jax.Array:
  """``c[k] = x[:k].sum()`` for ``k = 0..n``."""
  return jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(x, dtype=dtype)])


def sort_by(keys: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``keys`` sorted ascending and ``values`` permuted alike (one stable sort)."""
  k, v = jax.lax.sort((keys, values), num_keys=1, is_stable=True)
  return k, v
