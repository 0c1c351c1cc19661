"""BatchBALD: joint entropy against brute-force float64 enumeration, the greedy choice."""

import itertools

import jax
import numpy as np
import pytest

from jaxuq import active
from tests.test_active_scores import entropy, random_probs


def brute_joint_entropy(p):
  """H[y_1..y_n] with P(y) = mean_s prod_j p_s(y_j), every configuration listed (float64)."""
  p = np.asarray(p, np.float64)
  samples, n, classes = p.shape
  total = 0.0
  for config in itertools.product(range(classes), repeat=n):
    prob = np.mean(np.prod(p[:, np.arange(n), config], axis=1))
    if prob > 0:
      total -= prob * np.log(prob)
  return total


def brute_batchbald(p, k):
  """Greedy: each step adds the candidate maximising I[y_A, y_i; w] (brute force)."""
  expected = entropy(np.asarray(p, np.float64)).mean(0)
  chosen = []
  for _ in range(k):
    gains = [
      -np.inf
      if i in chosen
      else brute_joint_entropy(p[:, chosen + [i]]) - expected[chosen + [i]].sum()
      for i in range(p.shape[1])
    ]
    chosen.append(int(np.argmax(gains)))
  return chosen


@pytest.mark.parametrize(
  "seed, shape, concentration",
  [(0, (5, 1, 3), 1.0), (1, (7, 3, 2), 0.5), (2, (4, 4, 3), 0.2), (3, (10, 5, 2), 2.0)],
)
def test_exact_joint_entropy_matches_enumeration(seed, shape, concentration):
  p = random_probs(seed, shape, concentration)
  np.testing.assert_allclose(active.joint_entropy(p), brute_joint_entropy(p), rtol=2e-5)
  with jax.enable_x64(True):
    p64 = random_probs(seed, shape, concentration, np.float64)
    np.testing.assert_allclose(active.joint_entropy(p64), brute_joint_entropy(p64), rtol=1e-12)


def test_joint_entropy_with_zeros_and_copies():
  one_hot = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]  # 4 networks, certain predictions
  p = np.stack([one_hot, one_hot], axis=1)  # one point twice: the copy adds nothing
  np.testing.assert_allclose(active.joint_entropy(p), brute_joint_entropy(p), rtol=1e-6)
  np.testing.assert_allclose(active.joint_entropy(p), active.max_entropy(p[:, :1])[0], rtol=1e-6)


def test_sampled_joint_entropy_converges_to_exact():
  """Unbiased, standard error ~ 1/sqrt(num_configs): 16 estimates per size, 5-sigma bound."""
  p = random_probs(4, (12, 7, 3), 0.4)  # 3**6 = 729 configurations of the first 6 points
  exact = brute_joint_entropy(p)
  spreads = []
  for num_configs in (32, 512):
    keys = jax.random.split(jax.random.key(0), 16)
    est = np.asarray(
      jax.vmap(lambda k, m=num_configs: active.joint_entropy(p, key=k, num_configs=m))(keys)
    )
    se = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean() - exact) < 5 * se + 1e-4, (num_configs, est.mean(), exact, se)
    spreads.append(est.std(ddof=1))
  # 16x the configurations: the spread falls about 4x (allow 2x to 8x).
  assert 2.0 < spreads[0] / spreads[1] < 8.0, spreads
  # Enough configurations to enumerate everything: exact again, whatever the key.
  np.testing.assert_allclose(
    active.joint_entropy(p, key=jax.random.key(1), num_configs=729), exact, rtol=2e-5
  )


@pytest.mark.parametrize("seed", range(4))
def test_greedy_matches_brute_force(seed):
  p = random_probs(seed, (6, 7, 3), 0.4)
  chosen = active.acquisition("batchbald").select(jax.random.key(0), p, 4)
  assert chosen.tolist() == brute_batchbald(p, 4)


@pytest.mark.parametrize("seed", range(6))
def test_first_pick_is_balds_argmax(seed):
  p = random_probs(seed, (10, 40, 5), 0.3)
  first = active.acquisition("batchbald").select(jax.random.key(0), p, 1)[0]
  assert int(first) == int(np.argmax(active.bald(p)))


def duplicated_pool():
  """Point a (BALD log 2, certain per network) three times, then two less informative points."""
  s = np.arange(8)
  certain = np.eye(2)[s % 2]  # network s predicts class s mod 2 with certainty
  b = np.where(((s // 2) % 2)[:, None] == 0, [0.9, 0.1], [0.1, 0.9])  # independent of a
  c = np.where(((s // 4) % 2)[:, None] == 0, [0.9, 0.1], [0.1, 0.9])
  return np.stack([certain, certain, certain, b, c], axis=1).astype(np.float32)


def test_batchbald_avoids_the_duplicates_bald_picks():
  p = duplicated_pool()
  key = jax.random.key(0)
  assert sorted(active.acquisition("bald").select(key, p, 3).tolist()) == [0, 1, 2]
  chosen = active.acquisition("batchbald").select(key, p, 3).tolist()
  assert chosen[0] in (0, 1, 2) and sorted(chosen[1:]) == [3, 4]


def test_sampled_greedy_agrees_on_a_clear_case():
  """Past num_configs the joint is sampled; on a well separated case the choice is the same."""
  p = random_probs(9, (20, 30, 4), 0.2)
  key = jax.random.key(5)
  exact = active.acquisition("batchbald", num_configs=4**5).select(key, p, 6)
  sampled = active.acquisition("batchbald", num_configs=64).select(key, p, 6)
  assert exact[:3].tolist() == sampled[:3].tolist()  # 4**3 = 64: exact up to the 4th pick
  assert len(set(sampled.tolist())) == 6


def test_exact_enumeration_too_large_is_refused():
  p = random_probs(0, (10, 30, 10))
  with pytest.raises(ValueError, match="pass key=jax.random.key"):
    active.joint_entropy(p)
  with pytest.raises(ValueError, match="num_configs must be a positive int"):
    active.joint_entropy(p, key=jax.random.key(0), num_configs=0)
