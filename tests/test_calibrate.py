"""Temperature and vector scaling (jaxuq.calibrate): float64 brute force, jit, traces, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxuq import calibrate, metrics
from jaxuq._src.calibrate import temperature as temperature_module
from jaxuq._src.calibrate.scaling import scaled_nll
from tests.test_metrics_api import count_compiles

GOLDEN = (math.sqrt(5) - 1) / 2


def make_logits(seed, n=2000, classes=10, samples=None, spread=3.0, true_temperature=2.0):
  """Logits whose labels follow softmax(logits / true_temperature): over-confident by design."""
  rng = np.random.default_rng(seed)
  mean = rng.normal(0.0, spread, (n, classes))
  p = np.exp(mean / true_temperature)
  p /= p.sum(axis=1, keepdims=True)
  labels = (p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(0, classes - 1)
  if samples is None:
    return mean.astype(np.float32), labels.astype(np.int32)
  mc = mean[None] + rng.normal(0.0, 1.0, (samples, n, classes))
  return mc.astype(np.float32), labels.astype(np.int32)


def nll64(logits, labels, t):
  """The float64 NLL of the sample-averaged softmax(logits / t)."""
  z = np.asarray(logits, np.float64)
  z = z if z.ndim == 3 else z[None]
  a = z / t
  log_p = a - a.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_p, labels[None, :, None], axis=-1)[..., 0]
  top = picked.max(0)
  return -np.mean(top + np.log(np.exp(picked - top).mean(0)))


def brute_force_temperature(logits, labels, lo=0.05, hi=50.0):
  """A float64 grid search over log T, refined by golden-section search to 1e-12."""
  grid = np.linspace(np.log(lo), np.log(hi), 161)
  values = [nll64(logits, labels, np.exp(u)) for u in grid]
  k = int(np.argmin(values))
  a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
  while b - a > 1e-12:
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    if nll64(logits, labels, np.exp(c)) < nll64(logits, labels, np.exp(d)):
      b = d
    else:
      a = c
  return float(np.exp((a + b) / 2))


@pytest.mark.parametrize("samples", [None, 20], ids=["deterministic", "mc"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_temperature_matches_float64_brute_force(samples, dtype):
  logits, labels = make_logits(0, n=1000, samples=samples)
  logits = jnp.asarray(logits, dtype)
  exact = np.asarray(logits.astype(jnp.float32))  # the rounded logits, as the fit sees them
  fit = calibrate.fit_temperature(logits, labels)
  t_ref = brute_force_temperature(exact, labels)
  assert fit.temperature.dtype == jnp.float32
  assert 1.2 < t_ref < 3.5  # over-confident logits: a temperature above 1
  np.testing.assert_allclose(float(fit.temperature), t_ref, rtol=1e-5)
  np.testing.assert_allclose(float(fit.nll), nll64(exact, labels, t_ref), rtol=1e-5)


@pytest.mark.parametrize("samples", [None, 4], ids=["deterministic", "mc"])
def test_closed_form_derivatives_match_autodiff(samples):
  logits, labels = make_logits(8, n=50, classes=6, samples=samples)
  z = jnp.asarray(logits if samples else logits[None])

  def loss(u):
    return scaled_nll(z, jnp.asarray(labels), jnp.exp(-u), jnp.zeros(()))

  autodiff = jax.jit(lambda u: jax.jvp(jax.grad(loss), (u,), (jnp.ones_like(u),)))
  closed_form = jax.jit(temperature_module.nll_derivatives)
  for u in (-1.0, 0.0, 0.7, 2.0):
    expected = autodiff(jnp.asarray(u))
    actual = closed_form(z, jnp.asarray(labels), jnp.asarray(u))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)


def test_temperature_of_a_hand_worked_case():
  # Every example has confidence sigmoid(4 / T); 3 of 4 are right, so the optimum is 3/4.
  logits = jnp.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
  fit = calibrate.fit_temperature(logits, jnp.array([0, 1, 1, 1]))
  np.testing.assert_allclose(float(fit.temperature), 4 / math.log(3), rtol=1e-6)
  np.testing.assert_allclose(float(fit.nll), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_temperature_stops_at_the_bounds():
  logits = jnp.array([[3.0, 0.0], [0.0, 3.0]])
  # Always right: the NLL falls as T -> 0; always wrong: it falls as T -> inf.
  right = calibrate.fit_temperature(logits, jnp.array([0, 1]), bounds=(0.1, 10.0))
  wrong = calibrate.fit_temperature(logits, jnp.array([1, 0]), bounds=(0.1, 10.0))
  np.testing.assert_allclose([float(right.temperature), float(wrong.temperature)], [0.1, 10.0])


@pytest.mark.parametrize("samples", [None, 5], ids=["deterministic", "mc"])
def test_calibrated_probs_average_the_scaled_samples(samples):
  logits, labels = make_logits(1, n=300, classes=4, samples=samples)
  fit = calibrate.fit_temperature(logits, labels)
  probs = calibrate.calibrated_probs(fit, logits)
  z = logits if samples else logits[None]
  a = np.asarray(z, np.float64) / float(fit.temperature)
  e = np.exp(a - a.max(-1, keepdims=True))
  expected = (e / e.sum(-1, keepdims=True)).mean(0)
  np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(metrics.nll(probs, labels), fit.nll, rtol=1e-5)


@pytest.mark.parametrize("samples", [None, 6], ids=["deterministic", "mc"])
def test_jit_and_eager_agree(samples):
  logits, labels = make_logits(2, n=200, classes=5, samples=samples)
  # Vector scaling (slow to compile) only once: its L-BFGS loop is the same for both layouts.
  fits = [calibrate.fit_temperature] + ([] if samples else [calibrate.fit_vector_scaling])
  for fit_fn in fits:
    eager = fit_fn(logits, labels)
    jitted = jax.jit(fit_fn)(logits, labels)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), eager, jitted)
    probs = jax.jit(calibrate.calibrated_probs)(eager, logits)
    np.testing.assert_allclose(probs, calibrate.calibrated_probs(eager, logits), rtol=1e-6)


def test_fits_trace_once_per_shape(monkeypatch):
  traces = []
  derivatives = temperature_module.nll_derivatives

  def counting(*args):
    traces.append(1)
    return derivatives(*args)

  monkeypatch.setattr(temperature_module, "nll_derivatives", counting)
  logits, labels = make_logits(3, n=37, classes=7)
  calibrate.calibrated_probs(calibrate.fit_temperature(logits, labels), logits)
  n = len(traces)
  assert n > 0
  with count_compiles() as compiles:
    fit = calibrate.fit_temperature(logits * 2, (labels + 1) % 7)  # new values, same shapes
    calibrate.calibrated_probs(fit, logits * 3)
    calibrate.fit_temperature(logits, labels, bounds=(0.5, 5.0))  # bounds are not static
  assert len(traces) == n
  assert not compiles


def test_vector_scaling_beats_temperature_when_classes_differ():
  # Class c's logit is scaled by its own factor: one temperature cannot undo all of them.
  factors = np.array([0.3, 3.0, 1.0, 0.5, 2.0], np.float32)
  calib_logits, calib_labels = make_logits(4, n=4000, classes=5, true_temperature=1.0)
  test_logits, test_labels = make_logits(5, n=4000, classes=5, true_temperature=1.0)
  t_fit = calibrate.fit_temperature(calib_logits * factors, calib_labels)
  v_fit = calibrate.fit_vector_scaling(calib_logits * factors, calib_labels)
  assert float(v_fit.nll) < float(t_fit.nll) - 0.05
  test_t = metrics.nll(calibrate.calibrated_probs(t_fit, test_logits * factors), test_labels)
  test_v = metrics.nll(calibrate.calibrated_probs(v_fit, test_logits * factors), test_labels)
  assert float(test_v) < float(test_t) - 0.05
  # It recovers the inverse factors (up to sampling error) and centred biases.
  np.testing.assert_allclose(v_fit.scale, 1 / factors, rtol=0.1)
  np.testing.assert_allclose(float(v_fit.bias.sum()), 0.0, atol=1e-5)


def test_vector_scaling_of_mc_logits_is_no_worse_than_temperature():
  logits, labels = make_logits(6, n=500, classes=4, samples=8)
  t_fit = calibrate.fit_temperature(logits, labels)
  v_fit = calibrate.fit_vector_scaling(logits, labels)
  assert v_fit.scale.shape == v_fit.bias.shape == (4,)
  assert float(v_fit.nll) <= float(t_fit.nll) + 1e-6
  probs = calibrate.calibrated_probs(v_fit, logits)
  np.testing.assert_allclose(metrics.nll(probs, labels), v_fit.nll, rtol=1e-5)


LOGITS = hnp.arrays(np.float32, (12, 3), elements=st.floats(-20, 20, width=32))
LABELS = hnp.arrays(np.int32, (12,), elements=st.integers(0, 2))


@settings(max_examples=25, deadline=None)
@given(LOGITS, LABELS)
def test_temperature_properties(logits, labels):
  if np.ptp(logits, axis=1).max() < 1e-3:  # constant rows: every temperature is optimal
    return
  fit = calibrate.fit_temperature(logits, labels, bounds=(0.01, 100.0))
  t = float(fit.temperature)
  assert 0.01 * (1 - 1e-6) <= t <= 100.0 * (1 + 1e-6)
  # No temperature on a grid does better (to float32 rounding of the NLL).
  grid = np.exp(np.linspace(np.log(0.01), np.log(100.0), 41))
  best = min(nll64(logits, labels, g) for g in grid)
  assert nll64(logits, labels, t) <= best + 1e-5
  probs = calibrate.calibrated_probs(fit, logits)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert bool((probs >= 0).all())


def test_bad_input_is_named():
  logits, labels = make_logits(7, n=10, classes=3)
  with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\).*\[0, 3\]"):
    calibrate.fit_temperature(logits, np.r_[labels[:-1], 3])
  with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
    calibrate.fit_temperature(logits, labels[:5])
  with pytest.raises(TypeError, match="labels must be integer"):
    calibrate.fit_temperature(logits, labels.astype(np.float32))
  with pytest.raises(ValueError, match="look like probabilities.*jnp.log"):
    calibrate.fit_temperature(jax.nn.softmax(logits), labels)
  with pytest.raises(ValueError, match="at least 2 classes"):
    calibrate.fit_temperature(logits[:, :1], np.zeros(10, np.int32))
  with pytest.raises(ValueError, match="must not be empty"):
    calibrate.fit_temperature(np.zeros((0, 3), np.float32), np.zeros(0, np.int32))
  with pytest.raises(ValueError, match=r"2 or 3 axes.*\(1, 10, 3, 1\)"):
    calibrate.fit_temperature(logits[None, ..., None], labels)
  with pytest.raises(ValueError, match="logits must be finite"):
    calibrate.fit_temperature(np.r_[logits[:-1], [[np.nan, 0, 0]]], labels)
  with pytest.raises(ValueError, match="bounds must satisfy 0 < t_min < t_max"):
    calibrate.fit_temperature(logits, labels, bounds=(2.0, 1.0))
  with pytest.raises(ValueError, match="max_iter must be a positive int, got 0"):
    calibrate.fit_temperature(logits, labels, max_iter=0)
  with pytest.raises(TypeError, match="fit must be a TemperatureScaling or a VectorScaling"):
    calibrate.calibrated_probs(calibrate.StdScaling(1.0, 0.0), logits)  # type: ignore[arg-type]
  fit = calibrate.VectorScaling(jnp.ones(3), jnp.zeros(3), jnp.zeros(()))
  with pytest.raises(ValueError, match="logits must have 3 classes"):
    calibrate.calibrated_probs(fit, np.zeros((2, 4), np.float32))
