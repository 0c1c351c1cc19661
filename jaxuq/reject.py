"""Accept / reject inputs by their uncertainty: logistic model, TPR-targeted threshold, decision.

Labels: 1 = out of distribution (reject), 0 = in distribution (accept).
"""

from jaxuq._src.reject import FEATURE_NAMES as FEATURE_NAMES
from jaxuq._src.reject import Decision as Decision
from jaxuq._src.reject import LogisticParams as LogisticParams
from jaxuq._src.reject import Rejector as Rejector
from jaxuq._src.reject import choose_threshold as choose_threshold
from jaxuq._src.reject import decide as decide
from jaxuq._src.reject import fit_logistic as fit_logistic
from jaxuq._src.reject import fit_rejector as fit_rejector
from jaxuq._src.reject import predict_proba as predict_proba
from jaxuq._src.reject import uncertainty_features as uncertainty_features

__all__ = [
  "FEATURE_NAMES",
  "Decision",
  "LogisticParams",
  "Rejector",
  "choose_threshold",
  "decide",
  "fit_logistic",
  "fit_rejector",
  "predict_proba",
  "uncertainty_features",
]
