"""Calibration of MC dropout predictions: logit scaling (classification), std and quantile recalibration (regression)."""
