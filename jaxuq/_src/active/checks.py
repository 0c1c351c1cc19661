"""Eager checks of the loop's arguments (plain Python, before anything is traced or allocated)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxuq._src.keys import check_positive_int


def check_seeds(seed_indices: Any, pool_size: int, runs: int | None) -> np.ndarray:
  """Returns the seed sets as int32 ``(runs, s)`` (``runs=None``: one set ``(s,)`` allowed only)."""
  seeds = np.asarray(seed_indices)
  want = "(s,)" if runs is None else "(s,) or (repeats, s)"
  if seeds.ndim not in ((1,) if runs is None else (1, 2)) or seeds.shape[-1] == 0:
    raise ValueError(f"seed_indices must be a non-empty array of shape {want}, got {seeds.shape}")
  if not np.issubdtype(seeds.dtype, np.integer):
    raise TypeError(f"seed_indices must hold integer pool rows, got dtype {seeds.dtype}")
  seeds = np.atleast_2d(seeds)
  if seeds.shape[1] >= pool_size:
    raise ValueError(
      f"the seed set ({seeds.shape[1]} rows) must be smaller than the pool ({pool_size} rows): "
      "nothing would be left to acquire"
    )
  if seeds.min() < 0 or seeds.max() >= pool_size:
    raise ValueError(
      f"seed_indices must be pool rows in [0, {pool_size}), got values in "
      f"[{seeds.min()}, {seeds.max()}]"
    )
  for row in seeds:
    if len(np.unique(row)) != len(row):
      raise ValueError("seed_indices must be distinct pool rows, got repeated rows")
  return seeds.astype(np.int32)


def check_sizes(
  pool_size: int, seed_size: int, acquisitions: Any, acquisition_size: Any, pool_subset: Any
) -> int:
  """Checks the acquisition schedule against the pool; returns the pool subset's size.

  ``pool_subset=None`` takes as many rows as remain unlabelled at the last
  acquisition (all of the pool that can ever be offered, in random order).
  """
  check_positive_int(acquisitions, "acquisitions")
  check_positive_int(acquisition_size, "acquisition_size")
  total = seed_size + acquisitions * acquisition_size
  if total > pool_size:
    raise ValueError(
      f"{acquisitions} acquisitions of {acquisition_size} after a seed set of {seed_size} need "
      f"{total} pool rows, but the pool has {pool_size}; acquire fewer"
    )
  remaining = pool_size - seed_size - (acquisitions - 1) * acquisition_size
  if pool_subset is None:
    return remaining
  check_positive_int(pool_subset, "pool_subset")
  if pool_subset < acquisition_size:
    raise ValueError(
      f"pool_subset={pool_subset} is smaller than acquisition_size={acquisition_size}"
    )
  if pool_subset > remaining:
    raise ValueError(
      f"pool_subset={pool_subset} is bigger than the pool: only {remaining} rows remain "
      f"unlabelled at the last acquisition ({pool_size} in the pool, {seed_size} seed rows, "
      f"{acquisitions - 1} acquisitions of {acquisition_size} before it); lower pool_subset "
      "or pass None"
    )
  return int(pool_subset)


def check_optional_positive(value: Any, name: str) -> int | None:
  """``None``, or a positive int."""
  if value is None:
    return None
  return check_positive_int(value, name)


def check_data(x_pool: Any, y_pool: Any, x_test: Any, y_test: Any) -> None:
  """Raises unless the pool and the test set are ``(inputs, integer labels)`` pairs of equal rows."""
  for name, x, y in (("pool", x_pool, y_pool), ("test", x_test, y_test)):
    if np.ndim(x) == 0 or np.ndim(y) != 1 or np.shape(x)[0] != np.shape(y)[0]:
      raise ValueError(
        f"x_{name} and y_{name} must have the same number of rows and y_{name} be 1-D labels, "
        f"got shapes {np.shape(x)} and {np.shape(y)}"
      )
  if np.shape(x_pool)[1:] != np.shape(x_test)[1:]:
    raise ValueError(
      f"x_pool and x_test must hold inputs of one shape, got {np.shape(x_pool)[1:]} and "
      f"{np.shape(x_test)[1:]}"
    )


def check_flag(value: Any, name: str) -> bool:
  """A bool (``True``/``False``), else a ``TypeError`` naming ``name``."""
  if not isinstance(value, bool):
    raise TypeError(f"{name} must be True or False, got {value!r}")
  return bool(value)
