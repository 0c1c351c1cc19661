"""mc_sample against sequential_sample: same keys, same masks, same outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxuq
from jaxuq._src.sampling import balanced_chunk
from tests.helpers import mask_fn, mlp_predictive

# float32 outputs of a batched matmul may differ from a single one by a few
# ulps; measured up to 5e-7 relative here.
RTOL, ATOL = 2e-6, 1e-6


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@settings(max_examples=25, deadline=None)
@given(num_samples=st.integers(1, 17), chunk=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_masks_do_not_depend_on_chunk_size(num_samples, chunk, seed):
  key = jax.random.key(seed)
  x = jnp.arange(3.0)
  got = jaxuq.mc_sample(mask_fn, key, x, num_samples=num_samples, chunk_size=chunk)
  want = jaxuq.sequential_sample(mask_fn, key, x, num_samples=num_samples)
  assert got["mask"].shape == (num_samples, 3, 7)
  assert_trees_equal(got, want)


def test_sample_i_is_fn_of_split_key_i(key):
  x = jnp.arange(2.0)
  got = jaxuq.mc_sample(mask_fn, key, x, num_samples=5)
  keys = jax.random.split(key, 5)
  for i in range(5):
    assert_trees_equal(jax.tree.map(lambda y, i=i: y[i], got), mask_fn(keys[i], x))


@pytest.mark.parametrize("chunk", [None, 1, 3, 8, 100])
def test_linen_mlp_agrees_with_the_loop_to_float32_rounding(key, chunk):
  predict, x = mlp_predictive(key, width=64)
  got = jaxuq.mc_sample(predict, jax.random.key(7), x, num_samples=8, chunk_size=chunk)
  want = jaxuq.sequential_sample(predict, jax.random.key(7), x, num_samples=8)
  assert got.shape == (8, 16, 1)
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
  assert float(jnp.std(got, axis=0).mean()) > 0.0


def test_plain_function_with_pytree_output(key):
  def fn(k, x, y):
    e = jax.random.normal(k, x.shape)
    return (x + e, {"y": y * e.sum()})

  x, y = jnp.ones(4), jnp.float32(2.0)
  got = jaxuq.mc_sample(fn, key, x, y, num_samples=6, chunk_size=4)
  want = jaxuq.sequential_sample(fn, key, x, y, num_samples=6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL), got, want)
  assert got[0].shape == (6, 4) and got[1]["y"].shape == (6,)


def test_jit_and_eager_give_the_same_samples(key):
  predict, x = mlp_predictive(key)
  eager = jaxuq.mc_sample(predict, key, x, num_samples=4)
  jitted = jax.jit(lambda k, xx: jaxuq.mc_sample(predict, k, xx, num_samples=4))(key, x)
  np.testing.assert_allclose(eager, jitted, rtol=RTOL, atol=ATOL)


def test_same_key_same_settings_bit_identical(key):
  predict, x = mlp_predictive(key)
  a = jaxuq.mc_sample(predict, jax.random.key(3), x, num_samples=10, chunk_size=3)
  b = jaxuq.mc_sample(predict, jax.random.key(3), x, num_samples=10, chunk_size=3)
  np.testing.assert_array_equal(a, b)
  c = jaxuq.mc_sample(predict, jax.random.key(4), x, num_samples=10, chunk_size=3)
  assert not np.array_equal(a, c)


def test_traced_once_per_shape(key):
  traces = []

  def fn(k, x):
    traces.append(x.shape)
    return x * jax.random.uniform(k, x.shape)

  jaxuq.mc_sample(fn, key, jnp.ones(3), num_samples=4, chunk_size=4)
  n = len(traces)
  jaxuq.mc_sample(fn, jax.random.key(9), jnp.zeros(3), num_samples=4, chunk_size=4)
  assert len(traces) == n  # same shapes: the compiled sampler is reused
  jaxuq.mc_sample(fn, key, jnp.ones(5), num_samples=4, chunk_size=4)
  assert len(traces) > n  # a new shape traces again


@pytest.mark.parametrize("chunk_size", [None, 2, 4])
def test_the_model_is_traced_once_per_compilation(key, chunk_size):
  # The shape checks, the automatic chunk size and the batched program all read
  # one trace: tracing a Flax model is most of the Python cost of a first call.
  traces = []

  def fn(k, x):
    traces.append(1)
    return {"y": x * jax.random.uniform(k, x.shape), "s": jnp.sum(x)}

  x = jnp.arange(6.0)
  out = jaxuq.mc_sample(fn, key, x, num_samples=5, chunk_size=chunk_size)
  assert len(traces) == 1
  keys = jax.random.split(key, 5)
  ref = jax.vmap(lambda k: fn(k, x))(keys)
  np.testing.assert_array_equal(out["y"], ref["y"])
  np.testing.assert_array_equal(out["s"], ref["s"])


def test_new_weights_of_the_same_module_reuse_the_compilation(key):
  traces = []

  class Counting(type(mlp_predictive(key)[0].module)):
    def __call__(self, x, train: bool = False):
      traces.append(1)
      return super().__call__(x, train)

  model = Counting(width=8)
  x = jnp.ones((4, 1))
  f1 = jaxuq.from_linen(model, model.init(jax.random.key(1), x))
  f2 = jaxuq.from_linen(model, model.init(jax.random.key(2), x))
  a = jaxuq.mc_sample(f1, key, x, num_samples=3, chunk_size=3)
  n = len(traces)
  b = jaxuq.mc_sample(f2, key, x, num_samples=3, chunk_size=3)
  assert len(traces) == n
  assert not np.array_equal(a, b)


def test_auto_chunk_follows_the_memory_budget(key):
  predict, x = mlp_predictive(key, batch=64, width=128)
  per_sample = jaxuq._src.memory.per_sample_bytes(predict, key, x)
  assert per_sample == 2 * 64 * 128 * 4  # twice the largest activation
  chunk = jaxuq.auto_chunk_size(predict, key, x, num_samples=100, memory_budget=per_sample * 7)
  assert chunk == 7
  assert jaxuq.auto_chunk_size(predict, key, x, num_samples=100, memory_budget=1) == 1
  assert jaxuq.auto_chunk_size(predict, key, x, num_samples=5, memory_budget=2**40) == 5


def test_memory_estimate_counts_only_key_dependent_arrays(key):
  def fn(k, x):
    h = jnp.tanh(x @ jnp.ones((8, 4096)))  # key-independent: computed once per chunk
    small = h[:, :16] * jax.random.bernoulli(k, 0.5, (x.shape[0], 16))
    return small.sum(-1)

  x = jnp.ones((32, 8))
  assert jaxuq._src.memory.per_sample_bytes(fn, key, x) == 2 * 32 * 16 * 4


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_num_samples_must_be_positive_int(key, bad):
  for sampler in (jaxuq.mc_sample, jaxuq.sequential_sample):
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
      sampler(mask_fn, key, jnp.ones(2), num_samples=bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_chunk_size_must_be_positive(key, bad):
  with pytest.raises(ValueError, match="chunk_size must be a positive int"):
    jaxuq.mc_sample(mask_fn, key, jnp.ones(2), num_samples=3, chunk_size=bad)


def test_integer_and_legacy_keys_are_refused_with_the_fix():
  with pytest.raises(TypeError, match=r"jax.random.key\(0\)"):
    jaxuq.mc_sample(mask_fn, 0, jnp.ones(2), num_samples=3)
  with pytest.raises(TypeError, match="wrap_key_data"):
    jaxuq.mc_sample(mask_fn, jax.random.PRNGKey(0), jnp.ones(2), num_samples=3)
  with pytest.raises(ValueError, match="scalar"):
    jaxuq.mc_sample(mask_fn, jax.random.split(jax.random.key(0), 2), jnp.ones(2), num_samples=3)


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_rbg_keys_are_refused(impl):
  key = jax.random.key(0, impl=impl)
  # Why: under vmap these implementations give every key the first key's bits.
  keys = jax.random.split(key, 4)
  batched = jax.vmap(lambda k: jax.random.bits(k, (8,)))(keys)
  single = jnp.stack([jax.random.bits(k, (8,)) for k in keys])
  assert not np.array_equal(batched, single)
  with pytest.raises(ValueError, match=impl):
    jaxuq.mc_sample(mask_fn, key, jnp.ones(2), num_samples=3)


def test_philox_keys_are_accepted_and_per_key(key):
  k = jax.random.key(5, impl="philox4x32")
  got = jaxuq.mc_sample(mask_fn, k, jnp.ones(2), num_samples=9, chunk_size=4)
  assert_trees_equal(got, jaxuq.sequential_sample(mask_fn, k, jnp.ones(2), num_samples=9))


def test_fn_must_be_callable(key):
  with pytest.raises(TypeError, match="fn must be callable"):
    jaxuq.mc_sample(3, key, num_samples=2)


@settings(max_examples=50, deadline=None)
@given(num=st.integers(1, 5000), chunk=st.integers(1, 5000))
def test_balanced_chunks_are_few_even_and_within_the_limit(num, chunk):
  b = balanced_chunk(num, chunk)
  count = -(-num // b)
  assert 1 <= b <= min(num, chunk)
  assert count == -(-num // min(num, chunk))  # no more chunks than the limit needs
  assert count * b - num < count  # padding: less than one sample per chunk


def test_a_last_short_chunk_is_no_second_program():
  # 13 samples in chunks of 4: four chunks of 4 (the last padded), one loop
  # body; lax.map's remainder would add a second copy of the model.
  fn = lambda key, x: jnp.sin(x * jax.random.uniform(key, x.shape))  # noqa: E731
  x = jnp.ones(3)
  for n in (12, 13):
    program = jax.make_jaxpr(lambda k, n=n: jaxuq.mc_sample(fn, k, x, num_samples=n, chunk_size=4))
    assert str(program(jax.random.key(0))).count(" sin ") == 1
    got = jaxuq.mc_sample(fn, jax.random.key(n), x, num_samples=n, chunk_size=4)
    want = jaxuq.sequential_sample(fn, jax.random.key(n), x, num_samples=n)
    np.testing.assert_allclose(got, want, rtol=1e-6)
