"""Pool scoring in chunks: masks independent of the chunking, streamed scores = sampled scores."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxuq
from jaxuq import active

NUM = 8


@pytest.fixture(scope="module")
def model():
  net = nn.Sequential([nn.Dense(16), nn.relu, jaxuq.Dropout(0.5, deterministic=True), nn.Dense(3)])
  x = np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)
  return net, net.init(jax.random.key(0), x), x


def test_chunking_does_not_change_samples_or_scores(model):
  net, variables, x = model
  f = jaxuq.from_linen(net, variables)
  key = jax.random.key(3)
  for consistent in (False, True):
    runs = [
      active.sample_pool(
        key, f, x, num_samples=NUM, chunk_size=c, consistent=consistent, from_logits=True
      )
      for c in (1, 5, 50)
    ]
    for r in runs[1:]:
      np.testing.assert_allclose(r, runs[0], rtol=1e-5, atol=1e-6)
    scores = [
      active.score_pool(
        key,
        f,
        x,
        num_samples=NUM,
        score="bald",
        chunk_size=c,
        consistent=consistent,
        from_logits=True,
      )
      for c in (4, 23)
    ]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
    on_device = active.sample_pool(
      key,
      f,
      jax.numpy.asarray(x),
      num_samples=NUM,
      chunk_size=5,
      consistent=consistent,
      from_logits=True,
    )
    np.testing.assert_allclose(on_device, runs[0], rtol=1e-5, atol=1e-6)


def test_per_example_masks_are_mc_reduce_datasets(model):
  """consistent=False: sample s of example g uses fold_in(split(key)[s], g), as mc_reduce_dataset."""
  net, variables, x = model
  f = jaxuq.from_linen(net, variables)
  key = jax.random.key(4)
  probs = active.sample_pool(
    key, f, x, num_samples=NUM, chunk_size=6, consistent=False, from_logits=True
  )
  ref = jaxuq.mc_reduce_dataset(
    f,
    key,
    jaxuq.batches_from_array(x, 10),
    num_samples=NUM,
    reducer=jaxuq.classification_reducer(from_logits=True),
    progress=False,
  )
  np.testing.assert_allclose(probs.mean(0), ref["mean_probs"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(active.variation_ratios(probs), ref["variation_ratio"], atol=1e-6)


def test_consistent_masks_are_one_network_per_sample(model):
  """consistent=True equals mc_sample of a shared-mask predictive function over the whole pool."""
  net, variables, x = model
  key = jax.random.key(5)
  probs = active.sample_pool(
    key, jaxuq.from_linen(net, variables), x, num_samples=NUM, chunk_size=7, from_logits=True
  )
  shared = jaxuq.from_linen(net, variables, shared_mask=True)
  ref = jax.nn.softmax(jaxuq.mc_sample(shared, key, x, num_samples=NUM), axis=-1)
  np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["bald", "max_entropy", "variation_ratios", "mean_std"])
def test_streamed_scores_equal_scores_of_the_samples(model, name):
  net, variables, x = model
  f = jaxuq.from_linen(net, variables)
  key = jax.random.key(6)
  probs = active.sample_pool(key, f, x, num_samples=NUM, consistent=False, from_logits=True)
  streamed = active.score_pool(
    key, f, x, num_samples=NUM, score=active.acquisition(name), chunk_size=9, from_logits=True
  )
  np.testing.assert_allclose(streamed, getattr(active, name)(probs), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("name", ["bald", "variation_ratios", "random", "batchbald"])
def test_acquire_picks_distinct_pool_indices(model, name):
  net, variables, x = model
  f = jaxuq.from_linen(net, variables)
  idx = active.acquire(
    jax.random.key(7),
    active.acquisition(name),
    f,
    x,
    5,
    num_samples=NUM,
    chunk_size=10,
    from_logits=True,
  )
  assert idx.shape == (5,) and len(set(idx.tolist())) == 5 and 0 <= idx.min() and idx.max() < 23


def test_acquire_with_bald_is_top_k_of_the_streamed_scores(model):
  net, variables, x = model
  f = jaxuq.from_linen(net, variables)
  key = jax.random.key(8)
  idx = active.acquire(key, active.acquisition("bald"), f, x, 4, num_samples=NUM, from_logits=True)
  score_key, _ = jax.random.split(key)
  s = np.asarray(
    active.score_pool(score_key, f, x, num_samples=NUM, score="bald", from_logits=True)
  )
  assert sorted(idx.tolist()) == sorted(np.argsort(-s)[:4].tolist())


def test_random_acquisition_runs_no_network():
  def fail(key, x):
    raise AssertionError("random acquisition called the network")

  idx = active.acquire(
    jax.random.key(0), active.acquisition("random"), fail, np.zeros((9, 2)), 3, num_samples=4
  )
  assert len(set(idx.tolist())) == 3


def test_bad_pool_arguments(model):
  net, variables, x = model
  f = jaxuq.from_linen(net, variables)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="score must be one of 'bald'.*BatchBALD needs sample_pool"):
    active.score_pool(key, f, x, num_samples=4, score="batchbald")
  with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
    active.score_pool(key, f, x, num_samples=4, score="bald", chunk_size=0)
  with pytest.raises(ValueError, match="num_samples must be a positive int, got 0"):
    active.sample_pool(key, f, x, num_samples=0)
  with pytest.raises(ValueError, match="pool_x must hold at least one example"):
    active.sample_pool(key, f, x[:0], num_samples=2)
  with pytest.raises(TypeError, match="predictive_fn must be callable"):
    active.sample_pool(key, None, x, num_samples=2)
  with pytest.raises(TypeError, match="acquisition must be a jaxuq.active.Acquisition"):
    active.acquire(key, "bald", f, x, 2, num_samples=2)
  with pytest.raises(ValueError, match="k must be at most the number of candidates n = 23"):
    active.acquire(key, active.acquisition("bald"), f, x, 24, num_samples=2)


def test_pool_scoring_refuses_outputs_that_are_not_probabilities():
  # Sigmoids gave finite, meaningless scores (and acquire picked from them); logits without
  # from_logits=True gave nan; a tuple output gave scores of the wrong shape.
  key = jax.random.key(0)
  w = jax.random.normal(jax.random.key(1), (3, 3))

  def logits(k, x):
    return (x * jaxuq.keep_mask(k, x.shape, 0.5) * 2) @ w

  pool = jax.random.normal(jax.random.key(3), (6, 3))
  sigmoid = lambda k, x: jax.nn.sigmoid(logits(k, x))  # noqa: E731
  probs = lambda k, x: jax.nn.softmax(logits(k, x))  # noqa: E731
  for fn in (sigmoid, logits):
    with pytest.raises(ValueError, match="pass from_logits=True for logits"):
      active.score_pool(key, fn, pool, num_samples=4, score="bald")
  with pytest.raises(ValueError, match="pass from_logits=True for logits"):
    active.acquire(key, active.acquisition("batchbald"), sigmoid, pool, 2, num_samples=4)
  assert active.score_pool(
    key, logits, pool, num_samples=4, score="bald", from_logits=True
  ).shape == (6,)
  pair = lambda k, x: (probs(k, x), probs(k, x))  # noqa: E731
  with pytest.raises(TypeError, match="must return one array of class probabilities"):
    active.score_pool(key, pair, pool, num_samples=4, score="bald")
  with pytest.raises(TypeError, match="got dict"):
    active.sample_pool(key, lambda k, x: {"p": probs(k, x)}, pool, num_samples=4)


def test_empty_pools_and_random_scores_get_their_own_messages():
  f = lambda k, x: jax.nn.softmax(x)  # noqa: E731
  with pytest.raises(ValueError, match="pool_x must hold at least one example"):
    active.acquire(
      jax.random.key(0), active.acquisition("bald"), f, np.zeros((0, 3)), 1, num_samples=2
    )
  with pytest.raises(ValueError, match="random acquisition scores nothing"):
    active.score_pool(jax.random.key(0), f, np.zeros((4, 3)), num_samples=2, score="random")
