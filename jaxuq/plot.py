"""Figures of jaxuq's experiments (the optional extra ``jaxuq[plot]``).

The only module of jaxuq that uses matplotlib, and only when a figure is drawn:
importing ``jaxuq`` or ``jaxuq.plot`` does not import matplotlib. Each function
takes plain arrays, returns a ``matplotlib.figure.Figure`` (made without
``pyplot``: no global backend, nothing left open) and saves it to ``path``
when one is given; without matplotlib it raises an ``ImportError`` naming the
extra to install. A ``path`` may start with ``~``; its folder is created when
missing, a path without a suffix gets ``.png`` (``.gif`` for the animation),
and an existing folder is refused with a ``ValueError``. Bad arrays (empty,
NaN scores, mismatched shapes) are refused with a ``ValueError`` naming the
argument before anything is drawn.

- Regression with a gap: :func:`regression_losses`, :func:`regression_curves`,
  :func:`regression_scatter`, :func:`regression_band`,
  :func:`regression_animation` (GIF), :func:`regression_sweep`.
- Digits vs letters: :func:`score_histograms`, :func:`roc_curves`,
  :func:`per_class_bars`, :func:`reliability`, :func:`coverage_curves`,
  :func:`calibration_and_sets` (temperature scaling and conformal set sizes).
- Exact answers: :func:`exact_histogram`, :func:`mc_convergence`.
- Active learning: :func:`active_learning_curves`.
- Benchmarks: :func:`speedup_figure`.
"""

from jaxuq._src.plot.active import active_learning_curves as active_learning_curves
from jaxuq._src.plot.bench import speedup_figure as speedup_figure
from jaxuq._src.plot.calibration import calibration_and_sets as calibration_and_sets
from jaxuq._src.plot.exact import exact_histogram as exact_histogram
from jaxuq._src.plot.exact import mc_convergence as mc_convergence
from jaxuq._src.plot.ood import coverage_curves as coverage_curves
from jaxuq._src.plot.ood import per_class_bars as per_class_bars
from jaxuq._src.plot.ood import reliability as reliability
from jaxuq._src.plot.ood import roc_curves as roc_curves
from jaxuq._src.plot.ood import score_histograms as score_histograms
from jaxuq._src.plot.regression import regression_animation as regression_animation
from jaxuq._src.plot.regression import regression_band as regression_band
from jaxuq._src.plot.regression import regression_curves as regression_curves
from jaxuq._src.plot.regression import regression_losses as regression_losses
from jaxuq._src.plot.regression import regression_scatter as regression_scatter
from jaxuq._src.plot.regression import regression_sweep as regression_sweep

__all__ = [
  "active_learning_curves",
  "calibration_and_sets",
  "coverage_curves",
  "exact_histogram",
  "mc_convergence",
  "per_class_bars",
  "regression_animation",
  "regression_band",
  "regression_curves",
  "regression_losses",
  "regression_scatter",
  "regression_sweep",
  "reliability",
  "roc_curves",
  "score_histograms",
  "speedup_figure",
]
