"""Bad and unusual inputs to the metrics, calibration, conformal and rejection functions.

Each case once gave a silently wrong number or an unclear error (an adversarial review
of session 10); the expected values are closed forms or float64 references.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxuq import calibrate, conformal, metrics, reject
from jaxuq.models import MLP
from jaxuq.train import train

BIG = np.array([0, 1, 2**32, 2**32 + 1], np.int64)  # 2**32 + 1 wraps to 1 in int32
WRAP = "which JAX stores as int32"


@pytest.mark.parametrize(
  "call",
  [
    lambda: metrics.auroc([0.1, 0.2, 0.3, 0.4], BIG),
    lambda: metrics.nll(np.full((4, 3), 1 / 3, np.float32), BIG),
    lambda: metrics.accuracy_coverage_curve(np.array([1.0, 2, 3, 4]), BIG),
    lambda: calibrate.fit_temperature(np.zeros((4, 3), np.float32), BIG),
    lambda: conformal.lac().score(np.full((4, 3), 1 / 3, np.float32), BIG),
    lambda: reject.fit_logistic(np.zeros((4, 2), np.float32), BIG),
  ],
)
def test_int64_values_beyond_int32_are_refused_not_wrapped(call):
  with pytest.raises(ValueError, match=WRAP):
    call()


def test_training_refuses_int64_labels_that_would_wrap():
  x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 2**32 + 1, 2], np.int64)
  model = MLP(width=4, depth=1, out_features=3)
  with pytest.raises(ValueError, match="y holds int64 values in \\[0, 4294967297\\]"):
    train(jax.random.key(0), model, optax.adam(1e-3), x, y, epochs=1, loss="cross_entropy")


def test_uint32_ood_labels_report_their_own_range():
  labels = np.array([0, 1, 4294967295, 0], np.uint32)  # was reported as "values in [-1, 1]"
  with pytest.raises(ValueError, match=r"got values in \[0, 4294967295\]"):
    metrics.auroc([0.1, 0.2, 0.3, 0.4], labels)


def test_ece_bins_do_not_depend_on_x64():
  # 0.6 sits on the edge 3/5 and counts in the lower bin either way (0.55, not 0.15).
  probs, labels = np.array([[0.6, 0.4], [0.7, 0.3]], np.float32), np.array([0, 1])
  off = float(metrics.expected_calibration_error(probs, labels, num_bins=5))
  with jax.enable_x64(True):
    on = float(metrics.expected_calibration_error(jnp.asarray(probs), labels, num_bins=5))
    counts = metrics.reliability_diagram(jnp.asarray(probs), labels, num_bins=5).counts
  np.testing.assert_allclose([off, on], [0.55, 0.55], rtol=1e-6)
  np.testing.assert_array_equal(counts, [0, 0, 1, 1, 0])


@pytest.mark.parametrize("offset", [0.0, 300.0, 1e5])
def test_crps_far_from_zero_matches_float64(offset):
  rng = np.random.default_rng(0)
  s = (rng.normal(size=(100, 50)) + offset).astype(np.float32)
  y = (rng.normal(size=50) + offset).astype(np.float32)
  sd, yd = s.astype(np.float64), y.astype(np.float64)
  ref = np.abs(sd - yd).mean(0) - np.abs(sd[:, None] - sd[None]).mean((0, 1)) / 2
  got = np.asarray(metrics.crps(s, y, reduction="none"))
  np.testing.assert_allclose(got, ref, rtol=1e-5)  # was 3.8 % off at 1e5


@pytest.mark.parametrize("std, want", [(1e-20, -45.13276), (1e20, 46.97064)])
def test_gaussian_nll_for_tiny_and_huge_std(std, want):
  # log(std**2) under- or overflowed in float32: nan and inf.
  got = metrics.gaussian_nll(np.float32(0), np.float32(std), np.float32(0))
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  sd = np.full(3, std, np.float32)  # residuals of one std: scale 1
  fit = calibrate.fit_std_scaling(np.zeros(3, np.float32), sd, sd)
  np.testing.assert_allclose(float(fit.nll), np.log(std) + 0.5 * np.log(2 * np.pi) + 0.5, rtol=1e-6)


def test_nan_bounds_targets_and_thresholds_are_refused():
  lo, hi = np.zeros(4), np.ones(4)
  with pytest.raises(ValueError, match="y must be finite"):
    conformal.regression_coverage(lo, hi, np.array([0.5, np.nan, 0.5, 0.5]))
  with pytest.raises(ValueError, match="lower must not be nan"):
    conformal.regression_coverage(np.full(4, np.nan), hi, np.full(4, 0.5))
  assert float(conformal.regression_coverage(np.full(4, -np.inf), hi, np.full(4, 0.5))) == 1.0
  with pytest.raises(ValueError, match="threshold must not be nan"):
    conformal.aps().predict_set(jnp.nan, np.full((2, 3), 1 / 3, np.float32))
  with pytest.raises(ValueError, match="samples must be finite"):
    metrics.central_interval(np.array([[np.nan], [1.0]]))


def test_a_negative_residual_threshold_is_refused():
  mu, sd = np.zeros(3), np.ones(3)
  with pytest.raises(ValueError, match="threshold must be >= 0 for a residual score"):
    conformal.normalized_residual().predict_interval(-1.0, mu, sd)
  with pytest.raises(ValueError, match="threshold must be >= 0 for a residual score"):
    conformal.absolute_residual().predict_interval(-0.5, mu)
  lo, hi = conformal.cqr(0.9).predict_interval(-0.1, np.zeros((5, 3)))  # CQR may go below 0
  assert lo.shape == hi.shape == (3,)


def test_float32_softmax_cast_to_float64_passes_the_simplex_check():
  z = np.random.default_rng(0).normal(size=(64, 50)).astype(np.float32)
  p = np.asarray(jax.nn.softmax(jnp.asarray(z), -1)).astype(np.float64)
  y = np.zeros(64, np.int32)
  with jax.enable_x64(True):
    assert np.isfinite(float(metrics.nll(p, y)))
    with pytest.raises(ValueError, match=r"sums to 1\.01\d* \(off by 0\.01\)"):
      metrics.nll(np.c_[p[:, :-1], p[:, -1:] + 0.01], y)


@pytest.mark.parametrize("name, value", [("learning_rate", np.inf), ("l2", np.inf)])
def test_fit_logistic_refuses_infinite_settings(name, value):
  x, y = np.random.default_rng(0).normal(size=(8, 2)), np.array([0, 1] * 4)
  with pytest.raises(ValueError, match=f"{name} must be a finite non-negative float"):
    reject.fit_logistic(x, y, **{name: value})


def test_small_argument_errors_name_the_fix():
  s, y = np.zeros((4, 3)), np.zeros(3)
  with pytest.raises(ValueError, match="levels must be a non-empty sequence"):
    metrics.quantile_calibration_curve(s, y, levels=())
  with pytest.raises(ValueError, match="weights must be positive.*weight zero or less"):
    calibrate.isotonic_regression(np.arange(3.0), np.arange(3.0), weights=-np.ones(3))
  for bad in (-5, 2.5, True):
    with pytest.raises(ValueError, match="num_scores must be a non-negative int"):
      conformal.quantile_rank(bad, 0.1)


def _raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_malformed_calibration_fits_are_refused():
  # Fits built by hand or loaded from a file were applied as they came: a negative
  # temperature inverted the ranking, a (2,) temperature acted per class, a (1,) bias was
  # broadcast, a negative std scale mirrored the samples, knots of two lengths gave a value.
  z, s = np.array([[2.0, 0.0]]), np.linspace(0.0, 10.0, 11)[:, None]
  ts = calibrate.TemperatureScaling
  _raises(lambda: calibrate.calibrated_probs(ts(jnp.array(-1.0), 0.0), z), "must be positive")
  _raises(lambda: calibrate.calibrated_probs(ts(jnp.array(0.0), 0.0), z), "must be positive")
  _raises(lambda: calibrate.calibrated_probs(ts(jnp.array([1.0, 0.1]), 0.0), z), "a scalar")
  _raises(lambda: calibrate.calibrated_probs(ts(jnp.array(jnp.nan), 0.0), z), "finite")
  vs = calibrate.VectorScaling(jnp.ones(2), jnp.zeros(1), jnp.zeros(()))
  _raises(lambda: calibrate.calibrated_probs(vs, z), "shape \\(classes,\\)")
  ss = calibrate.StdScaling(jnp.array(-3.0), jnp.array(0.0))
  _raises(lambda: calibrate.scale_samples(ss, s), "must be >= 0")
  qr = calibrate.QuantileRecalibration
  bad = [
    (qr(jnp.array([0, 0.5, 1.0]), jnp.array([0, 1.0])), "one shape"),
    (qr(jnp.array([0, 0.5, 1.0]), jnp.array([0, 0.9, 0.8])), "non-decreasing"),
    (qr(jnp.array([0, 0.5, 1.0]), jnp.array([0, jnp.nan, 1.0])), "finite"),
  ]
  for fit, match in bad:
    _raises(lambda fit=fit: calibrate.recalibrated_quantile(fit, s, 0.5), match)
  good = calibrate.recalibrated_quantile(
    qr(jnp.array([0, 0.5, 1.0]), jnp.array([0, 0.8, 1.0])), s, 0.8
  )
  assert good.tolist() == [5.0]
  p = calibrate.calibrated_probs(ts(jnp.array(2.0), 0.0), z)
  np.testing.assert_allclose(p, [[0.7310586, 0.2689414]], rtol=1e-6)


@pytest.mark.parametrize("row, dtype", [([0.58, 0.5], jnp.bfloat16), ([0.53, 0.5], jnp.float16)])
def test_low_precision_rows_far_from_one_are_refused(row, dtype):
  # sqrt(eps) let a bfloat16 row summing to 1.08 (and a float16 one at 1.03) through.
  with pytest.raises(ValueError, match="must sum to 1"):
    metrics.nll(jnp.asarray([row], dtype), [0])


def test_rounded_low_precision_probabilities_still_pass():
  # Rounding a correct row to bfloat16 moves its sum by at most eps / 2 (0.0039).
  z = np.random.default_rng(0).normal(size=(256, 10)) * 3
  for dtype in (jnp.bfloat16, jnp.float16):
    p = jnp.asarray(jax.nn.softmax(jnp.asarray(z, jnp.float32)), dtype)
    assert np.isfinite(float(metrics.nll(p, np.zeros(256, np.int32))))


def test_predictive_std_of_samples_far_from_zero():
  # The mean of 1e7 + (0, 1, 2, 3) rounds in float32 (1e7 + 2): the std came out 1.2247.
  import jaxuq

  x = np.float32(1e7) + np.arange(4, dtype=np.float32)
  np.testing.assert_allclose(float(jaxuq.predictive_std(x)), np.sqrt(1.25), rtol=1e-6)
  np.testing.assert_allclose(float(jaxuq.summarize(x).std), np.sqrt(1.25), rtol=1e-6)
