"""Low-precision inputs: every metric accumulates in float32 at least (float64 under x64).

Each metric gets bfloat16 inputs large enough for bfloat16 sums to saturate
(``256 + 1 == 256`` in bfloat16) and is compared with the same metric on the
same values in float64 under x64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
from jaxuq import metrics, reject
from tests.jit_variants import all_variants

rng = np.random.default_rng(0)
N = 4096


def simplex(shape):
  """Rows of multiples of 1/256 summing to exactly 1: exact in bfloat16 and float64 alike."""
  counts = rng.multinomial(256, [0.6, 0.3, 0.1], size=shape)
  return counts / 256.0


PROBS = simplex(N)
LABELS = rng.integers(0, 3, N).astype(np.int32)
PROB_SAMPLES = simplex((512, 8))
OOD = rng.integers(0, 2, N).astype(np.int32)
SCORES = rng.random(N) + 0.3 * OOD  # bfloat16 rounding makes many ties
CORRECT = rng.integers(0, 2, N).astype(np.float64)
SAMPLES = 100.0 + rng.normal(size=(512, 16))  # bfloat16 spacing at 100 is 0.5
Y = 100.0 + rng.normal(size=16)
MEAN, STD = 100.0 + rng.normal(size=N), 0.5 + rng.random(N)
TARGET = 100.0 + rng.normal(size=N)
HEADS = {"a": SAMPLES, "b": (SAMPLES[:, :3] - 100.0, SAMPLES[:, 5:] * 0.01)}

# name: (function, float arguments, integer arguments by position)
CASES = {
  "nll": (metrics.nll, (PROBS, LABELS)),
  "brier_score": (metrics.brier_score, (PROBS, LABELS)),
  "expected_calibration_error": (metrics.expected_calibration_error, (PROBS, LABELS)),
  "reliability_diagram": (metrics.reliability_diagram, (PROBS, LABELS)),
  "predictive_entropy": (metrics.predictive_entropy, (PROB_SAMPLES,)),
  "expected_entropy": (metrics.expected_entropy, (PROB_SAMPLES,)),
  "mutual_information": (metrics.mutual_information, (PROB_SAMPLES,)),
  "variation_ratio": (metrics.variation_ratio, (PROB_SAMPLES,)),
  "class_std": (metrics.class_std, (PROB_SAMPLES,)),
  "max_probability": (metrics.max_probability, (PROB_SAMPLES,)),
  "uncertainty_features": (reject.uncertainty_features, (PROB_SAMPLES,)),
  "auroc": (metrics.auroc, (SCORES, OOD)),
  "average_precision": (metrics.average_precision, (SCORES, OOD)),
  "roc_curve": (metrics.roc_curve, (SCORES, OOD)),
  "threshold_at_tpr": (metrics.threshold_at_tpr, (SCORES, OOD)),
  "fpr_at_tpr": (metrics.fpr_at_tpr, (SCORES, OOD)),
  "accuracy_coverage_curve": (metrics.accuracy_coverage_curve, (SCORES, CORRECT)),
  "aurc": (metrics.aurc, (SCORES, CORRECT)),
  "gaussian_nll": (metrics.gaussian_nll, (MEAN, STD, TARGET)),
  "crps": (metrics.crps, (SAMPLES, Y)),
  "central_interval": (metrics.central_interval, (SAMPLES,)),
  "interval_coverage": (metrics.interval_coverage, (SAMPLES, Y)),
  "mean_interval_width": (metrics.mean_interval_width, (SAMPLES,)),
  "quantile_calibration_curve": (metrics.quantile_calibration_curve, (SAMPLES, Y)),
  "predictive_mean": (jaxuq.predictive_mean, (HEADS,)),
  "predictive_std": (jaxuq.predictive_std, (HEADS,)),
  "summarize": (jaxuq.summarize, (HEADS,)),
}


def _cast(tree, dtype):
  """Floating leaves to ``dtype``; integer leaves (labels) unchanged."""

  def cast(a):
    floating = jnp.issubdtype(a.dtype, jnp.floating)
    return jnp.asarray(a, dtype) if floating else jnp.asarray(a)

  return jax.tree.map(cast, tree)


def test_every_metric_is_covered():
  public = {n for n in metrics.__all__ if n[0].islower()}
  assert public <= set(CASES), public - set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bfloat16_matches_float64_reference(name):
  fn, args = CASES[name]
  low = _cast(args, jnp.bfloat16)
  ours = fn(*low)
  with jax.enable_x64(True):
    ref = fn(*_cast(low, jnp.float64))  # the bfloat16 values, exactly, in float64
  for a, r in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
    if jnp.issubdtype(a.dtype, jnp.floating):
      assert a.dtype == jnp.float32, (name, a.dtype)
    np.testing.assert_allclose(np.asarray(a, np.float64), r, rtol=2e-5, atol=2e-6, err_msg=name)


@all_variants
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_calibration_exact_in_low_precision(variant, dtype):
  """Top probability 0.75, right 3 times in 4: perfectly calibrated, ECE exactly 0."""
  n = 16384
  probs = jnp.tile(jnp.array([[0.75, 0.25]], dtype), (n, 1))
  labels = jnp.tile(jnp.array([0, 0, 0, 1], jnp.int32), n // 4)
  ece = variant(metrics.expected_calibration_error)(probs, labels)
  assert float(ece) == 0.0
  diagram = variant(metrics.reliability_diagram)(probs, labels)
  assert int(diagram.counts.sum()) == n
  full = np.asarray(diagram.counts) > 0
  np.testing.assert_array_equal(np.asarray(diagram.accuracy)[full], [0.75])
  np.testing.assert_array_equal(np.asarray(diagram.confidence)[full], [0.75])


@pytest.mark.parametrize(
  ("dtype", "result"),
  [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32), (jnp.float32, jnp.float32),
   (jnp.float64, jnp.float64), (jnp.int32, jnp.float32)],
)  # fmt: skip
def test_result_dtype_under_x64(dtype, result):
  """Under x64 sums run in float64; results keep the input's dtype, at least float32."""
  with jax.enable_x64(True):
    assert metrics.crps(jnp.ones((4, 3), dtype), jnp.zeros(3, dtype)).dtype == result
    assert jaxuq.predictive_std({"a": jnp.ones((4, 3), dtype)})["a"].dtype == result
    s = jnp.arange(4, dtype=dtype)
    assert metrics.auroc(s, jnp.array([0, 1, 0, 1])).dtype == result
