"""Figures of the experiments, one file per experiment; public through ``jaxuq.plot``."""
