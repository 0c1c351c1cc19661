"""Data for the reference experiments: regression grids, IDX files, tfds, fonts.

Public names are re-exported by :mod:`jaxuq.data`.
"""
