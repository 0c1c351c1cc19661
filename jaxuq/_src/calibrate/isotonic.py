"""Isotonic regression by pool-adjacent-violators (PAV), jit-able.

PAV scans the points in order of ``x`` with a stack of blocks (weight and
weighted sum of ``y``); a new point is pushed as its own block, and while the
top block's mean is below the one beneath, the two are pooled. Points with
equal ``x`` are pooled first (scikit-learn's treatment of ties), so they get
one fitted value. ``O(n log n)`` for the sort, ``O(n)`` pushes and pools, each
a ``lax`` loop step: it runs under ``jax.jit`` with static shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.metrics import _checks


def isotonic_regression(x: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None) -> jax.Array:
  """The non-decreasing least-squares fit of ``y`` on ``x``, evaluated at ``x``.

  Solves ``min_f Σ_i w_i (y_i - f_i)²`` subject to ``f_i <= f_j`` whenever
  ``x_i < x_j``, and ``f_i = f_j`` when ``x_i = x_j``; the same answer as
  scikit-learn's ``IsotonicRegression().fit_transform(x, y, sample_weight=w)``.
  Each fitted value is the weighted mean of ``y`` over its block. Runs in
  float32 at least (float64 under x64).

  Args:
    x: the ordering variable, shape ``(n,)``, any order.
    y: the responses, shape ``(n,)``.
    weights: positive weights, shape ``(n,)``; all 1 by default.

  Returns:
    The fitted values in the order of ``x``, shape ``(n,)``.

  Raises:
    ValueError: the arrays are not 1-D of one length, empty, not finite, or
      the weights are not positive (when the values are known).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import isotonic_regression
    >>> isotonic_regression(jnp.arange(4.0), jnp.array([1.0, 3.0, 2.0, 4.0])).tolist()
    [1.0, 2.5, 2.5, 4.0]

  References:
    Ayer, M., Brunk, H. D., Ewing, G. M., Reid, W. T., Silverman, E. (1955). An
    Empirical Distribution Function for Sampling with Incomplete Information.
    Annals of Mathematical Statistics 26(4), 641-647.
    Best, M. J., Chakravarti, N. (1990). Active Set Algorithms for Isotonic
    Regression; a Unifying Framework. Mathematical Programming 47, 425-439.
  """
  a = _checks.as_float(x, "x")
  b = _checks.as_float(y, "y")
  w = jnp.ones_like(b) if weights is None else _checks.as_float(weights, "weights")
  if a.ndim != 1:
    raise ValueError(f"x must be 1-D, shape (n,), got shape {a.shape}")
  arrays = {"x": a, "y": b} | ({} if weights is None else {"weights": w})
  validate.check_same_shape(arrays)
  for name, v in arrays.items():
    _checks.check_finite(v, name)
  if weights is not None:
    validate.check_positive(w, "weights", "drop the examples of weight zero or less")
  wide = _checks.compute_dtype(jnp.result_type(a, b, w))
  fitted = pav(a.astype(wide), b.astype(wide), w.astype(wide))
  return fitted.astype(_checks.result_dtype(b.dtype))


@jax.jit
def pav(x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
  """:func:`isotonic_regression` without checks (1-D arrays, positive weights)."""
  n = x.shape[0]
  order = jnp.argsort(x, stable=True)
  xs, ys, ws = x[order], y[order], w[order]
  # Ties in x form one group: its weight and weighted sum, slots 0..groups-1.
  group = jnp.cumsum(jnp.concatenate([jnp.ones(1, bool), xs[1:] != xs[:-1]])) - 1
  gw = jax.ops.segment_sum(ws, group, n)
  gwy = jax.ops.segment_sum(ws * ys, group, n)
  num_groups = group[-1] + 1

  def violated(stack):
    bw, bwy, _, top = stack
    # mean[top - 1] > mean[top], cross-multiplied (weights are positive).
    return (top > 0) & (bwy[top - 1] * bw[top] > bwy[top] * bw[top - 1])

  def pool(stack):
    bw, bwy, start, top = stack
    bw = bw.at[top - 1].add(bw[top])
    bwy = bwy.at[top - 1].add(bwy[top])
    return bw, bwy, start, top - 1

  def push(g, stack):
    bw, bwy, start, top = stack
    top = top + 1
    stack = (bw.at[top].set(gw[g]), bwy.at[top].set(gwy[g]), start.at[top].set(g), top)
    return jax.lax.while_loop(violated, pool, stack)

  empty = (jnp.zeros(n, x.dtype), jnp.zeros(n, x.dtype), jnp.full(n, n, jnp.int32), -1)
  bw, bwy, start, top = jax.lax.fori_loop(0, num_groups, push, empty)
  start = jnp.where(jnp.arange(n) <= top, start, n)
  block = jnp.searchsorted(start, group, side="right") - 1
  fitted_sorted = bwy[block] / bw[block]
  return jnp.zeros_like(fitted_sorted).at[order].set(fitted_sorted)
