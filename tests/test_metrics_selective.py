"""Accuracy-coverage curve and AURC against brute force over every tie-breaking order."""

import itertools

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings

from jaxuq import metrics
from tests.jit_variants import all_variants


def brute_curve(correct, uncertainty):
  """The accuracy curve averaged over every order that sorts the uncertainty."""
  n = len(correct)
  curves = []
  for perm in itertools.permutations(range(n)):
    u = uncertainty[list(perm)]
    if np.all(np.diff(u) >= 0):
      c = correct[list(perm)]
      curves.append(np.cumsum(c) / np.arange(1, n + 1))
  return np.mean(curves, axis=0)


@all_variants
def test_hand_computed(variant):
  correct = np.array([1, 0, 1, 1])
  uncertainty = np.array([0.3, 0.9, 0.1, 0.2])
  curve = variant(metrics.accuracy_coverage_curve)(uncertainty, correct)
  np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
  np.testing.assert_allclose(curve.accuracy, [1, 1, 1, 0.75])
  np.testing.assert_allclose(variant(metrics.aurc)(uncertainty, correct), 0.25 / 4)
  # One tie group of everything: accuracy is flat at the overall accuracy.
  flat = variant(metrics.accuracy_coverage_curve)(np.zeros(4), correct)
  np.testing.assert_allclose(flat.accuracy, [0.75] * 4)
  # Booleans work as correctness.
  np.testing.assert_allclose(variant(metrics.aurc)(uncertainty, correct.astype(bool)), 0.25 / 4)


@settings(max_examples=40, deadline=None)
@given(
  hnp.arrays(np.int64, 6, elements=st.integers(0, 1)),
  hnp.arrays(np.int64, 6, elements=st.integers(0, 3)),
)
def test_matches_average_over_tie_orders(correct, uncertainty):
  with jax.enable_x64(True):
    curve = metrics.accuracy_coverage_curve(uncertainty.astype(np.float64), correct)
    area = metrics.aurc(uncertainty.astype(np.float64), correct)
  ref = brute_curve(correct.astype(np.float64), uncertainty)
  np.testing.assert_allclose(curve.accuracy, ref, rtol=1e-12)
  np.testing.assert_allclose(area, 1 - ref.mean(), rtol=1e-12, atol=1e-15)


@all_variants
def test_oracle_uncertainty_minimises_aurc(variant):
  rng = np.random.default_rng(0)
  correct = rng.integers(0, 2, 100)
  oracle = variant(metrics.aurc)(-correct + 0.01 * rng.random(100), correct)
  random = variant(metrics.aurc)(rng.random(100), correct)
  errors = 100 - correct.sum()
  # The oracle keeps every correct input first: risk 0 up to coverage (n - errors) / n.
  ref = np.mean([max(0, k - (100 - errors)) / k for k in range(1, 101)])
  np.testing.assert_allclose(oracle, ref, rtol=1e-5)
  assert oracle < random


def test_bad_inputs():
  with pytest.raises(ValueError, match="same length"):
    metrics.aurc(np.ones(4), np.ones(3))
  with pytest.raises(ValueError, match="non-empty 1-D"):
    metrics.aurc(np.ones(0), np.ones(0))
  with pytest.raises(ValueError, match="correct must be 0/1"):
    metrics.accuracy_coverage_curve(np.ones(2), np.array([0, 2]))
  with pytest.raises(ValueError, match="correct must be finite"):
    metrics.aurc(np.arange(3.0), np.array([1.0, np.nan, 0.0]))
  with pytest.raises(ValueError, match="finite"):
    metrics.aurc(np.array([0.0, np.inf]), np.ones(2))


def test_coverage_ends_at_exactly_one_for_every_size():
  # kf / n under jit was k * (1 / n): 41/41 gave 0.99999994.
  for n in [*range(1, 21), 41, 47, 55, 61]:  # 41, 47, 55, 61 failed
    curve = metrics.accuracy_coverage_curve(np.arange(n, dtype=np.float32), np.ones(n))
    assert float(curve.coverage[-1]) == 1.0, n
    np.testing.assert_array_equal(curve.coverage, (np.arange(1, n + 1) / n).astype(np.float32))
