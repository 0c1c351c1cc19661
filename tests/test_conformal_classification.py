"""Conformal classification: LAC, APS, RAPS by hand, against a float64 loop, jit, invariants, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxuq import conformal

# Two rows of exact binary probabilities. Row 0 ranks the classes 0, 1, 2, 3 (2 and 3 tie
# at 0.125; the lower index goes first); row 1 ranks them 1, 2, 0, 3.
PROBS = jnp.array([[0.5, 0.25, 0.125, 0.125], [0.125, 0.5, 0.25, 0.125]])
LABELS = jnp.array([2, 0])

METHODS = {
  "lac": lambda: conformal.lac(),
  "aps": lambda: conformal.aps(),
  "aps_rand": lambda: conformal.aps(randomized=True),
  "raps": lambda: conformal.raps(lam=0.25, k_reg=1),
  "raps_rand": lambda: conformal.raps(lam=0.25, k_reg=1, randomized=True),
}


def _score(method, key, probs, labels):
  return method.score(key, probs, labels) if method.randomized else method.score(probs, labels)


def _sets(method, key, threshold, probs):
  if method.randomized:
    return method.predict_set(key, threshold, probs)
  return method.predict_set(threshold, probs)


def test_lac_by_hand():
  lac = conformal.lac()
  # 1 - p_y: row 0 label 2 has p = 0.125; row 1 label 0 has p = 0.125.
  np.testing.assert_array_equal(lac.score(PROBS, LABELS), [0.875, 0.875])
  # threshold 0.75 keeps p >= 0.25.
  np.testing.assert_array_equal(
    lac.predict_set(0.75, PROBS), [[True, True, False, False], [False, True, True, False]]
  )
  assert not lac.randomized


def test_aps_by_hand():
  aps = conformal.aps()
  # Not randomised, the score is the mass ranked above the label.
  # Row 0 in rank order 0, 1, 2, 3: masses above 0, 0.5, 0.75, 0.875; label 2 -> 0.75.
  # Row 1 in rank order 1, 2, 0, 3: masses above 0, 0.5, 0.75, 0.875; label 0 -> 0.75.
  np.testing.assert_array_equal(aps.score(PROBS, LABELS), [0.75, 0.75])
  np.testing.assert_array_equal(aps.score(PROBS, jnp.array([3, 1])), [0.875, 0.0])
  # threshold 0.5: the classes with at most 0.5 ranked above them.
  np.testing.assert_array_equal(
    aps.predict_set(0.5, PROBS), [[True, True, False, False], [False, True, True, False]]
  )
  # threshold 0.4: the top class only; never empty, even at threshold 0.
  top = [[True, False, False, False], [False, True, False, False]]
  np.testing.assert_array_equal(aps.predict_set(0.4, PROBS), top)
  np.testing.assert_array_equal(aps.predict_set(0.0, PROBS), top)


def test_raps_by_hand():
  raps = conformal.raps(lam=0.25, k_reg=1)
  # APS plus 0.25 * max(0, rank - 1): penalties 0, 0.25, 0.5, 0.75 for ranks 1..4.
  # Row 0 by class: 0, 0.5 + 0.25, 0.75 + 0.5, 0.875 + 0.75 = 0, 0.75, 1.25, 1.625.
  # Row 1 by class: 0 is rank 3 -> 1.25; 1 rank 1 -> 0; 2 rank 2 -> 0.75; 3 rank 4 -> 1.625.
  np.testing.assert_array_equal(raps.score(PROBS, LABELS), [1.25, 1.25])
  np.testing.assert_array_equal(raps.score(PROBS, jnp.array([1, 3])), [0.75, 1.625])
  np.testing.assert_array_equal(
    raps.predict_set(0.75, PROBS), [[True, True, False, False], [False, True, True, False]]
  )
  # k_reg = 3 penalises rank 4 only: row 0 class 3 -> 0.875 + 0.25.
  assert float(conformal.raps(lam=0.25, k_reg=3).score(PROBS, jnp.array([3, 0]))[0]) == 1.125
  # lam = 0 is APS.
  np.testing.assert_array_equal(
    conformal.raps(lam=0.0, k_reg=0).score(PROBS, LABELS), conformal.aps().score(PROBS, LABELS)
  )


def test_randomized_aps_and_raps_by_hand(key):
  # One u per example, drawn as jax.random.uniform(key, (n, 1)).
  u = np.asarray(jax.random.uniform(key, (2, 1)))[:, 0].astype(np.float64)
  # Both labels are ranked third after a mass of 0.75, with p = 0.125: 0.75 + u * 0.125.
  aps, raps = conformal.aps(randomized=True), conformal.raps(lam=0.25, k_reg=1, randomized=True)
  np.testing.assert_allclose(aps.score(key, PROBS, LABELS), 0.75 + u * 0.125, rtol=1e-6)
  np.testing.assert_allclose(raps.score(key, PROBS, LABELS), 1.25 + u * 0.125, rtol=1e-6)
  # Sets at 0.6: rank 1 (score u * 0.5 <= 0.5) is always in; rank 2 (0.5 + u * 0.25) iff
  # u <= 0.4; rank 3 (0.75 + ...) never.
  sets = np.asarray(aps.predict_set(key, 0.6, PROBS))
  ranked = np.array([[0, 1, 2, 3], [1, 2, 0, 3]])
  for i in range(2):
    want = [True, u[i] <= 0.4, False, False]
    np.testing.assert_array_equal(sets[i, ranked[i]], want)
  assert aps.randomized and raps.randomized


def _reference(probs, u, kind, lam=0.0, k_reg=0):
  """Every class's score by a float64 loop (u = 0 when not randomised)."""
  n, classes = probs.shape
  out = np.zeros((n, classes))
  for i in range(n):
    order = sorted(range(classes), key=lambda c: (-probs[i, c], c))
    mass = 0.0
    for rank, c in enumerate(order, start=1):
      if kind == "lac":
        out[i, c] = 1 - probs[i, c]
      else:
        out[i, c] = mass + u[i] * probs[i, c] + lam * max(0, rank - k_reg)
      mass += probs[i, c]
  return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_scores_and_sets_match_a_float64_loop(name, key):
  method = METHODS[name]()
  k1, k2 = jax.random.split(key)
  probs = np.asarray(jax.nn.softmax(2 * jax.random.normal(k1, (40, 6))), np.float64)
  labels = np.asarray(jax.random.randint(k2, (40,), 0, 6))
  u = np.asarray(jax.random.uniform(key, (40, 1)))[:, 0] if method.randomized else np.zeros(40)
  kind = name.split("_")[0]
  ref = _reference(probs, u, kind, *((0.25, 1) if kind == "raps" else ()))
  got = _score(method, key, probs.astype(np.float32), labels)
  np.testing.assert_allclose(got, ref[np.arange(40), labels], rtol=2e-6, atol=2e-7)
  threshold = float(np.median(ref))
  sets = np.asarray(_sets(method, key, threshold, probs.astype(np.float32)))
  near = np.abs(ref - threshold) < 1e-5  # float32 rounding may fall either side
  np.testing.assert_array_equal(sets[~near], (ref <= threshold)[~near])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_jit_and_eager_agree(name, key):
  method = METHODS[name]()
  probs = jax.nn.softmax(jax.random.normal(key, (30, 5)))
  labels = jax.random.randint(key, (30,), 0, 5)

  def pipeline(key, probs, labels):
    k1, k2 = jax.random.split(key)
    threshold = conformal.calibrate(_score(method, k1, probs[:20], labels[:20]), 0.2)
    return threshold, _sets(method, k2, threshold, probs[20:])

  eager = pipeline(key, probs, labels)
  jitted = jax.jit(pipeline)(key, probs, labels)
  np.testing.assert_allclose(eager[0].threshold, jitted[0].threshold, rtol=1e-6)
  np.testing.assert_array_equal(eager[1], jitted[1])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_mc_samples_are_averaged(name, key):
  method = METHODS[name]()
  samples = jax.nn.softmax(jax.random.normal(key, (7, 12, 4)))
  labels = jax.random.randint(key, (12,), 0, 4)
  mean = samples.mean(axis=0)
  np.testing.assert_allclose(
    _score(method, key, samples, labels), _score(method, key, mean, labels), rtol=1e-6
  )
  np.testing.assert_array_equal(_sets(method, key, 0.7, samples), _sets(method, key, 0.7, mean))


