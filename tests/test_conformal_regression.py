"""Conformal regression intervals: by hand, jit, widening with smaller alpha, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxuq
from jaxuq import conformal


def test_absolute_residual_by_hand():
  method = conformal.absolute_residual()
  pred, y = jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.array([0.5, 0.0, 2.25, 5.0])
  # |y - pred| = 0.5, 1, 0.25, 2. n = 4, alpha = 0.2: k = ceil(5 * 0.8) = 4 -> the largest, 2.
  np.testing.assert_array_equal(method.score(pred, y), [0.5, 1.0, 0.25, 2.0])
  threshold = conformal.calibrate(method.score(pred, y), 0.2)
  assert float(threshold.threshold) == 2.0
  lower, upper = method.predict_interval(threshold, jnp.array([10.0, -1.0]))
  np.testing.assert_allclose(lower, [8.0, -3.0], rtol=2e-6)  # widened by 4 eps
  np.testing.assert_allclose(upper, [12.0, 1.0], rtol=2e-6)  # widened by 4 eps


def test_normalized_residual_by_hand():
  method = conformal.normalized_residual()
  mean, std, y = jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.5, 2.0]), jnp.array([1.0, 1.0, 0.0])
  # |y - mean| / std = 1/1, 1/0.5, 1/2.
  np.testing.assert_array_equal(method.score(mean, std, y), [1.0, 2.0, 0.5])
  lower, upper = method.predict_interval(1.5, mean, std)  # mean -+ 1.5 std
  np.testing.assert_allclose(lower, [-1.5, -0.75, -2.0], rtol=2e-6)  # widened by 4 eps
  np.testing.assert_allclose(upper, [1.5, 0.75, 4.0], rtol=2e-6)  # widened by 4 eps
  # beta = 1 adds 1 to every std: |y - mean| / (std + 1) = 0.5, 2/3, 1/3.
  shifted = conformal.normalized_residual(beta=1.0)
  np.testing.assert_allclose(shifted.score(mean, std, y), [0.5, 2 / 3, 1 / 3], rtol=1e-6)
  lower, upper = shifted.predict_interval(1.0, mean, jnp.zeros(3))  # zero std is fine now
  np.testing.assert_allclose(upper - lower, [2.0, 2.0, 2.0], rtol=2e-6)  # widened by 4 eps


def test_cqr_by_hand():
  method = conformal.cqr(level=0.5)
  # Samples 0..4 for input 0 and 0..8 (step 2) for input 1: the 0.25 and 0.75 quantiles
  # (linear, as numpy) are (1, 3) and (2, 6).
  samples = jnp.stack([jnp.arange(5.0), 2 * jnp.arange(5.0)], axis=1)
  y = jnp.array([4.0, 3.0])
  # max(lo - y, y - hi): max(1 - 4, 4 - 3) = 1; max(2 - 3, 3 - 6) = -1 (inside).
  np.testing.assert_array_equal(method.score(samples, y), [1.0, -1.0])
  lower, upper = method.predict_interval(0.5, samples)
  np.testing.assert_allclose(lower, [0.5, 1.5], atol=1e-5)  # widened by 4 eps
  np.testing.assert_allclose(upper, [3.5, 6.5], atol=1e-5)  # widened by 4 eps
  lower, upper = method.predict_interval(-1.5, samples)  # narrowed past empty for input 0
  np.testing.assert_allclose(lower, [2.5, 3.5], atol=1e-5)  # widened by 4 eps
  np.testing.assert_allclose(upper, [1.5, 4.5], atol=1e-5)  # widened by 4 eps


def _data(key, n=40, num_samples=9):
  k1, k2, k3 = jax.random.split(key, 3)
  x = jax.random.uniform(k1, (n,), minval=-2, maxval=2)
  y = jnp.sin(2 * x) + (0.1 + 0.4 * jnp.abs(x)) * jax.random.normal(k2, (n,))
  noise = jax.random.normal(k3, (num_samples, n))
  samples = jnp.sin(2 * x)[None] + (0.3 * jnp.abs(x))[None] * noise
  return samples, y


def _predictions(name, samples):
  if name == "absolute_residual":
    return (samples.mean(0),)
  if name == "normalized_residual":
    return (samples.mean(0), samples.std(0))
  return (samples,)


METHODS = {
  "absolute_residual": lambda: conformal.absolute_residual(),
  "normalized_residual": lambda: conformal.normalized_residual(beta=0.01),
  "cqr": lambda: conformal.cqr(level=0.8),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_jit_and_eager_agree(name, key):
  method = METHODS[name]()
  samples, y = _data(key)

  def pipeline(samples, y):
    cal, test = _predictions(name, samples[:, :30]), _predictions(name, samples[:, 30:])
    threshold = conformal.calibrate(method.score(*cal, y[:30]), 0.2)
    return threshold, method.predict_interval(threshold, *test)

  eager, jitted = pipeline(samples, y), jax.jit(pipeline)(samples, y)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), eager, jitted)


def test_normalized_residual_uses_the_mc_summary(key):
  samples, y = _data(key)
  summary = jaxuq.summarize(samples)
  method = conformal.normalized_residual()
  np.testing.assert_allclose(
    method.score(summary.mean, summary.std, y),
    np.abs(np.asarray(y) - np.asarray(samples).mean(0)) / np.asarray(samples).std(0),
    rtol=1e-5,
    atol=1e-5,
  )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), alphas=st.tuples(st.floats(0.05, 0.9), st.floats(0.05, 0.9)))
def test_intervals_widen_as_alpha_decreases(seed, alphas):
  samples, y = _data(jax.random.key(seed))
  big, small = max(alphas), min(alphas)
  for name, build in METHODS.items():
    method = build()
    cal, test = _predictions(name, samples[:, :30]), _predictions(name, samples[:, 30:])
    scores = method.score(*cal, y[:30])
    lo_narrow, hi_narrow = method.predict_interval(conformal.calibrate(scores, big), *test)
    lo_wide, hi_wide = method.predict_interval(conformal.calibrate(scores, small), *test)
    assert (lo_wide <= lo_narrow).all() and (hi_narrow <= hi_wide).all()
    # In sample, at least k of the n calibration targets are covered (the one whose score is
    # the threshold lies on the boundary, up to rounding: allow an ulp or so).
    lo, hi = method.predict_interval(conformal.calibrate(scores, small), *cal)
    slack = 1e-6 * (1 + jnp.abs(y[:30]))
    covered = float(conformal.regression_coverage(lo - slack, hi + slack, y[:30]))
    assert covered >= conformal.quantile_rank(30, small) / 30 - 1e-6


def test_bad_shapes_name_the_argument():
  plain, normed, cqr = (
    conformal.absolute_residual(),
    conformal.normalized_residual(),
    conformal.cqr(level=0.9),
  )
  with pytest.raises(ValueError, match=r"y must have shape \(3,\) like the first prediction"):
    plain.score(jnp.zeros(3), jnp.zeros(4))
  with pytest.raises(ValueError, match=r"prediction must have shape \(n,\)"):
    plain.score(jnp.zeros((3, 2)), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"std must have shape \(3,\)"):
    normed.score(jnp.zeros(3), jnp.ones(2), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"samples must have shape \(samples, n\)"):
    cqr.score(jnp.zeros(5), jnp.zeros(5))
  with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
    cqr.score(jnp.zeros((4, 5)), jnp.zeros(4))
  with pytest.raises(ValueError, match="prediction must not be empty"):
    plain.predict_interval(1.0, jnp.zeros(0))


def test_bad_values_name_the_argument():
  normed = conformal.normalized_residual()
  with pytest.raises(ValueError, match="std must be >= 0 with std \\+ beta > 0"):
    normed.score(jnp.zeros(2), jnp.array([1.0, 0.0]), jnp.zeros(2))
  with pytest.raises(ValueError, match="std must be >= 0"):
    conformal.normalized_residual(beta=1.0).predict_interval(1.0, jnp.zeros(2), -jnp.ones(2))
  with pytest.raises(ValueError, match="y must be finite"):
    conformal.absolute_residual().score(jnp.zeros(2), jnp.array([0.0, jnp.inf]))
  with pytest.raises(ValueError, match="samples must be finite"):
    conformal.cqr(level=0.9).score(jnp.full((3, 2), jnp.nan), jnp.zeros(2))
  for beta in (-1.0, float("nan"), "1"):
    with pytest.raises(ValueError, match="beta must be a finite float >= 0"):
      conformal.normalized_residual(beta=beta)
  for level in (0.0, 1.0, 1.2):
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
      conformal.cqr(level=level)


@pytest.mark.parametrize("name", ["absolute_residual", "normalized_residual", "cqr"])
def test_a_target_whose_score_is_the_threshold_is_inside(name):
  # In float32, mu +- t (std + beta) rebuilt from the threshold left y outside its own interval
  # for 8-10 % of random (mu, std, y) when t was y's own score.
  rng = np.random.default_rng(0)
  n = 20000
  mu = rng.normal(0, 10, n).astype(np.float32)
  std = rng.uniform(0.01, 5, n).astype(np.float32)
  y = (mu + rng.normal(0, 20, n)).astype(np.float32)
  if name == "cqr":
    method = conformal.cqr(level=0.5)
    samples = jnp.stack([jnp.asarray(mu - std), jnp.asarray(mu), jnp.asarray(mu + std)])
    preds = (samples,)
  elif name == "normalized_residual":
    method, preds = conformal.normalized_residual(), (jnp.asarray(mu), jnp.asarray(std))
  else:
    method, preds = conformal.absolute_residual(), (jnp.asarray(mu),)
  scores = method.score(*preds, jnp.asarray(y))
  inside = []
  for i in range(0, n, 2000):  # each example's own score as the threshold
    part = tuple(p[..., i : i + 2000] for p in preds)
    lower, upper = jax.vmap(
      lambda t, *q: method.predict_interval(t, *(a[..., None] for a in q)),
      in_axes=(0, *(p.ndim - 1 for p in part)),
    )(scores[i : i + 2000], *part)
    yy = y[i : i + 2000]
    inside.append((np.asarray(lower)[:, 0] <= yy) & (yy <= np.asarray(upper)[:, 0]))
  assert np.concatenate(inside).all()


def test_discrete_targets_keep_the_coverage_guarantee():
  # y = 0 or 5, constant mean 0.1 and std 0.3: every score at the threshold is a tie; the
  # intervals dropped them and covered 0.50 on average for a guarantee of 0.9.
  rng = np.random.default_rng(1)
  method = conformal.normalized_residual()
  cover = []
  for _ in range(50):
    y = jnp.asarray(rng.choice([0.0, 5.0], 200).astype(np.float32))
    mu, sd = jnp.full(200, 0.1, jnp.float32), jnp.full(200, 0.3, jnp.float32)
    t = conformal.calibrate(method.score(mu[:100], sd[:100], y[:100]), 0.1)
    lower, upper = method.predict_interval(t, mu[100:], sd[100:])
    cover.append(float(conformal.regression_coverage(lower, upper, y[100:])))
  assert np.mean(cover) >= 0.9
