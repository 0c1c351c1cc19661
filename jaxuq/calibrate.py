"""Calibration: fit on held-out data, apply to new predictions.

Classification (logits, sample axis first for MC dropout): temperature
scaling and vector scaling, fit by minimising the NLL; :func:`calibrated_probs`
applies either fit to every sample's logits before averaging the
probabilities. Regression: std scaling (one factor on the MC std, closed
form) and isotonic quantile recalibration of MC samples. Each fit is a pure,
deterministic function returning a small NamedTuple and runs under
``jax.jit``; inputs are checked eagerly (values only when they are concrete).
"""

from jaxuq._src.calibrate.isotonic import isotonic_regression as isotonic_regression
from jaxuq._src.calibrate.pit import sample_cdf as sample_cdf
from jaxuq._src.calibrate.quantile import QuantileRecalibration as QuantileRecalibration
from jaxuq._src.calibrate.quantile import fit_quantile_recalibration as fit_quantile_recalibration
from jaxuq._src.calibrate.quantile import recalibrated_cdf as recalibrated_cdf
from jaxuq._src.calibrate.quantile import recalibrated_interval as recalibrated_interval
from jaxuq._src.calibrate.quantile import recalibrated_quantile as recalibrated_quantile
from jaxuq._src.calibrate.scaling import TemperatureScaling as TemperatureScaling
from jaxuq._src.calibrate.scaling import VectorScaling as VectorScaling
from jaxuq._src.calibrate.scaling import calibrated_probs as calibrated_probs
from jaxuq._src.calibrate.std_scaling import StdScaling as StdScaling
from jaxuq._src.calibrate.std_scaling import fit_std_scaling as fit_std_scaling
from jaxuq._src.calibrate.std_scaling import scale_samples as scale_samples
from jaxuq._src.calibrate.std_scaling import scale_std as scale_std
from jaxuq._src.calibrate.temperature import fit_temperature as fit_temperature
from jaxuq._src.calibrate.vector import fit_vector_scaling as fit_vector_scaling

__all__ = [
  "QuantileRecalibration",
  "StdScaling",
  "TemperatureScaling",
  "VectorScaling",
  "calibrated_probs",
  "fit_quantile_recalibration",
  "fit_std_scaling",
  "fit_temperature",
  "fit_vector_scaling",
  "isotonic_regression",
  "recalibrated_cdf",
  "recalibrated_interval",
  "recalibrated_quantile",
  "sample_cdf",
  "scale_samples",
  "scale_std",
]
