"""Uncertainty metrics: sample summaries, calibration, OOD detection, selective prediction, regression.

Pure functions of arrays; every one runs under ``jax.jit`` and ``jax.vmap``.
Shapes and static settings are validated eagerly; values (probabilities that
sum to 1, labels in range, both classes present) are validated when the inputs
are concrete, never silently fixed. Under ``jax.jit`` only the shapes can be
checked. OOD labels: 1 = out of distribution (the positive class), and higher
scores mean "more likely out of distribution".

One argument order everywhere, as optax and torchmetrics: predictions or
scores first, labels or targets second (``nll(probs, labels)``,
``auroc(scores, labels)``, ``aurc(uncertainty, correct)``, ``crps(samples, y)``).
Sums and means over examples run in float32 at least (float64 under x64), so
bfloat16 and float16 inputs give float32 results that do not saturate.
"""

from jaxuq._src.metrics.calibration import ReliabilityDiagram as ReliabilityDiagram
from jaxuq._src.metrics.calibration import brier_score as brier_score
from jaxuq._src.metrics.calibration import expected_calibration_error as expected_calibration_error
from jaxuq._src.metrics.calibration import nll as nll
from jaxuq._src.metrics.calibration import reliability_diagram as reliability_diagram
from jaxuq._src.metrics.ood import OperatingPoint as OperatingPoint
from jaxuq._src.metrics.ood import RocCurve as RocCurve
from jaxuq._src.metrics.ood import auroc as auroc
from jaxuq._src.metrics.ood import average_precision as average_precision
from jaxuq._src.metrics.ood import fpr_at_tpr as fpr_at_tpr
from jaxuq._src.metrics.ood import roc_curve as roc_curve
from jaxuq._src.metrics.ood import threshold_at_tpr as threshold_at_tpr
from jaxuq._src.metrics.regression import QuantileCalibration as QuantileCalibration
from jaxuq._src.metrics.regression import central_interval as central_interval
from jaxuq._src.metrics.regression import crps as crps
from jaxuq._src.metrics.regression import gaussian_nll as gaussian_nll
from jaxuq._src.metrics.regression import interval_coverage as interval_coverage
from jaxuq._src.metrics.regression import mean_interval_width as mean_interval_width
from jaxuq._src.metrics.regression import quantile_calibration_curve as quantile_calibration_curve
from jaxuq._src.metrics.samples import class_std as class_std
from jaxuq._src.metrics.samples import expected_entropy as expected_entropy
from jaxuq._src.metrics.samples import max_probability as max_probability
from jaxuq._src.metrics.samples import mutual_information as mutual_information
from jaxuq._src.metrics.samples import predictive_entropy as predictive_entropy
from jaxuq._src.metrics.samples import variation_ratio as variation_ratio
from jaxuq._src.metrics.selective import CoverageCurve as CoverageCurve
from jaxuq._src.metrics.selective import accuracy_coverage_curve as accuracy_coverage_curve
from jaxuq._src.metrics.selective import aurc as aurc
from jaxuq._src.summaries import predictive_mean as predictive_mean
from jaxuq._src.summaries import predictive_std as predictive_std
from jaxuq._src.summaries import summarize as summarize

__all__ = [
  "CoverageCurve",
  "OperatingPoint",
  "QuantileCalibration",
  "ReliabilityDiagram",
  "RocCurve",
  "accuracy_coverage_curve",
  "auroc",
  "aurc",
  "average_precision",
  "brier_score",
  "central_interval",
  "class_std",
  "crps",
  "expected_calibration_error",
  "expected_entropy",
  "fpr_at_tpr",
  "gaussian_nll",
  "interval_coverage",
  "max_probability",
  "mean_interval_width",
  "mutual_information",
  "nll",
  "predictive_entropy",
  "predictive_mean",
  "predictive_std",
  "quantile_calibration_curve",
  "reliability_diagram",
  "roc_curve",
  "summarize",
  "threshold_at_tpr",
  "variation_ratio",
]
