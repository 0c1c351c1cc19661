"""Uncertainty metrics: pure array code, split by concern; public in ``jaxuq.metrics``."""
