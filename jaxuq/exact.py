"""Exact dropout: every mask enumerated, and closed-form moments.

Ground truth for MC dropout where it can be computed:

* :func:`enumerate_outputs`, :func:`exact_distribution`, :func:`exact_moments`,
  :func:`exact_quantiles` run all ``2**m`` dropout masks of a linen model (from
  :func:`jaxuq.from_linen`) through the very forward pass that
  :func:`jaxuq.mc_sample` runs, masks given instead of drawn, ``m <= 24`` by
  default. Probabilities are float64 in any mode; the outputs have the model's
  dtype (use ``with jax.enable_x64(True):`` and float64 variables for float64).
* :func:`closed_form_moments`: mean, variance and covariance in one
  deterministic pass when the only dropout feeds the final Dense layer.
* :class:`Moments`: what both :func:`exact_moments` and
  :func:`closed_form_moments` return (``mean``, ``var``, ``cov``).
* :class:`TinyNet`: the 7-parameter network of the first reference experiment.
"""

from jaxuq._src.exact.closed_form import closed_form_moments as closed_form_moments
from jaxuq._src.exact.engine import DEFAULT_MAX_UNITS as DEFAULT_MAX_UNITS
from jaxuq._src.exact.engine import MaskLayout as MaskLayout
from jaxuq._src.exact.enumerate import Distribution as Distribution
from jaxuq._src.exact.enumerate import Enumeration as Enumeration
from jaxuq._src.exact.enumerate import enumerate_outputs as enumerate_outputs
from jaxuq._src.exact.enumerate import exact_distribution as exact_distribution
from jaxuq._src.exact.enumerate import exact_moments as exact_moments
from jaxuq._src.exact.enumerate import exact_quantiles as exact_quantiles
from jaxuq._src.exact.enumerate import mask_layout as mask_layout
from jaxuq._src.exact.moments import Moments as Moments
from jaxuq._src.tiny import TINY_RATE as TINY_RATE
from jaxuq._src.tiny import TINY_X as TINY_X
from jaxuq._src.tiny import TinyNet as TinyNet
from jaxuq._src.tiny import tiny_input as tiny_input
from jaxuq._src.tiny import tiny_predictive as tiny_predictive
from jaxuq._src.tiny import tiny_variables as tiny_variables

__all__ = [
  "DEFAULT_MAX_UNITS",
  "TINY_RATE",
  "TINY_X",
  "Distribution",
  "Enumeration",
  "MaskLayout",
  "Moments",
  "TinyNet",
  "closed_form_moments",
  "enumerate_outputs",
  "exact_distribution",
  "exact_moments",
  "exact_quantiles",
  "mask_layout",
  "tiny_input",
  "tiny_predictive",
  "tiny_variables",
]
