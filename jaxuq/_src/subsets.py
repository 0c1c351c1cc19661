"""Data subsets of deep-ensemble members: bootstrap resamples, K folds, or all rows.

References:
  Lakshminarayanan, Pritzel & Blundell, "Simple and scalable predictive
  uncertainty estimation using deep ensembles", NeurIPS 2017.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxuq._src.keys import check_key, check_positive_int

SUBSETS = ("bootstrap", "kfold", "none")


class Subsets(NamedTuple):
  """The rows each ensemble member trains on.

  Attributes:
    indices: ``(num_members, m)`` int32 rows of the data; member ``k`` uses
      the first ``counts[k]`` (the rest is padding).
    counts: ``(num_members,)`` number of valid rows per member.
    holdout: ``(num_members, n)`` bool, the rows member ``k`` never sees
      (out-of-bag for bootstrap, fold ``k`` for K-fold, none for ``'none'``).
  """

  indices: np.ndarray
  counts: np.ndarray
  holdout: np.ndarray


def member_subsets(key: jax.Array, n: int, num_members: int, subsets: str = "bootstrap") -> Subsets:
  """Draws each member's training rows out of ``range(n)``.

  Args:
    key: typed PRNG key.
    n: number of rows.
    num_members: number of members (and of folds for ``'kfold'``).
    subsets: ``'bootstrap'`` (``n`` rows drawn with replacement),
      ``'kfold'`` (rows randomly dealt into ``num_members`` folds of sizes
      differing by at most one; member ``k`` leaves out fold ``k``), or
      ``'none'`` (every member sees every row; members differ only by
      initialisation and shuffling).

  Returns:
    A :class:`Subsets`.
  """
  check_key(key)
  check_positive_int(n, "n")
  check_positive_int(num_members, "num_members")
  if subsets not in SUBSETS:
    raise ValueError(f"subsets must be one of {SUBSETS}, got {subsets!r}")
  rows = np.arange(n)
  if subsets == "none":
    return Subsets(
      np.tile(rows, (num_members, 1)).astype(np.int32),
      np.full(num_members, n, np.int32),
      np.zeros((num_members, n), bool),
    )
  if subsets == "bootstrap":
    # int32 draws also under jax_enable_x64 (int64 ones are other rows: a resumed run changed)
    indices = np.asarray(jax.random.randint(key, (num_members, n), 0, n, np.int32))
    holdout = np.ones((num_members, n), bool)
    for k in range(num_members):
      holdout[k, indices[k]] = False
    return Subsets(indices, np.full(num_members, n, np.int32), holdout)
  if num_members < 2:
    raise ValueError(f"subsets='kfold' needs num_members >= 2 folds, got {num_members}")
  if num_members > n:
    raise ValueError(
      f"subsets='kfold' needs at least one row per fold: {num_members} folds > {n} rows"
    )
  fold = np.empty(n, np.int64)
  fold[np.asarray(jax.random.permutation(key, n))] = rows % num_members
  holdout = fold[None, :] == np.arange(num_members)[:, None]
  counts = (~holdout).sum(axis=1).astype(np.int32)
  indices = np.zeros((num_members, counts.max()), np.int32)
  for k in range(num_members):
    indices[k, : counts[k]] = rows[~holdout[k]]
  return Subsets(indices, counts, holdout)
