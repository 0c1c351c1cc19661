"""Sampling in a lower precision: a predictive function with its weights and inputs cast.

``with_dtype(f, jnp.bfloat16)`` wraps any pytree predictive function (such as
:func:`jaxuq.from_linen`'s): its floating-point leaves (parameters, BatchNorm
statistics) are cast once, its floating-point arguments at every call, so a
Flax model whose layers take their computation dtype from their inputs
(``dtype=None``, the default) runs every matmul and activation in that dtype.
The masks do not depend on the dtype: the same key drops the same units.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


def _cast_floating(tree: Any, dtype: Any) -> Any:
  def cast(x):
    if isinstance(x, (jax.Array, np.ndarray, np.generic)) and jnp.issubdtype(
      jnp.result_type(x), jnp.floating
    ):
      return jnp.asarray(x, dtype)
    return x

  return jax.tree.map(cast, tree)


@struct.dataclass
class CastPredictive:
  """``f(key, *args)`` evaluated with floating-point weights and inputs in ``dtype``.

  Attributes:
    fn: the wrapped predictive function, its floating-point leaves already cast.
    dtype: the computation dtype (a static numpy dtype).
    output_dtype: floating-point outputs are cast to this dtype (``None`` keeps
      the computation dtype).
  """

  fn: Any
  dtype: Any = struct.field(pytree_node=False)
  output_dtype: Any = struct.field(pytree_node=False, default=None)

  def __call__(self, key: jax.Array, *args: Any) -> Any:
    out = self.fn(key, *_cast_floating(args, self.dtype))
    if self.output_dtype is None:
      return out
    return _cast_floating(out, self.output_dtype)


def with_dtype(fn: Any, dtype: Any, *, output_dtype: Any = jnp.float32) -> CastPredictive:
  """Runs a predictive function in another floating-point dtype, e.g. bfloat16.

  The floating-point leaves of ``fn`` (the weights of a
  :func:`jaxuq.from_linen` or :func:`jaxuq.from_nnx` function) are cast once,
  here; floating-point arguments are cast at every call; integer and key
  leaves are left alone. A Flax layer computes in the dtype of its inputs and
  parameters unless its ``dtype`` attribute fixes one, so with bfloat16 every
  matmul and activation of such a model runs in bfloat16. The dropout masks
  are those of the float32 function with the same key.

  Precision: bfloat16 keeps 8 bits of mantissa (relative rounding ``2**-8``).
  On the seed MLP (1 -> 4 x 1024 -> 1, dropout 0.5 after every layer) the
  bfloat16 samples (100 masks, batch 256) differed from float32 ones with the
  same keys by 0.6 % of the outputs' root mean square (4.2 % at most), and
  their mean and standard deviation by under 0.5 % of the standard deviation
  (``tests/test_cast.py`` checks 2 %, 10 % and 2 % on a smaller MLP).

  Args:
    fn: a pytree predictive function ``fn(key, *args)``.
    dtype: the floating-point dtype to compute in (``jnp.bfloat16``,
      ``jnp.float16``, ``jnp.float32``, ``jnp.float64``).
    output_dtype: floating-point outputs are cast to it (default float32, so
      that metrics accumulate in float32); ``None`` keeps ``dtype``.

  Returns:
    A pytree predictive function for :func:`jaxuq.mc_sample`.

  Raises:
    TypeError: ``fn`` is not callable.
    ValueError: ``dtype`` or ``output_dtype`` is not a floating-point dtype.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxuq
    >>> net = nn.Sequential([nn.Dense(8), jaxuq.Dropout(0.5, deterministic=True), nn.Dense(1)])
    >>> x = jnp.ones((4, 1))
    >>> f = jaxuq.from_linen(net, net.init(jax.random.key(0), x))
    >>> s = jaxuq.mc_sample(jaxuq.with_dtype(f, jnp.bfloat16), jax.random.key(1), x, num_samples=3)
    >>> s.shape, s.dtype
    ((3, 4, 1), dtype('float32'))
  """
  if not callable(fn):
    raise TypeError(f"fn must be a predictive function fn(key, *args), got {type(fn).__name__}")
  dtype = _check_float_dtype(dtype, "dtype")
  if output_dtype is not None:
    output_dtype = _check_float_dtype(output_dtype, "output_dtype")
  return CastPredictive(fn=_cast_floating(fn, dtype), dtype=dtype, output_dtype=output_dtype)


def _check_float_dtype(dtype: Any, name: str) -> np.dtype:
  try:
    resolved = np.dtype(dtype)
  except TypeError:
    resolved = None
  if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
    raise ValueError(
      f"{name} must be a floating-point dtype such as jnp.bfloat16 or jnp.float32, got {dtype!r}"
    )
  return resolved
