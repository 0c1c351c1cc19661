"""Regression calibration (jaxuq.calibrate): std scaling, PAV against scikit-learn, quantile recalibration."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.isotonic import IsotonicRegression

from jaxuq import calibrate, metrics
from tests.test_metrics_api import count_compiles


def regression_data(seed, n, samples=200, spread=0.8, bias=0.2):
  """Heteroscedastic targets and MC samples that are too narrow (``spread`` < 1) and biased."""
  rng = np.random.default_rng(seed)
  mu = rng.uniform(-2.0, 2.0, n)
  sigma = rng.uniform(0.2, 1.5, n)
  y = mu + sigma * rng.normal(size=n)
  draws = mu + sigma * (bias + spread * rng.normal(size=(samples, n)))
  return draws.astype(np.float32), y.astype(np.float32)


def test_std_scaling_is_the_closed_form_and_lowers_the_nll():
  rng = np.random.default_rng(0)
  mean, std = rng.normal(size=500), rng.uniform(0.1, 2.0, 500)
  y = mean + 1.7 * std * rng.normal(size=500)
  fit = calibrate.fit_std_scaling(mean, std, y)
  s = math.sqrt(np.mean(((y - mean) / std) ** 2))
  np.testing.assert_allclose(float(fit.scale), s, rtol=1e-6)
  scaled = calibrate.scale_std(fit, std)
  np.testing.assert_allclose(scaled, s * std, rtol=1e-6)
  np.testing.assert_allclose(metrics.gaussian_nll(mean, scaled, y), fit.nll, rtol=1e-6)
  assert float(fit.nll) < float(metrics.gaussian_nll(mean, std, y)) - 0.1
  # No factor on a fine grid does better.
  for factor in np.linspace(0.5, 3.0, 51):
    assert float(fit.nll) <= float(metrics.gaussian_nll(mean, factor * std, y)) + 1e-6


def test_scale_samples_keeps_the_mean_and_scales_the_std():
  draws, _ = regression_data(1, n=50, samples=30)
  fit = calibrate.StdScaling(scale=jnp.asarray(1.5), nll=jnp.asarray(0.0))
  scaled = calibrate.scale_samples(fit, draws)
  np.testing.assert_allclose(scaled.mean(0), draws.mean(0), atol=1e-5)
  np.testing.assert_allclose(scaled.std(0), 1.5 * draws.std(0), rtol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_isotonic_matches_scikit_learn_in_float64(n, weighted):
  rng = np.random.default_rng(n)
  x = rng.integers(0, max(n // 3, 1), n).astype(np.float64)  # many ties
  y = x / max(n, 1) + rng.normal(size=n)
  w = rng.uniform(0.1, 3.0, n) if weighted else None
  expected = IsotonicRegression().fit_transform(x, y, sample_weight=w)
  with jax.enable_x64(True):
    actual = np.asarray(calibrate.isotonic_regression(x, y, w))
  np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


POINTS = hnp.arrays(np.float32, (40,), elements=st.floats(-100, 100, width=32))


@settings(max_examples=30, deadline=None)
@given(POINTS, POINTS)
def test_isotonic_is_monotone_keeps_the_mean_and_is_idempotent(x, y):
  fitted = np.asarray(calibrate.isotonic_regression(x, y), np.float64)
  order = np.argsort(x, kind="stable")
  assert np.all(np.diff(fitted[order]) >= -1e-4 * (1 + np.abs(fitted[order][1:])))
  np.testing.assert_allclose(fitted.mean(), np.mean(y, dtype=np.float64), atol=1e-3)
  again = calibrate.isotonic_regression(x, fitted.astype(np.float32))
  np.testing.assert_allclose(again, fitted, rtol=1e-5, atol=1e-4)


def test_sample_cdf_inverts_the_linear_quantile():
  draws, _ = regression_data(2, n=20, samples=9)
  levels = np.array([0.0, 0.05, 0.3, 0.5, 0.77, 1.0], np.float32)
  q = jnp.quantile(draws, levels, axis=0)  # (levels, batch)
  for level, row in zip(levels, q, strict=True):
    np.testing.assert_allclose(calibrate.sample_cdf(draws, row), level, atol=1e-5)
  below = draws.min(0) - 1.0
  np.testing.assert_array_equal(calibrate.sample_cdf(draws, below), 0.0)


def test_recalibration_reaches_the_nominal_levels_on_held_out_data():
  n = 4000
  calib_draws, calib_y = regression_data(3, n)
  test_draws, test_y = regression_data(4, n)
  fit = calibrate.fit_quantile_recalibration(calib_draws, calib_y)
  levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
  before = metrics.quantile_calibration_curve(test_draws, test_y, levels).observed
  assert float(jnp.abs(before - jnp.asarray(levels)).max()) > 0.1  # miscalibrated by design
  for level in levels:
    observed = float((test_y <= calibrate.recalibrated_quantile(fit, test_draws, level)).mean())
    # The held-out frequency errs by the calibration set's ECDF and the test set's sampling:
    # SE = sqrt(level (1 - level) (1/n + 1/n)); 4 SE, plus 1/n for the interpolation.
    bound = 4 * math.sqrt(level * (1 - level) * 2 / n) + 1 / n
    assert abs(observed - level) <= bound, (level, observed, bound)
  lower, upper = calibrate.recalibrated_interval(fit, test_draws, 0.9)
  coverage = float(((lower <= test_y) & (test_y <= upper)).mean())
  assert float(metrics.interval_coverage(test_draws, test_y, 0.9)) < 0.85
  assert abs(coverage - 0.9) <= 4 * math.sqrt(0.9 * 0.1 * 2 / n) + 2 / n
  # The recalibrated CDF is close to uniform on held-out data (Kolmogorov-Smirnov distance).
  pit = np.sort(np.asarray(calibrate.recalibrated_cdf(fit, test_draws, test_y)))
  ks = np.max(np.abs(pit - (np.arange(1, n + 1) - 0.5) / n))
  assert ks < 1.63 / math.sqrt(n / 2) + 0.5 / n  # the 1 % two-sample critical value


def test_the_map_is_monotone_from_zero_to_one():
  draws, y = regression_data(5, n=300, samples=20)
  fit = calibrate.fit_quantile_recalibration(draws, y)
  assert fit.levels.shape == fit.frequencies.shape == (302,)
  assert float(fit.levels[0]) == float(fit.frequencies[0]) == 0.0
  assert float(fit.levels[-1]) == float(fit.frequencies[-1]) == 1.0
  assert bool((jnp.diff(fit.levels) >= 0).all()) and bool((jnp.diff(fit.frequencies) >= 0).all())
  q = [calibrate.recalibrated_quantile(fit, draws, p) for p in (0.1, 0.3, 0.6, 0.9)]
  assert all(bool((a <= b).all()) for a, b in zip(q, q[1:], strict=False))


def test_jit_and_eager_agree():
  draws, y = regression_data(6, n=100, samples=16)
  fit = calibrate.fit_quantile_recalibration(draws, y)
  jitted = jax.jit(calibrate.fit_quantile_recalibration)(draws, y)
  jax.tree.map(np.testing.assert_array_equal, fit, jitted)
  quantile = jax.jit(calibrate.recalibrated_quantile, static_argnames="level")
  np.testing.assert_allclose(
    quantile(fit, draws, level=0.8), calibrate.recalibrated_quantile(fit, draws, 0.8), rtol=1e-6
  )
  mean, std = draws.mean(0), draws.std(0)
  std_fit = jax.jit(calibrate.fit_std_scaling)(mean, std, y)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
    std_fit,
    calibrate.fit_std_scaling(mean, std, y),
  )
  iso = jax.jit(calibrate.isotonic_regression)(y, draws[0])
  np.testing.assert_array_equal(iso, calibrate.isotonic_regression(y, draws[0]))


def test_bad_input_is_named():
  draws, y = regression_data(7, n=10, samples=5)
  mean, std = draws.mean(0), draws.std(0)
  with pytest.raises(ValueError, match=r"mean, std, y must have the same shape.*std \(9,\)"):
    calibrate.fit_std_scaling(mean, std[:9], y)
  with pytest.raises(ValueError, match="std must be positive everywhere, got a minimum of 0"):
    calibrate.fit_std_scaling(mean, np.r_[std[:-1], 0.0], y)
  with pytest.raises(ValueError, match="the calibration set is empty"):
    calibrate.fit_std_scaling(np.zeros(0), np.ones(0), np.zeros(0))
  with pytest.raises(ValueError, match=r"at least 2 samples.*\(1, 10\)"):
    calibrate.fit_quantile_recalibration(draws[:1], y)
  with pytest.raises(ValueError, match=r"samples must have shape \(samples, \*y.shape\)"):
    calibrate.fit_quantile_recalibration(draws, y[:4])
  with pytest.raises(ValueError, match="needs at least one example"):
    calibrate.fit_quantile_recalibration(np.zeros((5, 0)), np.zeros(0))
  with pytest.raises(ValueError, match="y must be finite"):
    calibrate.fit_quantile_recalibration(draws, np.r_[y[:-1], np.nan])
  fit = calibrate.fit_quantile_recalibration(draws, y)
  with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1.5"):
    calibrate.recalibrated_quantile(fit, draws, 1.5)
  with pytest.raises(TypeError, match="fit must be a QuantileRecalibration"):
    calibrate.recalibrated_interval(calibrate.StdScaling(1.0, 0.0), draws)  # type: ignore[arg-type]
  with pytest.raises(TypeError, match="fit must be a StdScaling"):
    calibrate.scale_std(fit, std)  # type: ignore[arg-type]
  with pytest.raises(ValueError, match="weights must be positive everywhere"):
    calibrate.isotonic_regression(y, y, np.r_[np.ones(9), -1.0])
  with pytest.raises(ValueError, match=r"x, y must have the same shape"):
    calibrate.isotonic_regression(y, y[:3])


def test_no_recompile_for_new_values_or_levels():
  draws, y = regression_data(8, n=64, samples=12)
  mean, std = draws.mean(0), draws.std(0)

  def run(draws, y, level):
    fit = calibrate.fit_quantile_recalibration(draws, y)
    calibrate.recalibrated_interval(fit, draws, level)
    calibrate.recalibrated_cdf(fit, draws, y)
    scaling = calibrate.fit_std_scaling(mean, std, y)
    calibrate.scale_samples(scaling, draws)
    calibrate.isotonic_regression(y, draws[0])

  run(draws, y, 0.9)
  with count_compiles() as compiles:
    run(draws * 2 + 1, y[::-1].copy(), 0.5)
  assert not compiles
