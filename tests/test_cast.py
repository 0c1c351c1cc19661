"""with_dtype: bfloat16 sampling against float32 samples with the same keys."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    for _ in range(3):
      x = nn.relu(nn.Dense(256)(x))
      x = jaxuq.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(2)(x)


def _setup():
  x = jnp.linspace(-2.0, 3.0, 64, dtype=jnp.float32)[:, None]
  model = MLP()
  return jaxuq.from_linen(model, model.init(jax.random.key(0), x)), x


def test_bfloat16_samples_match_float32_within_the_stated_tolerance():
  f, x = _setup()
  key = jax.random.key(1)
  a = np.asarray(jaxuq.mc_sample(f, key, x, num_samples=100), np.float64)
  low = jaxuq.with_dtype(f, jnp.bfloat16)
  b = jaxuq.mc_sample(low, key, x, num_samples=100)
  assert b.dtype == jnp.float32
  b = np.asarray(b, np.float64)
  rms = np.sqrt(np.mean(a**2))
  assert np.sqrt(np.mean((a - b) ** 2)) <= 0.02 * rms
  assert np.max(np.abs(a - b)) <= 0.10 * rms
  std = a.std(axis=0)
  assert np.max(np.abs(a.mean(axis=0) - b.mean(axis=0))) <= 0.02 * std.mean()
  assert np.max(np.abs(b.std(axis=0) - std) / std) <= 0.02
  # Not float32 in disguise: bfloat16 rounding is visible.
  assert np.max(np.abs(a - b)) > 1e-4 * rms


def test_weights_and_inputs_are_cast_and_masks_unchanged():
  f, x = _setup()
  low = jaxuq.with_dtype(f, jnp.bfloat16, output_dtype=None)
  assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(low))
  assert jax.jit(lambda k, v: low(k, v))(jax.random.key(2), x).dtype == jnp.bfloat16
  dropped = lambda k, v: jnp.where(jaxuq.keep_mask(k, v.shape, 0.5), v + 1.0, 0.0)  # noqa: E731
  a = jaxuq.mc_sample(dropped, jax.random.key(3), x, num_samples=4)
  b = jaxuq.mc_sample(jaxuq.with_dtype(dropped, jnp.bfloat16), jax.random.key(3), x, num_samples=4)
  np.testing.assert_array_equal(a != 0, b != 0)


@pytest.mark.parametrize("dtype", [jnp.int32, "not a dtype", jnp.bool_])
def test_non_floating_dtype_is_refused(dtype):
  f, _ = _setup()
  with pytest.raises(ValueError, match="dtype must be a floating-point dtype"):
    jaxuq.with_dtype(f, dtype)


def test_non_callable_is_refused():
  with pytest.raises(TypeError, match="fn must be a predictive function"):
    jaxuq.with_dtype({"w": jnp.ones(3)}, jnp.bfloat16)
