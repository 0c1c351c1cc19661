"""The CDF of MC samples at a target (the probability integral transform, PIT).

The CDF is the inverse of ``jnp.quantile``'s linear interpolation between
order statistics, so that quantiles and CDF levels of the samples agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.metrics import _checks


def sample_cdf(samples: ArrayLike, y: ArrayLike) -> jax.Array:
  """The CDF of each example's samples at its target (the PIT), interpolated between samples.

  ``F(y) = (j + (y - x_(j)) / (x_(j+1) - x_(j))) / (S - 1)`` for ``x_(j) <= y <
  x_(j+1)`` (sorted samples ``x_(0..S-1)``), 0 below the smallest sample and 1
  at or above the largest: the inverse of ``jnp.quantile``'s linear method.

  Args:
    samples: shape ``(samples, batch...)``, at least 2 samples.
    y: targets, shape ``batch...``.

  Returns:
    Levels in ``[0, 1]``, shape ``batch...``, float32 at least.

  Raises:
    ValueError: shapes do not match, fewer than 2 samples, non-finite values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import sample_cdf
    >>> sample_cdf(jnp.array([[0.0], [1.0], [2.0]]), jnp.array([1.5])).tolist()
    [0.75]
  """
  s, t = validate.check_samples(samples, y)
  wide = _checks.compute_dtype(s.dtype)
  cdf = cdf_of_samples(s.reshape(s.shape[0], -1).astype(wide), t.reshape(-1).astype(wide))
  return cdf.reshape(t.shape).astype(_checks.result_dtype(s.dtype))


@jax.jit
def cdf_of_samples(s: jax.Array, t: jax.Array) -> jax.Array:
  """:func:`sample_cdf` without checks: ``s`` of shape ``(samples, m)``, ``t`` of ``(m,)``."""
  xs = jnp.sort(s, axis=0)
  num = xs.shape[0]
  below = (xs <= t[None]).sum(axis=0)
  j = jnp.clip(below - 1, 0, num - 2)
  lo = jnp.take_along_axis(xs, j[None], axis=0)[0]
  hi = jnp.take_along_axis(xs, j[None] + 1, axis=0)[0]
  inside = (below > 0) & (below < num)
  frac = (t - lo) / jnp.where(inside, hi - lo, 1)
  return jnp.where(
    inside, (j.astype(frac.dtype) + frac) / (num - 1), (below == num).astype(s.dtype)
  )
