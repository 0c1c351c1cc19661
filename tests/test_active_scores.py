"""Acquisition scores and selection: float64 references, invariants, statistics, errors."""

import collections
import math

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings

from jaxuq import active
from tests.jit_variants import all_variants

POINTWISE = ["bald", "max_entropy", "variation_ratios", "mean_std"]
NAMES = [*POINTWISE, "random", "batchbald"]


def random_probs(seed, shape, concentration=1.0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1]).astype(dtype)


def entropy(p):
  return scipy.stats.entropy(p, axis=-1)  # nats, 0 log 0 = 0


def reference(name, p):
  """float64 NumPy formulas, written independently of jaxuq.metrics."""
  p = np.asarray(p, np.float64)
  if name == "bald":
    return entropy(p.mean(0)) - entropy(p).mean(0)
  if name == "max_entropy":
    return entropy(p.mean(0))
  if name == "variation_ratios":
    votes = p.argmax(-1)
    top = [collections.Counter(votes[:, i]).most_common(1)[0][1] for i in range(p.shape[1])]
    return 1.0 - np.array(top) / p.shape[0]
  return p.std(0).mean(-1)  # mean_std, ddof = 0


@all_variants
@pytest.mark.parametrize("name", POINTWISE)
def test_scores_match_float64_reference(variant, name):
  fn = getattr(active, name)
  for seed, shape, conc in [(0, (20, 9, 10), 0.3), (1, (3, 5, 2), 1.0), (2, (1, 4, 3), 0.1)]:
    p = random_probs(seed, shape, conc)
    out = variant(fn)(p)
    assert out.shape == (shape[1],) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(name, p), rtol=2e-5, atol=2e-6)


@settings(max_examples=12, deadline=None)
@given(
  st.sampled_from([1, 5, 12]),
  st.sampled_from([1, 4, 8]),
  st.sampled_from([2, 3, 6]),
  st.integers(0, 2**31 - 1),
  st.sampled_from([0.05, 1.0, 10.0]),
)
def test_score_invariants(samples, n, classes, seed, concentration):
  p = random_probs(seed, (samples, n, classes), concentration)
  p = p / p.sum(-1, keepdims=True)
  s = {name: np.asarray(getattr(active, name)(p)) for name in POINTWISE}
  for name, v in s.items():
    assert v.shape == (n,) and np.all(np.isfinite(v)), name
    assert np.all(v >= -1e-6), name  # BALD can be below 0 by float32 rounding only
  assert np.all(s["bald"] <= s["max_entropy"] + 1e-6)
  assert np.all(s["max_entropy"] <= np.log(classes) + 1e-5)
  assert np.all(s["mean_std"] <= 0.5 + 1e-6)
  k = min(samples, classes)
  assert np.all(s["variation_ratios"] <= (k - 1) / k + 1e-6)


@settings(max_examples=12, deadline=None)
@given(
  st.sampled_from(NAMES),
  st.sampled_from([None, "power", "softmax", "softrank"]),
  st.sampled_from([1, 3, 9]),
  st.integers(0, 2**31 - 1),
  st.data(),
)
def test_selection_distinct_in_range_and_deterministic(name, stochastic, n, seed, data):
  if name in ("random", "batchbald"):
    stochastic = None
  k = data.draw(st.integers(1, n))
  p = random_probs(seed, (4, n, 3), 0.5)
  acq = active.acquisition(name, stochastic=stochastic, num_configs=50)
  key = jax.random.key(seed)
  idx = np.asarray(acq.select(key, p, k))
  assert idx.dtype == np.int32 and idx.shape == (k,)
  assert len(set(idx.tolist())) == k and idx.min() >= 0 and idx.max() < n
  np.testing.assert_array_equal(idx, acq.select(key, p, k))  # same key, same choice


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("stochastic", [None, "power", "softmax", "softrank"])
def test_jit_and_eager_agree(name, stochastic):
  if stochastic is not None and name in ("random", "batchbald"):
    return
  p = random_probs(3, (6, 40, 4), 0.4)
  acq = active.acquisition(name, stochastic=stochastic)
  key = jax.random.key(7)
  eager = acq.select(key, p, 5)
  np.testing.assert_array_equal(jax.jit(acq.select, static_argnums=2)(key, p, 5), eager)
  if acq.select_from_scores is not None and acq.score is not None:
    np.testing.assert_array_equal(acq.select_from_scores(key, acq.score(p), 5), eager)


