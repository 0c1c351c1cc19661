"""The labelled set of an active-learning run, with a fixed capacity so that shapes never change.

The set grows by ``k`` labels a round; if it were an array of its current
size, every round would trace and compile the training and scoring programs
anew. Instead it is a pool-sized boolean mask and an index vector of fixed
``capacity`` (the seed set plus every acquisition), of which the first
``count`` entries are valid: the training epoch of ``fit_labelled.py`` reads
``count`` at run time, so one compiled round serves every round and every run
advanced side by side under ``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class LabelledSet(struct.PyTreeNode):
  """The pool rows labelled so far (one run; runs side by side stack on axis 0).

  Attributes:
    indices: int32 ``(capacity,)``, pool rows in the order they were labelled;
      the first ``count`` are valid, the rest are padding (0).
    count: int32 scalar, the number of labelled rows.
    mask: bool ``(pool,)``, true for labelled rows (never offered again).
  """

  indices: jax.Array
  count: jax.Array
  mask: jax.Array


def labelled_set(seed_indices: jax.Array, pool_size: int, capacity: int) -> LabelledSet:
  """The labelled set holding ``seed_indices`` (distinct pool rows), with room for ``capacity``."""
  seed = jnp.asarray(seed_indices, jnp.int32)
  indices = jnp.zeros((capacity,), jnp.int32).at[: seed.shape[0]].set(seed)
  mask = jnp.zeros((pool_size,), bool).at[seed].set(True)
  return LabelledSet(indices, jnp.asarray(seed.shape[0], jnp.int32), mask)


def add_labels(labelled: LabelledSet, rows: jax.Array) -> LabelledSet:
  """``labelled`` with the pool ``rows`` (``(k,)``, unlabelled, distinct) appended (jit-able)."""
  rows = rows.astype(jnp.int32)
  indices = jax.lax.dynamic_update_slice(labelled.indices, rows, (labelled.count,))
  return LabelledSet(indices, labelled.count + rows.shape[0], labelled.mask.at[rows].set(True))


def draw_unlabelled(key: jax.Array, mask: jax.Array, size: int) -> jax.Array:
  """``size`` distinct unlabelled pool rows drawn uniformly at random (jit-able).

  Each row gets a uniform number, labelled rows get 2 (above every uniform),
  and the ``size`` smallest are kept: a uniform random subset of the
  unlabelled rows, provided at least ``size`` remain (the loop checks it).

  Returns:
    int32 ``(size,)`` pool rows, in random order.
  """
  # float32 draws whatever jax_enable_x64 says: the same rows in both modes
  u = jnp.where(mask, 2.0, jax.random.uniform(key, mask.shape, jnp.float32))
  return jax.lax.top_k(-u, size)[1].astype(jnp.int32)


def balanced_seed(key: jax.Array, labels: np.ndarray, per_class: int) -> np.ndarray:
  """``per_class`` random rows of every class of ``labels`` (a balanced seed set), sorted.

  Args:
    key: typed PRNG key.
    labels: ``(n,)`` integer class labels of the pool.
    per_class: rows drawn from each class present.

  Returns:
    int64 ``(classes_present * per_class,)`` pool rows, sorted.

  Raises:
    ValueError: a class has fewer than ``per_class`` rows.
  """
  labels = np.asarray(labels)
  u = np.asarray(jax.random.uniform(key, labels.shape, jnp.float32))  # the same under x64
  chosen = []
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    if len(rows) < per_class:
      raise ValueError(
        f"class {c} has only {len(rows)} rows in the pool, fewer than per_class={per_class}"
      )
    chosen.append(rows[np.argsort(u[rows], kind="stable")[:per_class]])
  return np.sort(np.concatenate(chosen))
