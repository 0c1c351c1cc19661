"""A 2-D convolution whose kernel gradient is quick on XLA's CPU backend.

XLA:CPU computes the gradient of a convolution with respect to its kernel
slowly: for the second convolution of Gal et al. (2017)'s MNIST network (batch
128, 25x25x32 inputs, 4x4x32x32 kernel) 340-350 ms, against 26-36 ms for the
gradient with respect to the input and 107-128 ms for the same kernel gradient
written as 16 matrix products of shifted inputs (2-core CPU). The convolution
here is XLA's in the forward pass and for the input's gradient; its
derivative with respect to the kernel is, on the CPU, a sum over the kernel's
offsets of (strided) shifted inputs times the kernel's slice, so that its
transpose, the kernel gradient, is ``kh * kw`` matrix products. On other
backends it is XLA's convolution. The rule is a ``custom_jvp``, so forward
and reverse mode, ``vmap`` and higher derivatives all apply; the values are
those of ``lax.conv_general_dilated`` up to float rounding.

:class:`Conv` is the linen layer: the parameters, names, shapes and
initialisation of ``flax.linen.Conv`` for 2-D convolutions without dilation
or feature groups, so a model can switch between the two.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")
Padding = str | tuple[tuple[int, int], tuple[int, int]]


def _pads(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding) -> Any:
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding))
  return padding


def _xla_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DIMS)


def shifted_conv(
  x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding
) -> jax.Array:
  """The convolution as ``sum_ij shift_ij(x) @ w[i, j]``: linear in ``w``, matmuls only."""
  pads = _pads(x, w, strides, padding)
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  kh, kw = w.shape[:2]
  ho = (xp.shape[1] - kh) // strides[0] + 1
  wo = (xp.shape[2] - kw) // strides[1] + 1
  terms = []
  for i in range(kh):
    for j in range(kw):
      end = (xp.shape[0], i + strides[0] * (ho - 1) + 1, j + strides[1] * (wo - 1) + 1, xp.shape[3])
      window = lax.slice(xp, (0, i, j, 0), end, (1, *strides, 1))
      # 2-D products: their transpose (the kernel gradient) is one plain matmul each
      terms.append(window.reshape(-1, xp.shape[3]) @ w[i, j])
  return functools.reduce(jnp.add, terms).reshape(xp.shape[0], ho, wo, w.shape[3])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
  """``lax.conv_general_dilated`` (NHWC inputs, HWIO kernel), differentiated as described above.

  Args:
    x: inputs ``(batch, height, width, channels)``.
    w: kernel ``(kh, kw, channels, features)``, the dtype of ``x``.
    strides: ``(sh, sw)``.
    padding: ``'VALID'``, ``'SAME'`` or ``((top, bottom), (left, right))``.

  Returns:
    ``(batch, out_height, out_width, features)``.
  """
  return _xla_conv(x, w, strides, padding)


@conv2d.defjvp
def _conv2d_jvp(strides, padding, primals, tangents):
  x, w = primals
  dx, dw = tangents
  pads = _pads(x, w, strides, padding)
  by_kernel = lax.platform_dependent(
    x,
    dw,
    cpu=lambda a, b: shifted_conv(a, b, strides, pads),
    default=lambda a, b: _xla_conv(a, b, strides, pads),
  )
  return _xla_conv(x, w, strides, pads), _xla_conv(dx, w, strides, pads) + by_kernel


def _pair(value: Any, name: str, one_int: bool = True) -> tuple[int, int]:
  """``value`` as two ints: an int is used for both axes (as Flax does for strides)."""
  if one_int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
    return (int(value), int(value))
  items = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
  if len(items) != 2 or not all(
    isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items
  ):
    what = "an int or two ints" if one_int else "two ints"
    raise ValueError(f"Conv's {name} must be {what} (height, width), got {value!r}")
  return (int(items[0]), int(items[1]))


def _settings(
  kernel_size: Any, strides: Any, padding: Any
) -> tuple[tuple[int, int], tuple[int, int], Padding]:
  """The layer's settings in the form ``conv2d`` takes, or a ValueError naming the field."""
  if isinstance(kernel_size, numbers.Integral):
    raise ValueError(
      f"Conv's kernel_size must be two ints (height, width), got {kernel_size!r} (Flax reads "
      "a single int as a 1-D kernel; this layer is 2-D only)"
    )
  kernel = _pair(kernel_size, "kernel_size", one_int=False)
  stride = _pair(strides, "strides")
  if isinstance(padding, str):
    if padding.upper() not in ("VALID", "SAME"):
      raise ValueError(
        f"Conv takes padding 'VALID', 'SAME', an int, or ((top, bottom), (left, right)), "
        f"got {padding!r}; use flax.linen.Conv for other paddings"
      )
    return kernel, stride, padding.upper()
  if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
    return kernel, stride, ((int(padding),) * 2, (int(padding),) * 2)
  pads = tuple(padding) if isinstance(padding, Sequence) else ()
  if len(pads) == 2:
    try:
      pairs = (_pair(pads[0], "padding"), _pair(pads[1], "padding"))
    except (ValueError, TypeError):
      pairs = None
    if pairs is not None:
      return kernel, stride, pairs
  raise ValueError(
    f"Conv takes padding 'VALID', 'SAME', an int, or ((top, bottom), (left, right)), got "
    f"{padding!r}"
  )


class Conv(nn.Module):
  """A 2-D convolution layer, ``flax.linen.Conv``'s parameters, with a quick kernel gradient on CPU.

  The same function as ``flax.linen.Conv`` (for 2-D kernels without dilation
  or feature groups) and the same parameters: names, shapes and initial
  values, so a model can switch between the two. On the CPU its derivative
  in the kernel is a sum of shifted-input matrix products, which XLA runs
  faster than its own kernel gradient (1.6-1.8x for a training step of the
  active-learning CNN on 2 cores); elsewhere it is XLA's convolution. Forward
  and reverse mode, ``vmap`` and higher derivatives apply.

  Attributes:
    features: output channels.
    kernel_size: ``(kh, kw)``.
    strides: ``(sh, sw)``, or one int for both.
    padding: ``'SAME'`` (the default, as in Flax), ``'VALID'``, one int for
      every side, one int per axis ``(ph, pw)`` or explicit pairs
      ``((top, bottom), (left, right))``.
    use_bias: add a bias.
    kernel_init, bias_init: initialisers (Flax's defaults).

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxuq.models
    >>> x = jnp.ones((2, 8, 8, 3))
    >>> ours = jaxuq.models.Conv(4, (3, 3), padding="VALID")
    >>> flax = nn.Conv(4, (3, 3), padding="VALID")
    >>> v = flax.init(jax.random.key(0), x)
    >>> bool(jnp.allclose(ours.apply(v, x), flax.apply(v, x), atol=1e-5))
    True
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Convolves ``x`` of shape ``(batch, height, width, channels)`` or ``(height, width, channels)``."""
    if x.ndim not in (3, 4):
      raise ValueError(
        f"Conv takes inputs (batch, height, width, channels) or (height, width, channels), "
        f"got shape {x.shape}"
      )
    kernel_size, strides, padding = _settings(self.kernel_size, self.strides, self.padding)
    shape = (*kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", self.kernel_init, shape)
    bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
    y = conv2d(x if x.ndim == 4 else x[None], kernel, strides, padding)
    y = y if x.ndim == 4 else y[0]
    return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