@pytest.mark.parametrize("name", ["bald", "max_entropy", "mean_std", "batchbald"])
def test_permuting_candidates_permutes_the_choice(name):
  p = random_probs(4, (8, 12, 3), 0.5)
  perm = np.random.default_rng(0).permutation(12)
  acq = active.acquisition(name)
  key = jax.random.key(1)
  chosen = np.asarray(acq.select(key, p, 4))
  chosen_permuted = np.asarray(acq.select(key, p[:, perm], 4))
  np.testing.assert_array_equal(perm[chosen_permuted], chosen)


@pytest.mark.parametrize("name", POINTWISE)
def test_deterministic_selection_is_top_k_by_score(name):
  p = random_probs(5, (30, 50, 4), 0.3)
  scores = reference(name, p)
  idx = np.asarray(active.acquisition(name).select(jax.random.key(0), p, 6))
  # The chosen scores are the 6 largest (ties may go either way).
  np.testing.assert_allclose(np.sort(scores[idx]), np.sort(scores)[-6:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  ("stochastic", "beta"), [(None, math.inf), ("softrank", math.inf), ("softrank", 1.0)]
)
def test_ties_are_broken_at_random_by_the_key(stochastic, beta):
  # softrank ranked tied scores by pool order: with beta = inf index 0 was picked every time.
  scores = np.full(6, 0.5, np.float32)
  acq = active.acquisition("variation_ratios", stochastic=stochastic, beta=beta)
  n = 1200
  picks = [int(acq.select_from_scores(jax.random.key(s), scores, 1)[0]) for s in range(n)]
  counts = np.bincount(picks, minlength=6)
  # uniform over 6: a chi-square test at 1e-4 (5 degrees of freedom)
  assert scipy.stats.chisquare(counts).pvalue > 1e-4, counts


def test_random_is_uniform():
  """Each index is chosen with probability k/n: every count within 4.5 standard errors."""
  n, k, trials = 20, 5, 4000
  acq = active.acquisition("random")
  p = random_probs(0, (2, n, 3))
  keys = jax.random.split(jax.random.key(0), trials)
  picks = np.asarray(jax.vmap(lambda key: acq.select(key, p, k))(keys))
  assert all(len(set(row)) == k for row in picks.tolist())
  counts = np.bincount(picks.ravel(), minlength=n)
  q = k / n
  se = math.sqrt(trials * q * (1 - q))
  assert np.all(np.abs(counts - trials * q) < 4.5 * se), counts


@pytest.mark.parametrize(
  "stochastic, weights",
  [
    ("power", lambda s, beta: s**beta),
    ("softmax", lambda s, beta: np.exp(beta * s)),
    ("softrank", lambda s, beta: (np.argsort(np.argsort(-s)) + 1.0) ** -beta),
  ],
)
def test_stochastic_first_pick_distribution(stochastic, weights):
  """The first pick follows Kirsch et al. (2023)'s distribution within 4.5 standard errors."""
  scores = np.array([0.1, 0.4, 0.2, 0.8, 0.05], np.float32)
  beta, trials = 2.0, 6000
  acq = active.acquisition("bald", stochastic=stochastic, beta=beta)
  keys = jax.random.split(jax.random.key(2), trials)
  first = np.asarray(jax.vmap(lambda key: acq.select_from_scores(key, scores, 2)[0])(keys))
  q = weights(scores.astype(np.float64), beta)
  q = q / q.sum()
  counts = np.bincount(first, minlength=5)
  se = np.sqrt(trials * q * (1 - q))
  assert np.all(np.abs(counts - trials * q) < 4.5 * se), (counts, trials * q)


@pytest.mark.parametrize("stochastic", ["power", "softmax", "softrank"])
def test_stochastic_with_large_beta_is_top_k(stochastic):
  p = random_probs(6, (10, 30, 5), 0.3)
  key = jax.random.key(3)
  top = np.sort(np.asarray(active.acquisition("bald").select(key, p, 5)))
  for beta in (math.inf, 1e7):
    acq = active.acquisition("bald", stochastic=stochastic, beta=beta)
    np.testing.assert_array_equal(np.sort(np.asarray(acq.select(key, p, 5))), top)


def test_beta_too_small_for_float32_noise_is_refused():
  # beta = 1e-40 turned the Gumbel noise into inf and nan, which top_k ranked first.
  with pytest.raises(ValueError, match="beta must be at least 1e-30"):
    active.acquisition("bald", stochastic="power", beta=1e-40)
  acq = active.acquisition("bald", stochastic="power", beta=1e-30)
  scores = np.array([0.0, 0.0, 0.0, 0.5, 0.4, 0.0], np.float32)
  for s in range(20):
    assert set(np.asarray(acq.select_from_scores(jax.random.key(s), scores, 2)).tolist()) == {3, 4}


def test_power_never_draws_zero_scores_before_positive_ones():
  scores = np.array([0.0, 0.3, 0.0, 0.1], np.float32)
  acq = active.acquisition("bald", stochastic="power")
  for s in range(20):
    assert set(np.asarray(acq.select_from_scores(jax.random.key(s), scores, 2)).tolist()) == {1, 3}


def test_acquisition_objects_are_shared_and_named():
  assert active.acquisition("bald") is active.acquisition("bald")
  for name in NAMES:
    acq = active.acquisition(name)
    assert isinstance(acq, active.Acquisition) and acq.name == name
  assert active.acquisition("batchbald").consistent
  assert active.acquisition("batchbald").select_from_scores is None


def test_bad_input_is_refused_eagerly():
  p = random_probs(0, (3, 4, 2))
  key = jax.random.key(0)
  bald = active.acquisition("bald")
  with pytest.raises(ValueError, match="'bald', 'max_entropy'.*'batchbald'; got 'bold'"):
    active.acquisition("bold")
  with pytest.raises(ValueError, match="stochastic must be one of"):
    active.acquisition("bald", stochastic="gumbel")
  with pytest.raises(ValueError, match="applies to per-point scores only"):
    active.acquisition("batchbald", stochastic="power")
  with pytest.raises(ValueError, match="beta must be a positive float"):
    active.acquisition("bald", stochastic="softmax", beta=0.0)
  with pytest.raises(ValueError, match="num_configs must be a positive int, got 0"):
    active.acquisition("batchbald", num_configs=0)
  for name in NAMES:
    acq = active.acquisition(name)
    with pytest.raises(
      ValueError, match="k must be at most the number of candidates n = 4, got k = 5"
    ):
      acq.select(key, p, 5)
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
      acq.select(key, p, 0)
    with pytest.raises(ValueError, match=r"shape \(samples, batch, classes\)"):
      acq.select(key, p[0], 1)
    with pytest.raises(ValueError, match="must sum to 1"):
      acq.select(key, p * 0.5, 1)
    with pytest.raises(TypeError, match="typed PRNG key"):
      acq.select(0, p, 1)
  with pytest.raises(TypeError, match="k must be a static Python int"):
    jax.jit(bald.select)(key, p, 2)
  with pytest.raises(ValueError, match="scores must be finite"):
    bald.select_from_scores(key, np.array([0.1, np.nan], np.float32), 1)
  with pytest.raises(ValueError, match="scores must be a non-empty 1-D float array"):
    bald.select_from_scores(key, np.ones((2, 2), np.float32), 1)


def test_public_module_and_one_compilation_per_setting():
  import jaxuq
  from jaxuq._src.active import select

  assert jaxuq.active is active and "active" in jaxuq.__all__
  assert all(hasattr(active, name) for name in active.__all__)
  p = random_probs(8, (3, 17, 4))
  before = select._top_k._cache_size()
  for seed in range(3):  # new keys and new factory calls: no new compilation
    active.acquisition("mean_std", stochastic="softmax", beta=3.0).select(
      jax.random.key(seed), p, 2
    )
  assert select._top_k._cache_size() == before + 1


@pytest.mark.parametrize("name", ["bald", "variation_ratios", "random", "batchbald"])
def test_select_vmaps_over_runs(name):
  """Several runs selected in one jitted program equal the runs one after another."""
  p = np.stack([random_probs(s, (6, 30, 4), 0.5) for s in range(3)])  # (runs, S, n, C)
  keys = jax.random.split(jax.random.key(0), 3)
  acq = active.acquisition(name, num_configs=16)
  together = jax.jit(jax.vmap(lambda key, q: acq.select(key, q, 5)))(keys, p)
  one_by_one = np.stack([acq.select(keys[i], p[i], 5) for i in range(3)])
  np.testing.assert_array_equal(together, one_by_one)
