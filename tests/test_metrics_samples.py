"""Entropies, mutual information, variation ratio and class std against float64 NumPy."""

import collections

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings

from jaxuq import metrics
from tests.jit_variants import all_variants


def random_probs(seed, shape, concentration=1.0):
  rng = np.random.default_rng(seed)
  return rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])


def ref_entropy(p):
  return scipy.stats.entropy(p, axis=-1)  # natural log, 0 log 0 = 0


@all_variants
def test_entropies_and_mi_match_float64_reference(variant):
  p = random_probs(0, (20, 7, 5))
  with jax.enable_x64(True):
    pe = variant(metrics.predictive_entropy)(p)
    ee = variant(metrics.expected_entropy)(p)
    mi = variant(metrics.mutual_information)(p)
    assert pe.dtype == jnp.float64
  np.testing.assert_allclose(pe, ref_entropy(p.mean(0)), rtol=1e-12)
  np.testing.assert_allclose(ee, ref_entropy(p).mean(0), rtol=1e-12)
  np.testing.assert_allclose(mi, ref_entropy(p.mean(0)) - ref_entropy(p).mean(0), atol=1e-12)


@all_variants
def test_hand_computed_cases(variant):
  # Two passes, certain but disagreeing: total = epistemic = log 2, aleatoric 0.
  p = jnp.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
  np.testing.assert_allclose(
    variant(metrics.predictive_entropy)(p), [np.log(2), np.log(2)], rtol=1e-6
  )
  np.testing.assert_allclose(variant(metrics.expected_entropy)(p), [0.0, np.log(2)], atol=1e-7)
  np.testing.assert_allclose(variant(metrics.mutual_information)(p), [np.log(2), 0.0], atol=1e-7)
  np.testing.assert_allclose(variant(metrics.variation_ratio)(p), [0.5, 0.0])
  np.testing.assert_allclose(variant(metrics.class_std)(p), [0.5, 0.0])
  np.testing.assert_allclose(
    variant(metrics.class_std)(p, average=False),
    [[0.5, 0.5], [0.0, 0.0]],
  )


@settings(max_examples=60, deadline=None)
@given(
  st.integers(1, 40),
  st.integers(1, 6),
  st.integers(2, 5),
  st.integers(0, 2**31 - 1),
  st.booleans(),
)
def test_variation_ratio_bounds_and_exact_zero(samples, batch, classes, seed, agree):
  """0 exactly when every pass votes alike; never above 1 - 1/min(T, classes), T passes."""
  p = random_probs(seed, (samples, batch, classes), concentration=0.5).astype(np.float32)
  if agree:
    p = np.broadcast_to(p[:1], p.shape)
  vr = np.asarray(metrics.variation_ratio(p))
  assert vr.dtype == np.float32
  votes = p.argmax(-1)
  top = np.array([collections.Counter(votes[:, i]).most_common(1)[0][1] for i in range(batch)])
  np.testing.assert_allclose(vr, (samples - top) / samples, rtol=1e-6, atol=0)
  assert np.all(vr >= 0.0)
  k = min(samples, classes)
  assert np.all(vr <= np.float32((k - 1) / k))  # the bound rounded to float32, as the result
  if agree:
    assert np.all(vr == 0.0)


@all_variants
def test_variation_ratio_and_class_std_match_reference(variant):
  p = random_probs(1, (11, 9, 3), concentration=0.3)
  votes = p.argmax(-1)
  ref = [1 - collections.Counter(votes[:, i]).most_common(1)[0][1] / 11 for i in range(9)]
  np.testing.assert_allclose(variant(metrics.variation_ratio)(p), ref, rtol=1e-6)
  p32 = p.astype(np.float32)
  np.testing.assert_allclose(
    variant(metrics.class_std)(p32),
    p32.std(0).mean(-1),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    variant(metrics.class_std)(p32, average=False, ddof=1),
    p32.std(0, ddof=1),
    rtol=1e-5,
  )


@settings(max_examples=25, deadline=None)
@given(
  st.sampled_from([1, 6]),
  st.sampled_from([2, 5]),
  st.integers(0, 2**31 - 1),
  st.sampled_from([0.05, 1.0, 20.0]),
)
def test_mi_non_negative_and_decomposes(samples, classes, seed, concentration):
  p = random_probs(seed, (samples, 3, classes), concentration).astype(np.float32)
  p = p / p.sum(-1, keepdims=True)
  mi = np.asarray(metrics.mutual_information(p))
  pe, ee = metrics.predictive_entropy(p), metrics.expected_entropy(p)
  assert np.all(mi >= -1e-6)
  assert np.all(mi <= np.log(classes) + 1e-5)
  np.testing.assert_allclose(mi, pe - ee, atol=2e-6)
  assert np.all(np.asarray(pe) <= np.log(classes) + 1e-5)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int64, (5, 4), elements=st.integers(0, 2)))
def test_one_hot_samples_with_ties(votes):
  """One-hot passes (ties between classes in the vote count included)."""
  p = np.eye(3)[votes]  # (5, 4, 3)
  counts = np.stack([(votes == c).sum(0) for c in range(3)], -1)
  freq = counts / 5
  np.testing.assert_allclose(metrics.expected_entropy(p), 0.0, atol=1e-7)
  np.testing.assert_allclose(metrics.mutual_information(p), ref_entropy(freq), atol=1e-6)
  np.testing.assert_allclose(metrics.variation_ratio(p), 1 - counts.max(-1) / 5, atol=1e-7)


def test_bad_inputs():
  good = random_probs(2, (4, 3, 2))
  with pytest.raises(ValueError, match=r"prob_samples must have shape \(samples, batch, classes\)"):
    metrics.predictive_entropy(good[0])
  with pytest.raises(ValueError, match="sum to 1"):
    metrics.mutual_information(good * 1.1)
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    metrics.expected_entropy(good - 0.5)
  with pytest.raises(ValueError, match="finite"):
    metrics.variation_ratio(np.full((2, 2, 2), np.nan))
  with pytest.raises(ValueError, match="must not be empty"):
    metrics.class_std(np.zeros((0, 3, 2)))
  with pytest.raises(ValueError, match="ddof"):
    metrics.class_std(good[:1], ddof=1)
  with pytest.raises(TypeError, match="average"):
    metrics.class_std(good, average="yes")
