"""Split conformal prediction: quantile, classification sets, regression intervals, metrics.

Public in ``jaxuq.conformal``.
"""