def test_low_precision_probs_within_their_rounding(key):
  probs = jax.nn.softmax(jax.random.normal(key, (20, 10))).astype(jnp.bfloat16)
  scores = conformal.aps().score(probs, jnp.zeros(20, jnp.int32))
  assert scores.dtype == jnp.float32  # results are float32 at least
  with pytest.raises(ValueError, match="probs must sum to 1"):
    conformal.aps().score(probs * 1.1, jnp.zeros(20, jnp.int32))


PROB_ROWS = st.lists(
  st.lists(st.floats(-4, 4, allow_nan=False), min_size=4, max_size=4), min_size=25, max_size=25
)


@settings(max_examples=25, deadline=None)
@given(
  logits=PROB_ROWS,
  seed=st.integers(0, 2**16),
  alphas=st.tuples(st.floats(0.05, 0.9), st.floats(0.05, 0.9)),
)
def test_sets_are_nested_prefixes_of_the_probability_ranking(logits, seed, alphas):
  probs = jax.nn.softmax(jnp.array(logits))
  key = jax.random.key(seed)
  labels = jax.random.randint(key, (20,), 0, 4)
  big, small = max(alphas), min(alphas)
  order = np.argsort(-np.asarray(probs[20:]), axis=1, kind="stable")
  for method in (m() for m in METHODS.values()):
    scores = _score(method, key, probs[:20], labels)
    wide = _sets(method, key, conformal.calibrate(scores, small), probs[20:])
    narrow = _sets(method, key, conformal.calibrate(scores, big), probs[20:])
    assert not (narrow & ~wide).any()  # smaller alpha: a superset
    for sets in (np.asarray(wide), np.asarray(narrow)):
      ranked = np.take_along_axis(sets, order, axis=1)  # True then False along the ranking
      assert not (ranked[:, 1:] & ~ranked[:, :-1]).any()


