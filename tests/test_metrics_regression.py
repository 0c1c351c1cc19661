"""Gaussian NLL, CRPS (energy form vs explicit double sum and exact integral), intervals."""

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings

from jaxuq import metrics
from tests.jit_variants import all_variants


def crps_double_sum(samples, y):
  """Energy form with an explicit O(m^2) double sum, float64, one target at a time."""
  x = np.asarray(samples, np.float64)
  m = len(x)
  first = np.abs(x - y).sum() / m
  second = sum(abs(a - b) for a in x for b in x) / (2 * m * m)
  return first - second


def crps_integral(samples, y):
  """∫ (F(z) - 1[y <= z])² dz, exact: the integrand is constant between sorted breakpoints."""
  x = np.sort(np.asarray(samples, np.float64))
  points = np.sort(np.append(x, y))
  total = 0.0
  for lo, hi in zip(points[:-1], points[1:], strict=True):
    mid = (lo + hi) / 2
    cdf = np.mean(x <= mid)
    total += (cdf - float(y <= mid)) ** 2 * (hi - lo)
  return total


@all_variants
def test_gaussian_nll_matches_scipy(variant):
  rng = np.random.default_rng(0)
  mean, std, y = rng.normal(size=(3, 10)), rng.random((3, 10)) + 0.1, rng.normal(size=(3, 10))
  with jax.enable_x64(True):
    per = variant(metrics.gaussian_nll)(mean, std, y, reduction="none")
    scalar_std = variant(metrics.gaussian_nll)(mean, 0.5, y)
  np.testing.assert_allclose(per, -scipy.stats.norm.logpdf(y, mean, std), rtol=1e-12)
  np.testing.assert_allclose(scalar_std, -scipy.stats.norm.logpdf(y, mean, 0.5).mean(), rtol=1e-12)


@all_variants
def test_crps_hand_computed(variant):
  np.testing.assert_allclose(
    variant(metrics.crps)(np.array([[3.0]]), np.array([1.0])), 2.0
  )  # |x - y|
  # samples {0, 2}, y = 1: E|X - y| = 1, E|X - X'| / 2 = (0 + 2 + 2 + 0) / 4 / 2 = 0.5
  np.testing.assert_allclose(
    variant(metrics.crps)(np.array([[0.0], [2.0]]), np.array([1.0])),
    0.5,
  )
  per = variant(metrics.crps)(np.zeros((5, 3)), np.array([0.0, 1.0, -2.0]), reduction="none")
  np.testing.assert_allclose(per, [0.0, 1.0, 2.0])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 2, 7, 30]), st.booleans())
def test_crps_matches_double_sum_and_integral(seed, m, ties):
  rng = np.random.default_rng(seed)
  samples = rng.normal(size=(m, 4))
  if ties:
    samples = np.round(samples)
  y = np.round(rng.normal(size=4), 1 if ties else 6)
  y[0] = samples[0, 0]  # a target equal to a sample
  with jax.enable_x64(True):
    ours = np.asarray(metrics.crps(samples, y, reduction="none"))
  for i in range(4):
    np.testing.assert_allclose(
      ours[i], crps_double_sum(samples[:, i], y[i]), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(ours[i], crps_integral(samples[:, i], y[i]), rtol=1e-10, atol=1e-12)
  assert np.all(ours >= -1e-12)


def test_crps_approaches_gaussian_closed_form():
  """Many samples from N(0, 1): CRPS -> y(2Φ(y) - 1) + 2φ(y) - 1/√π (Gneiting & Raftery 2007)."""
  x = scipy.stats.norm.ppf((np.arange(4000) + 0.5) / 4000)[:, None]  # quasi-random N(0, 1)
  y = np.array([0.3])
  exact = y * (2 * scipy.stats.norm.cdf(y) - 1) + 2 * scipy.stats.norm.pdf(y) - 1 / np.sqrt(np.pi)
  np.testing.assert_allclose(metrics.crps(x, y), exact[0], rtol=1e-3)


@all_variants
def test_intervals_and_quantile_calibration_match_numpy(variant):
  rng = np.random.default_rng(1)
  samples = rng.normal(size=(200, 50)).astype(np.float32)
  y = rng.normal(size=50).astype(np.float32)
  lo, hi = np.quantile(samples, [0.05, 0.95], axis=0)
  lower, upper = variant(metrics.central_interval)(samples, 0.9)
  np.testing.assert_allclose(lower, lo, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(upper, hi, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    variant(metrics.mean_interval_width)(samples, 0.9),
    (hi - lo).mean(),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    variant(metrics.interval_coverage)(samples, y, 0.9),
    np.mean((lo <= y) & (y <= hi)),
    atol=1e-7,
  )
  curve = variant(metrics.quantile_calibration_curve)(samples, y, levels=(0.1, 0.5, 0.9))
  q = np.quantile(samples, [0.1, 0.5, 0.9], axis=0)
  np.testing.assert_allclose(curve.expected, [0.1, 0.5, 0.9], rtol=1e-6)
  np.testing.assert_allclose(curve.observed, (y[None] <= q).mean(1), atol=1e-7)


def test_calibrated_model_is_calibrated():
  """Targets drawn from the predictive distribution: coverage within 4 standard errors."""
  key_s, key_y = jax.random.split(jax.random.key(0))
  n = 1000
  samples = jax.random.normal(key_s, (200, n))
  y = jax.random.normal(key_y, (n,))
  curve = metrics.quantile_calibration_curve(samples, y)
  se = np.sqrt(curve.expected * (1 - curve.expected) / n)
  # Plus 0.01 for the bias of a 200-sample quantile, O(1/200), and its spread.
  assert np.all(np.abs(curve.observed - curve.expected) <= 4 * se + 0.01)
  np.testing.assert_allclose(curve.expected, np.arange(1, 20) / 20, rtol=1e-6)
  assert (
    abs(float(metrics.interval_coverage(samples, y, 0.9)) - 0.9) <= 4 * np.sqrt(0.09 / n) + 0.01
  )


def test_bad_inputs():
  with pytest.raises(ValueError, match="samples must have shape"):
    metrics.crps(np.zeros((5, 3)), np.zeros(4))
  with pytest.raises(ValueError, match="samples must have shape"):
    metrics.interval_coverage(np.zeros((0, 3)), np.zeros(3))
  with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
    metrics.interval_coverage(np.zeros((5, 3)), np.zeros(3), level=1.0)
  with pytest.raises(TypeError, match="level"):
    metrics.central_interval(np.zeros((5, 3)), level="0.9")
  with pytest.raises(ValueError, match="levels"):
    metrics.quantile_calibration_curve(np.zeros((5, 3)), np.zeros(3), levels=(0.5, 2.0))
  with pytest.raises(ValueError, match="std must be positive"):
    metrics.gaussian_nll(np.zeros(3), np.array([1.0, 0.0, 1.0]), np.zeros(3))
  with pytest.raises(ValueError, match="same shape"):
    metrics.gaussian_nll(np.zeros(3), 1.0, np.zeros(4))
  with pytest.raises(ValueError, match="does not broadcast"):
    metrics.gaussian_nll(np.zeros(3), np.ones(2), np.zeros(3))
  with pytest.raises(ValueError, match="reduction"):
    metrics.crps(np.zeros((5, 3)), np.zeros(3), reduction="sum")
