"""jaxuq's convolution layer: flax.linen.Conv's values and parameters, its own kernel derivative."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxuq._src.conv import Conv, _xla_conv, conv2d, shifted_conv

CASES = [  # kernel, strides, padding, input shape
  ((4, 4), (1, 1), "VALID", (3, 11, 11, 2)),
  ((3, 3), (1, 1), "SAME", (2, 9, 10, 3)),
  ((5, 5), (2, 2), "SAME", (2, 14, 14, 4)),
  ((3, 2), (2, 1), "VALID", (2, 9, 8, 1)),
  ((2, 3), (1, 2), ((1, 0), (2, 1)), (1, 7, 9, 2)),
]


def _layers(kernel, strides, padding):
  kwargs = dict(features=5, kernel_size=kernel, strides=strides, padding=padding)
  return Conv(**kwargs), nn.Conv(**kwargs)


@pytest.mark.parametrize(("kernel", "strides", "padding", "shape"), CASES)
def test_values_parameters_and_gradients_are_flax_convs(kernel, strides, padding, shape):
  ours, flax = _layers(kernel, strides, padding)
  x = jax.random.normal(jax.random.key(0), shape)
  v = flax.init(jax.random.key(1), x)
  mine = ours.init(jax.random.key(1), x)  # the same names, shapes and initial values
  assert jax.tree.structure(mine) == jax.tree.structure(v)
  for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(v), strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(ours.apply(v, x), flax.apply(v, x), rtol=1e-5, atol=1e-5)

  def loss(layer):
    return lambda v, x: jnp.sum(jnp.sin(layer.apply(v, x)))

  for jit in (False, True):
    grad = jax.grad(loss(ours), argnums=(0, 1))
    got = (jax.jit(grad) if jit else grad)(v, x)
    ref = jax.grad(loss(flax), argnums=(0, 1))(v, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


@pytest.mark.parametrize(("kernel", "strides", "padding", "shape"), CASES)
def test_the_kernel_derivative_is_the_convolution(kernel, strides, padding, shape):
  # The CPU rule's linear map in the kernel is the convolution itself.
  x = jax.random.normal(jax.random.key(2), shape)
  w = jax.random.normal(jax.random.key(3), (*kernel, shape[-1], 5))
  if not isinstance(padding, str):
    padding = tuple(padding)
  np.testing.assert_allclose(
    shifted_conv(x, w, strides, padding), _xla_conv(x, w, strides, padding), rtol=1e-5, atol=1e-4
  )


def test_forward_mode_vmap_and_second_derivatives_apply():
  x = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
  w = jax.random.normal(jax.random.key(5), (3, 3, 3, 4))
  tw = jax.random.normal(jax.random.key(6), w.shape)
  tx = jax.random.normal(jax.random.key(7), x.shape)
  ours = jax.jvp(lambda a, b: conv2d(a, b, (1, 1), "SAME"), (x, w), (tx, tw))[1]
  ref = jax.jvp(lambda a, b: _xla_conv(a, b, (1, 1), "SAME"), (x, w), (tx, tw))[1]
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
  batched = jax.vmap(lambda b: conv2d(x, b, (1, 1), "VALID"))(jnp.stack([w, 2 * w]))
  np.testing.assert_allclose(batched[1], 2 * batched[0], rtol=1e-5, atol=1e-5)

  def hvp(f):
    g = jax.grad(lambda b: jnp.sum(f(x, b, (1, 1), "VALID") ** 2))
    return jax.jvp(g, (w,), (tw,))[1]

  np.testing.assert_allclose(hvp(conv2d), hvp(_xla_conv), rtol=1e-4, atol=1e-3)


def test_unbatched_inputs_and_bad_ranks():
  layer = Conv(2, (3, 3))
  x = jnp.ones((5, 5, 1))
  v = layer.init(jax.random.key(0), x)
  np.testing.assert_allclose(layer.apply(v, x), layer.apply(v, x[None])[0])
  with pytest.raises(ValueError, match=r"got shape \(5, 5\)"):
    layer.apply(v, jnp.ones((5, 5)))
  with pytest.raises(ValueError, match="got 'CIRCULAR'; use flax.linen.Conv"):
    Conv(2, (3, 3), padding="CIRCULAR").init(jax.random.key(0), x)
  bare = Conv(2, (3, 3), use_bias=False)
  assert set(bare.init(jax.random.key(0), x)["params"]) == {"kernel"}


@pytest.mark.parametrize("platform", ["cuda", "rocm", "tpu"])
def test_accelerators_get_xlas_kernel_gradient(platform):
  # Lowered for an accelerator (no device needed), the kernel derivative is XLA's convolution,
  # not the CPU's matrix products; lowered for the CPU it is the products.
  x = jnp.ones((2, 9, 9, 3))
  layer = Conv(4, (3, 3), padding="VALID")
  v = layer.init(jax.random.key(0), x)
  grad = jax.jit(jax.grad(lambda v, x: jnp.sum(layer.apply(v, x) ** 2)))
  there = jax.export.export(grad, platforms=[platform])(v, x).mlir_module()
  here = jax.export.export(grad, platforms=["cpu"])(v, x).mlir_module()
  assert there.count("stablehlo.convolution") == 2 and "stablehlo.dot_general" not in there
  assert here.count("stablehlo.convolution") == 1 and here.count("stablehlo.dot_general") == 9


@pytest.mark.parametrize(
  "settings",
  [
    {"strides": 2},
    {"padding": 1},
    {"padding": (1, 2)},
    {"padding": "same", "strides": (2, 1)},
    {"padding": "valid"},
  ],
)
def test_flax_shorthands_give_flax_convs(settings):
  # strides=2 or padding=1 raised "'int' object is not iterable" where nn.Conv accepts them.
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
  flax = nn.Conv(4, (3, 3), **settings)
  v = flax.init(jax.random.key(1), x)
  np.testing.assert_allclose(Conv(4, (3, 3), **settings).apply(v, x), flax.apply(v, x), atol=1e-5)


@pytest.mark.parametrize(
  ("settings", "match"),
  [
    ({"kernel_size": 3}, "kernel_size must be two ints .* 1-D kernel"),
    ({"kernel_size": (3,)}, "kernel_size must be two ints"),
    ({"kernel_size": (3, 3), "strides": (1, 2, 3)}, "strides must be an int or two ints"),
    ({"kernel_size": (3, 3), "padding": (1, 2, 3)}, "padding 'VALID', 'SAME', an int"),
    ({"kernel_size": (3, 3), "padding": "CIRCULAR"}, "use flax.linen.Conv for other paddings"),
  ],
)
def test_settings_conv_cannot_take_are_named(settings, match):
  with pytest.raises(ValueError, match=match):
    Conv(4, **settings).init(jax.random.key(1), jnp.ones((1, 5, 5, 2)))