@settings(max_examples=25, deadline=None)
@given(logits=PROB_ROWS, alpha=st.floats(0.05, 0.9))
def test_calibration_scores_are_covered_in_sample(logits, alpha):
  probs = jax.nn.softmax(jnp.array(logits))
  labels = jnp.arange(25) % 4
  for method in (conformal.lac(), conformal.aps(), conformal.raps(lam=0.1, k_reg=2)):
    threshold = conformal.calibrate(method.score(probs, labels), alpha)
    covered = conformal.set_coverage(method.predict_set(threshold, probs), labels)
    assert float(covered) >= conformal.quantile_rank(25, alpha) / 25 - 1e-6


def test_bad_probabilities_name_the_argument():
  lac = conformal.lac()
  with pytest.raises(ValueError, match="probs must sum to 1"):
    lac.score(jnp.array([[0.5, 0.6]]), jnp.array([0]))
  with pytest.raises(ValueError, match="probs must sum to 1"):
    lac.predict_set(0.5, jnp.array([[0.2, 0.3, 0.1]]))  # logits or unnormalised scores
  with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\]"):
    lac.score(jnp.array([[1.5, -0.5]]), jnp.array([0]))
  with pytest.raises(ValueError, match="probs must have shape"):
    lac.score(jnp.array([0.5, 0.5]), jnp.array([0]))
  with pytest.raises(ValueError, match="probs must not be empty"):
    lac.score(jnp.zeros((0, 3)), jnp.zeros(0, jnp.int32))


def test_bad_labels_name_the_argument():
  aps = conformal.aps()
  with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\), got values"):
    aps.score(PROBS, jnp.array([0, 4]))
  with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
    aps.score(PROBS, jnp.array([0, 1, 2]))
  with pytest.raises(TypeError, match="labels must be integer"):
    aps.score(PROBS, jnp.array([0.0, 1.0]))


def test_bad_keys_and_settings():
  aps = conformal.aps(randomized=True)
  with pytest.raises(TypeError, match=r"key must be a typed PRNG key.*jax.random.key\(0\)"):
    aps.score(0, PROBS, LABELS)
  with pytest.raises(TypeError):
    aps.score(PROBS, LABELS)  # the key is required
  with pytest.raises(TypeError, match="randomized must be True or False"):
    conformal.aps(randomized=1)
  for lam, k_reg in itertools.product([-0.1, float("inf"), "0.1"], [1]):
    with pytest.raises(ValueError, match="lam must be a finite float >= 0"):
      conformal.raps(lam=lam, k_reg=k_reg)
  for k_reg in (-1, 1.5, True):
    with pytest.raises(ValueError, match="k_reg must be an int >= 0"):
      conformal.raps(lam=0.1, k_reg=k_reg)


def test_new_values_do_not_recompile(key):
  from tests.test_metrics_api import count_compiles

  methods = [m() for m in METHODS.values()]
  probs = jax.nn.softmax(jax.random.normal(key, (2, 30, 4)), axis=-1)
  labels = jnp.stack([jnp.arange(30) % 4, jnp.arange(30) // 8])
  keys = jax.random.split(key, 2)

  def run(i):
    for method in methods:
      threshold = conformal.calibrate(_score(method, keys[i], probs[i], labels[i]), 0.1 + i / 10)
      _sets(method, keys[i], threshold, probs[i])

  run(0)
  with count_compiles() as compiles:
    run(1)
  assert not compiles, len(compiles)
