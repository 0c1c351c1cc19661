"""Training on a growing labelled set without recompiling, for every run side by side.

Training runs the engine's own step (``apply_step`` of ``training.py``, the
one behind ``jaxuq.train.train``) and its epoch shuffle (``shuffled_batches``)
over a :class:`LabelledSet` of fixed capacity. An epoch is
``ceil(count / batch_size)`` steps. By default the last batch is partial, as
in Keras (130 rows at batch 128: 128 and 2); with ``even_batches`` the epoch's
rows are cut into batches that differ by at most one row (65 and 65). A batch
smaller than ``batch_size`` is padded only to the next power of two (at least
8, at most ``batch_size``), its padding rows get weight 0 and the batch loss is
the mean over its real rows. Each step is one jitted call, ``vmap``-ed over the runs,
driven from the host: the step compiles once per padded size (at most five
for a batch of 128) for the whole loop, and a round with 20 labelled rows
computes 32 rows a step, not 128.

Why not one ``lax.scan`` per epoch, as ``train`` does: on XLA's CPU backend a
convolutional network's training step inside a loop (``scan``/``while``) ran
10-20x slower than the same step called from Python (measured on the 2-core
CPU with the paper's CNN at batch 128, before jaxuq's own ``Conv`` layer and
huge pages: about 0.5 s per step from Python, 6-17 s inside a loop; not timed
inside a loop since; a step from Python now takes 0.15-0.27 s, see
``docs/guide/training.md``). A model with BatchNorm would see the padding rows in the
statistics of an epoch's last batch: use models without BatchNorm, or sizes
that are multiples of ``batch_size``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq._src.active.labelled import LabelledSet
from jaxuq._src.losses import Objective
from jaxuq._src.static import Static
from jaxuq._src.training import TrainState, apply_step, shuffled_batches


def _weighted(loss: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable[..., jax.Array]:
  def weighted(outputs: jax.Array, target: tuple[jax.Array, jax.Array]) -> jax.Array:
    labels, weights = target
    return loss(outputs, labels) * weights

  return weighted


def weighted_objective(objective: Objective) -> Objective:
  """The objective whose targets are ``(labels, weights)``: each example's loss times its weight."""
  return Objective(Static(_weighted(objective.loss.value)), False)


def _max_batches(labelled: LabelledSet, batch_size: int) -> int:
  return -(-labelled.indices.shape[-1] // batch_size)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def shuffle(
  state: TrainState, labelled: LabelledSet, *, batch_size: int
) -> tuple[TrainState, jax.Array]:
  """Every run's epoch shuffle: ``key, shuffle_key = split(state.key)``, as in ``train``.

  Returns:
    The states with their keys advanced, and ``(runs, max_batches,
    batch_size)`` pool rows, the labelled rows first in random order.
  """
  max_batches = _max_batches(labelled, batch_size)

  def one(state: TrainState, labelled: LabelledSet) -> tuple[TrainState, jax.Array]:
    key, shuffle_key = jax.random.split(state.key)
    idx = jnp.pad(labelled.indices, (0, max_batches * batch_size - labelled.indices.shape[0]))
    batches = shuffled_batches(shuffle_key, idx, labelled.count, max_batches, batch_size)
    return state.replace(key=key), batches

  return jax.vmap(one)(state, labelled)


def padded_size(rows: int, batch_size: int) -> int:
  """The rows a step computes for ``rows`` real ones: the next power of two, in [8, batch_size]."""
  return min(batch_size, max(8, 1 << (rows - 1).bit_length()))


def batch_bounds(count: int, batch_size: int, even: bool = False) -> list[tuple[int, int]]:
  """``[start, stop)`` of each step's rows in an epoch's shuffled order of ``count`` rows.

  ``ceil(count / batch_size)`` batches: full ones and a partial last one, or
  with ``even`` sizes that differ by at most one.
  """
  steps = -(-count // batch_size)
  if even:
    return [(b * count // steps, (b + 1) * count // steps) for b in range(steps)]
  return [(b * batch_size, min(count, (b + 1) * batch_size)) for b in range(steps)]


@functools.partial(jax.jit, static_argnames=("objective", "size"))
def step(
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  batches: jax.Array,
  start: jax.Array,
  stop: jax.Array,
  *,
  objective: Objective,
  size: int,
) -> tuple[TrainState, jax.Array]:
  """One step for every run on rows ``[start, stop)`` of its epoch's shuffled order.

  ``batches`` (runs, max_batches, batch_size) is each run's shuffled order;
  the step computes ``size >= stop - start`` rows, those past ``stop`` padding
  with weight 0.

  Returns:
    The states and each run's sum of the batch's per-example losses.
  """
  weighted = weighted_objective(objective)

  def one(state: TrainState, batches: jax.Array):
    order = jnp.pad(batches.reshape(-1), (0, size))  # a window past the end reads padding
    rows = jax.lax.dynamic_slice_in_dim(order, start, size)
    valid = jnp.arange(size) < stop - start
    real = jnp.sum(valid)
    weights = jnp.where(valid, size / real, 0.0).astype(jnp.float32)
    target: Any = (y[rows], weights)  # the weighted objective's (labels, weights)
    state, metrics = apply_step(state, x[rows], target, weighted)
    return state, metrics["loss"] * real

  return jax.vmap(one)(state, batches)


def fit_labelled(
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  labelled: LabelledSet,
  *,
  objective: Objective,
  epochs: int,
  batch_size: int,
  even_batches: bool = False,
) -> tuple[TrainState, jax.Array]:
  """``epochs`` epochs of minibatch training of every run on its labelled rows.

  Args:
    state: the runs' train states (stacked on axis 0; keys drive shuffles and dropout).
    x, y: the whole pool (inputs and labels).
    labelled: the runs' labelled sets; every run holds the same number of rows.
    objective: the per-example loss.
    epochs: passes over the labelled rows.
    batch_size: rows per step; the last batch of an epoch is partial.
    even_batches: cut each epoch into ``ceil(count / batch_size)`` batches of
      sizes that differ by at most one, instead.

  Returns:
    ``(state, loss)``: the trained states and each run's mean training loss
    over its last epoch (dropout on).
  """
  count = int(np.asarray(labelled.count)[0])
  bounds = batch_bounds(count, batch_size, even_batches)
  loss = jnp.zeros(labelled.count.shape, jnp.float32)
  for _ in range(epochs):
    state, batches = shuffle(state, labelled, batch_size=batch_size)
    loss = jnp.zeros(labelled.count.shape, jnp.float32)
    for start, stop in bounds:
      state, total = step(
        state, x, y, batches, jnp.int32(start), jnp.int32(stop),
        objective=objective, size=padded_size(stop - start, batch_size),
      )  # fmt: skip
      loss = loss + total
  return state, loss / count
