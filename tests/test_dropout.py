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


@pytest.mark.parametrize("rate", [0.99, 0.99999, 1 - 2**-20, 0.95, 0.9999])
def test_rates_near_one_keep_their_probability_relatively(rate):
  # 16-bit thresholds kept nothing beyond 1 - 2**-17 (the output was all zeros) and kept
  # 1.53x too often at 0.99999, which the inverted scaling turned into a 1.53x mean.
  keep = dropout.effective_keep_probability(rate)
  assert keep > 0
  assert abs(keep - (1 - rate)) <= 2**-13 * (1 - rate)
  assert dropout.bits_per_unit(rate) == 32


def test_keep_probability_error_is_bounded_for_every_rate():
  # Both ends: the drop probability too (16 bits dropped 1.526e-5 at rate 1e-5, +53%).
  rates = np.concatenate(
    [
      np.random.default_rng(0).uniform(0, 1 - 2**-20, 2000),
      1 - np.geomspace(2**-20, 1, 200),
      np.geomspace(2**-20, 1, 200),
    ]
  )
  for rate in map(float, rates):
    if rate >= 1.0 or 1 - rate < 2**-20:
      continue
    keep = dropout.effective_keep_probability(rate)
    bound = min(2**-17, 2**-13 * min(rate, 1 - rate))
    assert abs(keep - (1 - rate)) <= bound, rate
  for rate in (1e-7, 3e-9, 2**-33 * 1.5, 2**-34, 1e-17):  # below 2**-20: within 2**-33
    keep = dropout.effective_keep_probability(rate)
    assert dropout.bits_per_unit(rate) == 32
    assert abs((1 - keep) - rate) <= 2**-33, rate
  assert dropout.effective_keep_probability(1e-17) == 1.0
  assert np.asarray(jaxuq.keep_mask(jax.random.key(0), (4096,), 1e-17)).all()


# keep_mask(jax.random.key(2024), (4, 16), rate) packed with np.packbits, recorded before
# 32-bit masks were extended to small rates: rates in [1/16, 15/16] must keep their masks.
PINNED_MASKS = {
  0.5: "d797a87709f38647",
  0.25: "ffef3dbbcfdefafb",
  0.1: "ff3ffcfffffff5ff",
  0.7: "f1272c04041c741f",
}
# mc_sample of from_linen(layer(rate)) at key 11, x = ones((2, 8)), 4 samples, kept = nonzero.
PINNED_SAMPLES = {0.5: "ee22e4029de8ed15", 0.25: "f5bfe1b7fed6f7ee"}


@pytest.mark.parametrize("rate", sorted(PINNED_MASKS))
def test_masks_of_rates_from_a_sixteenth_to_fifteen_sixteenths_are_pinned(rate):
  keep = np.asarray(jaxuq.keep_mask(jax.random.key(2024), (4, 16), rate))
  assert np.packbits(keep.ravel()).tobytes().hex() == PINNED_MASKS[rate]
  if rate in PINNED_SAMPLES:
    for layer in (jaxuq.Dropout, nn.Dropout):
      f = jaxuq.from_linen(layer(rate), {"params": {}})
      s = np.asarray(jaxuq.mc_sample(f, jax.random.key(11), jnp.ones((2, 8)), num_samples=4))
      assert np.packbits((s != 0).ravel()).tobytes().hex() == PINNED_SAMPLES[rate]


def test_small_rate_drops_at_its_rate():
  # 16-bit fields dropped with probability 1.526e-5 at rate 1e-5 (+53% variance against
  # the closed form) and never at 3e-6. Drops in n = 2**24 units are binomial(n, rate):
  # mean 167.8, sd 12.95 at 1e-5; the old 256 is 6.8 sd away, outside the 4-sd band.
  n = 2**24
  for rate, seed in ((1e-5, 0), (3e-6, 1)):
    drops = n - int(np.asarray(jaxuq.keep_mask(jax.random.key(seed), (n,), rate)).sum())
    mean, sd = n * rate, np.sqrt(n * rate * (1 - rate))
    assert abs(drops - mean) < 4 * sd, (rate, drops, mean, sd)
    assert dropout.bits_per_unit(rate) == 32
    assert abs((1 - dropout.effective_keep_probability(rate)) - rate) <= 2**-13 * rate


@pytest.mark.parametrize("rate", [1e-5, 0.01, 0.97])
def test_mc_sample_and_sequential_sample_draw_the_same_masks(rate):
  x = jnp.ones((4, 2**16))  # 1e-5: 13 drops expected over the 5 samples
  f = jaxuq.from_linen(jaxuq.Dropout(rate), {"params": {}})
  got = np.asarray(jaxuq.mc_sample(f, jax.random.key(3), x, num_samples=5))
  want = np.asarray(jaxuq.sequential_sample(f, jax.random.key(3), x, num_samples=5))
  np.testing.assert_array_equal(got != 0, want != 0)
  assert (got == 0).any() and (got != 0).any()


def test_rate_nearest_one_keeps_units_and_closer_rates_are_refused():
  rate = 1 - 2**-20
  kept = int(np.asarray(jaxuq.keep_mask(jax.random.key(0), (2**24,), rate)).sum())
  assert 16 - 4 * 4 <= kept <= 16 + 4 * 4  # binomial(2**24, 2**-20): mean 16, sd 4
  assert kept > 0
  for bad in (1 - 2**-21, 0.9999999):
    with pytest.raises(ValueError, match=r"keep probability 1 - rate of at least 2\*\*-20"):
      jaxuq.keep_mask(jax.random.key(0), (4,), bad)
    with pytest.raises(ValueError, match="at least 2"):
      jaxuq.Dropout(bad).apply(
        {}, jnp.ones(4), deterministic=False, rngs={"dropout": jax.random.key(0)}
      )


def test_explicit_masks_must_fit_the_input_and_be_boolean():
  # A (2, 1, 3) mask grew a (2, 3) input to (2, 2, 3); a float mask was read as "nonzero kept".
  x = jnp.ones((2, 3))
  for bad in (jnp.ones((2, 1, 3), bool), jnp.array([0.3, 0.0, 1.0]), jnp.ones((3, 3), bool)):
    with pytest.raises(ValueError, match="explicit mask .* must be a bool array broadcastable"):
      jaxuq.Dropout(0.5).apply({"dropout_masks": {"keep": bad}}, x, deterministic=False)
  for good in (jnp.ones((1, 3), bool), jnp.ones((2, 3), bool), jnp.ones((3,), bool)):
    y = jaxuq.Dropout(0.5).apply({"dropout_masks": {"keep": good}}, x, deterministic=False)
    np.testing.assert_array_equal(y, 2 * x)
  with pytest.raises(ValueError, match="shape must have sizes >= 0"):
    jaxuq.keep_mask(jax.random.key(0), (-1,), 0.5)


def test_a_dict_input_is_named():
  # jnp.result_type(dict) gave "entry not a 2- or 3- tuple".
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dropout(0.5, deterministic=True)({"a": nn.Dense(2)(x), "b": x})["a"]

  x = jnp.ones((2, 3))
  f = jaxuq.from_linen(Net(), Net().init(jax.random.key(0), x))
  with pytest.raises(TypeError, match="takes one array, got dict"):
    f(jax.random.key(1), x)
