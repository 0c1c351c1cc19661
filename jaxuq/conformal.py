"""Split conformal prediction: classification sets and regression intervals with a coverage guarantee.

Three steps, all pure functions that run under ``jax.jit`` and ``jax.vmap``:
build a method (its hyperparameters fixed), score a held-out calibration set
and :func:`calibrate` the threshold, then predict sets (boolean masks
``(n, classes)``) or intervals ``(lower, upper)``. If calibration and test
examples are exchangeable, the prediction holds the true label with
probability at least ``1 - alpha``, whatever the model.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from jaxuq import conformal
  >>> key = jax.random.key(0)
  >>> probs = jax.nn.softmax(jax.random.normal(key, (100, 5)) * 3)
  >>> labels = jax.random.categorical(key, jnp.log(probs))
  >>> aps = conformal.aps()
  >>> threshold = conformal.calibrate(aps.score(probs[:50], labels[:50]), alpha=0.1)
  >>> sets = aps.predict_set(threshold, probs[50:])
  >>> sets.shape, sets.dtype
  ((50, 5), dtype('bool'))
"""

from jaxuq._src.conformal.classification import ConformalClassifier as ConformalClassifier
from jaxuq._src.conformal.classification import aps as aps
from jaxuq._src.conformal.classification import lac as lac
from jaxuq._src.conformal.classification import raps as raps
from jaxuq._src.conformal.metrics import GroupCoverage as GroupCoverage
from jaxuq._src.conformal.metrics import coverage_by_class as coverage_by_class
from jaxuq._src.conformal.metrics import coverage_by_set_size as coverage_by_set_size
from jaxuq._src.conformal.metrics import mean_set_size as mean_set_size
from jaxuq._src.conformal.metrics import mean_width as mean_width
from jaxuq._src.conformal.metrics import regression_coverage as regression_coverage
from jaxuq._src.conformal.metrics import set_coverage as set_coverage
from jaxuq._src.conformal.quantile import ConformalThreshold as ConformalThreshold
from jaxuq._src.conformal.quantile import calibrate as calibrate
from jaxuq._src.conformal.quantile import min_calibration_size as min_calibration_size
from jaxuq._src.conformal.quantile import quantile_rank as quantile_rank
from jaxuq._src.conformal.regression import ConformalRegressor as ConformalRegressor
from jaxuq._src.conformal.regression import absolute_residual as absolute_residual
from jaxuq._src.conformal.regression import cqr as cqr
from jaxuq._src.conformal.regression import normalized_residual as normalized_residual

__all__ = [
  "ConformalClassifier",
  "ConformalRegressor",
  "ConformalThreshold",
  "GroupCoverage",
  "absolute_residual",
  "aps",
  "calibrate",
  "coverage_by_class",
  "coverage_by_set_size",
  "cqr",
  "lac",
  "mean_set_size",
  "mean_width",
  "min_calibration_size",
  "normalized_residual",
  "quantile_rank",
  "raps",
  "regression_coverage",
  "set_coverage",
]
