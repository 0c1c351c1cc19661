"""jaxuq.Dropout and its packed masks: exact rates, statistics, explicit masks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
from jaxuq._src import dropout


@pytest.mark.parametrize(
  "rate, bits, keep",
  [
    (0.5, 1, 0.5),
    (0.25, 2, 0.75),
    (0.75, 2, 0.25),
    (0.375, 3, 0.625),
    (0.0, 1, 1.0),
    (0.7, 16, round(0.3 * 2**16) / 2**16),
    (0.1, 16, round(0.9 * 2**16) / 2**16),
  ],
)
def test_bits_and_effective_keep_probability(rate, bits, keep):
  assert dropout.bits_per_unit(rate) == bits
  assert dropout.effective_keep_probability(rate) == keep
  assert abs(dropout.effective_keep_probability(rate) - (1 - rate)) <= 2**-17


@pytest.mark.parametrize("rate", [0.5, 0.7, 0.1, 0.25, 0.9])
def test_keep_fraction_within_four_standard_errors(rate):
  n = 2**20
  keep = np.asarray(jaxuq.keep_mask(jax.random.key(1), (n,), rate))
  p = 1 - rate
  se = np.sqrt(p * (1 - p) / n)
  assert abs(keep.mean() - p) < 4 * se


@pytest.mark.parametrize("rate", [0.5, 0.7])
def test_neighbouring_units_are_uncorrelated(rate):
  # Units packed into one random word must be independent: the correlation of
  # unit i with unit i+1 (and i+k for k < units per word) is zero within 4 SE.
  n = 2**18
  keep = np.asarray(jaxuq.keep_mask(jax.random.key(2), (n, 4), rate), dtype=np.float64)
  for a, b in [(0, 1), (1, 2), (0, 3)]:
    r = np.corrcoef(keep[:, a], keep[:, b])[0, 1]
    assert abs(r) < 4 / np.sqrt(n)


@pytest.mark.parametrize("count", [1, 2, 7, 64, 1001])
def test_words_are_the_keys_own_bits(count):
  # The documented words: jax.random.bits of the key itself, jitted or not,
  # for the default key and another implementation.
  for key in (jax.random.key(5), jax.random.key(5, impl="threefry2x32")):
    expected = np.asarray(jax.random.bits(key, (count,), jnp.uint32))
    np.testing.assert_array_equal(dropout.draw_words(key, count), expected)
    np.testing.assert_array_equal(
      jax.jit(dropout.draw_words, static_argnums=1)(key, count), expected
    )


def test_mask_hlo_stays_small():
  # One dropout layer's masks must not blow up the program (issue 13: the old
  # threefry4x32 schedule made a forward pass 3.9x longer than Flax's): the
  # jaxuq layer's HLO stays within 1.5x of flax.linen.Dropout's.
  x = jnp.ones((8, 64))

  def hlo(layer):
    f = jax.jit(lambda k, v: layer.apply({}, v, deterministic=False, rngs={"dropout": k}))
    return len(f.lower(jax.random.key(0), x).as_text())

  assert hlo(jaxuq.Dropout(0.5)) <= 1.5 * hlo(nn.Dropout(0.5))


@pytest.mark.parametrize("rate, k", [(0.5, 1), (0.25, 2), (0.7, 16)])
def test_mask_unpacks_the_words_as_documented(rate, k):
  key = jax.random.key(6)
  shape = (3, 37)
  size = 3 * 37
  per_word = 32 // k
  words = np.asarray(jax.random.bits(key, (-(-size // per_word),), jnp.uint32))
  i = np.arange(size)
  fields = (words[i // per_word] >> ((i % per_word) * k).astype(np.uint32)) & (2**k - 1)
  expected = (fields < round((1 - rate) * 2**k)).reshape(shape)
  np.testing.assert_array_equal(jaxuq.keep_mask(key, shape, rate), expected)
  keys = jax.random.split(key, 3)
  batched = jax.vmap(lambda kk: jaxuq.keep_mask(kk, shape, rate))(keys)
  for j in range(3):
    np.testing.assert_array_equal(batched[j], jaxuq.keep_mask(keys[j], shape, rate))


def test_mask_depends_only_on_key_and_shape():
  k = jax.random.key(3)
  a = jaxuq.keep_mask(k, (5, 6), 0.3)
  b = jax.jit(lambda kk: jaxuq.keep_mask(kk, (5, 6), 0.3))(k)
  assert a.shape == (5, 6) and a.dtype == jnp.bool_
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, jaxuq.keep_mask(jax.random.key(4), (5, 6), 0.3))


def test_layer_scales_kept_units_and_zeroes_dropped():
  x = jnp.arange(1.0, 41.0).reshape(4, 10)
  layer = jaxuq.Dropout(0.75)
  y = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
  keep = np.asarray(y) != 0
  np.testing.assert_allclose(np.asarray(y)[keep], np.asarray(x)[keep] * 4.0, rtol=0)
  assert 0 < keep.sum() < keep.size
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)


def test_broadcast_dims_share_the_mask():
  x = jnp.ones((6, 50))
  y = jaxuq.Dropout(0.5, broadcast_dims=(0,)).apply(
    {}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}
  )
  assert np.all(np.asarray(y) == np.asarray(y)[0:1])


def test_explicit_mask_is_used_instead_of_the_key():
  x = jnp.ones((3, 4))
  keep = jnp.array([True, False, True, False])
  y = jaxuq.Dropout(0.5).apply({jaxuq.MASK_COLLECTION: {"keep": keep}}, x, deterministic=False)
  np.testing.assert_array_equal(y, jnp.tile(jnp.array([2.0, 0.0, 2.0, 0.0]), (3, 1)))


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_rate_outside_unit_interval_is_refused(rate):
  with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
    jaxuq.Dropout(rate)


def test_deterministic_given_twice_is_an_error():
  with pytest.raises(ValueError, match="deterministic"):
    jaxuq.Dropout(0.5, deterministic=True).apply({}, jnp.ones(3), deterministic=False)
