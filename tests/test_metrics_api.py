"""Every metric runs under jax.jit (and vmap) with the eager result; doctests; layer rule."""

import contextlib
import doctest
import importlib
import pathlib

import jax
import numpy as np
import pytest

import jaxuq
from jaxuq import metrics, reject
from tests.helpers import imported_modules

rng = np.random.default_rng(0)
PROB_SAMPLES = rng.dirichlet(np.ones(4), size=(6, 10)).astype(np.float32)
PROBS = PROB_SAMPLES.mean(0)
CLASSES = rng.integers(0, 4, 10).astype(np.int32)
OOD = np.array([0, 1] * 5, np.int32)
SCORES = np.round(rng.random(10), 1).astype(np.float32)  # ties
SAMPLES = rng.normal(size=(8, 10)).astype(np.float32)
Y = rng.normal(size=10).astype(np.float32)

CASES = {
  "predictive_entropy": (metrics.predictive_entropy, (PROB_SAMPLES,)),
  "expected_entropy": (metrics.expected_entropy, (PROB_SAMPLES,)),
  "mutual_information": (metrics.mutual_information, (PROB_SAMPLES,)),
  "variation_ratio": (metrics.variation_ratio, (PROB_SAMPLES,)),
  "class_std": (metrics.class_std, (PROB_SAMPLES,)),
  "max_probability": (metrics.max_probability, (PROB_SAMPLES,)),
  "nll": (metrics.nll, (PROBS, CLASSES)),
  "brier_score": (metrics.brier_score, (PROBS, CLASSES)),
  "expected_calibration_error": (metrics.expected_calibration_error, (PROBS, CLASSES)),
  "reliability_diagram": (metrics.reliability_diagram, (PROBS, CLASSES)),
  "auroc": (metrics.auroc, (SCORES, OOD)),
  "average_precision": (metrics.average_precision, (SCORES, OOD)),
  "roc_curve": (metrics.roc_curve, (SCORES, OOD)),
  "fpr_at_tpr": (metrics.fpr_at_tpr, (SCORES, OOD)),
  "threshold_at_tpr": (metrics.threshold_at_tpr, (SCORES, OOD)),
  "accuracy_coverage_curve": (metrics.accuracy_coverage_curve, (SCORES, OOD)),
  "aurc": (metrics.aurc, (SCORES, OOD)),
  "gaussian_nll": (metrics.gaussian_nll, (Y, np.abs(Y) + 0.5, SAMPLES[0])),
  "crps": (metrics.crps, (SAMPLES, Y)),
  "central_interval": (metrics.central_interval, (SAMPLES,)),
  "interval_coverage": (metrics.interval_coverage, (SAMPLES, Y)),
  "mean_interval_width": (metrics.mean_interval_width, (SAMPLES,)),
  "quantile_calibration_curve": (metrics.quantile_calibration_curve, (SAMPLES, Y)),
  "uncertainty_features": (reject.uncertainty_features, (PROB_SAMPLES,)),
}


def test_every_public_metric_is_covered():
  functions = {n for n in metrics.__all__ if n[0].islower()}
  functions -= {"predictive_mean", "predictive_std", "summarize"}  # tested in test_summaries
  assert functions <= set(CASES), functions - set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_and_vmap_match_eager(name):
  fn, args = CASES[name]
  eager = fn(*args)
  jitted = jax.jit(fn)(*args)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), eager, jitted)
  stacked = jax.vmap(fn)(*(np.stack([a, a]) for a in args))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a[1], b, rtol=1e-6, atol=1e-7), stacked, eager
  )


def test_vmap_over_an_extra_axis():
  stacked = np.stack([PROBS, PROBS[::-1]])
  ece = jax.vmap(metrics.expected_calibration_error, in_axes=(0, None))(stacked, CLASSES)
  np.testing.assert_allclose(ece[0], metrics.expected_calibration_error(PROBS, CLASSES), rtol=1e-6)
  np.testing.assert_allclose(ece[1], metrics.expected_calibration_error(PROBS[::-1], CLASSES))
  aucs = jax.vmap(metrics.auroc, in_axes=(0, None))(np.stack([SCORES, -SCORES]), OOD)
  ref = metrics.auroc(SCORES, OOD)
  np.testing.assert_allclose(aucs, [ref, 1 - ref], rtol=1e-6)


MODULES = [
  "jaxuq._src.metrics.samples",
  "jaxuq._src.metrics.calibration",
  "jaxuq._src.metrics.ood",
  "jaxuq._src.metrics.selective",
  "jaxuq._src.metrics.regression",
  "jaxuq._src.reject",
  "jaxuq._src.summaries",
]


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
  result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
  assert result.failed == 0 and result.attempted > 0


def test_metrics_import_only_array_code():
  """Layer 1: the metric modules import jax, numpy and each other, nothing else of jaxuq's."""
  root = pathlib.Path(jaxuq.__file__).parent / "_src" / "metrics"
  allowed = ("__future__", "collections", "functools", "typing", "numbers", "jax", "numpy")
  allowed_jaxuq = ("jaxuq._src.metrics", "jaxuq._src.summaries", "jaxuq._src.gaussian")
  for path in root.glob("*.py"):
    for name in imported_modules(path):
      ok = name.split(".")[0] in allowed or name.startswith(allowed_jaxuq)
      assert ok, f"{path.name} imports {name}"


def test_tie_bounds():
  from jaxuq._src.metrics._sorting import tie_bounds

  start, end = tie_bounds(np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0]))
  np.testing.assert_array_equal(start, [0, 0, 2, 3, 3, 3])
  np.testing.assert_array_equal(end, [2, 2, 3, 6, 6, 6])
  start, end = tie_bounds(np.array([5.0]))
  np.testing.assert_array_equal([start[0], end[0]], [0, 1])


@contextlib.contextmanager
def count_compiles():
  """Counts XLA compilations inside the block (JAX's public monitoring events)."""
  events: list[str] = []

  def listener(name, duration, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
      events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def test_no_recompile_for_new_values_or_target():
  metrics.fpr_at_tpr(SCORES, OOD, target_tpr=0.9)
  metrics.threshold_at_tpr(SCORES, OOD, target_tpr=0.9)
  with count_compiles() as compiles:
    metrics.fpr_at_tpr(SCORES * 2, OOD[::-1].copy(), target_tpr=0.5)
    metrics.threshold_at_tpr(SCORES + 1, OOD, target_tpr=0.95)
  assert not compiles


def test_submodules_are_attributes_of_the_package():
  assert jaxuq.metrics is metrics and jaxuq.reject is reject
  assert {"metrics", "reject"} <= set(jaxuq.__all__)
  for module in (metrics, reject):
    assert all(hasattr(module, name) for name in module.__all__)
