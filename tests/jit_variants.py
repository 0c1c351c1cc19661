"""Run a metric test eagerly and under ``jax.jit``, in the manner of ``chex.all_variants``.

Usage::

  @all_variants
  def test_x(variant):
    np.testing.assert_allclose(variant(metrics.nll)(probs, labels), ...)

Under jit, the Python settings that the metrics check in plain Python
(``num_bins``, ``reduction``, ``target_tpr``, ``level`` ...) are static
arguments, looked up by function name in :data:`STATIC_ARGNAMES`. Only shapes
are checked under jit, so tests of bad values stay eager.
"""

import jax
import pytest

STATIC_ARGNAMES = {
  "nll": ("reduction",),
  "brier_score": ("reduction",),
  "gaussian_nll": ("reduction",),
  "crps": ("reduction",),
  "expected_calibration_error": ("num_bins",),
  "reliability_diagram": ("num_bins",),
  "threshold_at_tpr": ("target_tpr",),
  "fpr_at_tpr": ("target_tpr",),
  "central_interval": ("level",),
  "interval_coverage": ("level",),
  "mean_interval_width": ("level",),
  "quantile_calibration_curve": ("levels",),
  "class_std": ("average", "ddof"),
  "predictive_std": ("ddof",),
  "summarize": ("levels", "ddof"),
}


def _eager(fn):
  return fn


def _jit(fn):
  return jax.jit(fn, static_argnames=STATIC_ARGNAMES.get(fn.__name__, ()))


all_variants = pytest.mark.parametrize("variant", [_eager, _jit], ids=["eager", "jit"])
