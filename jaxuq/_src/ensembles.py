"""Deep ensembles trained in parallel: one jitted epoch vmapped over members.

Member ``k`` starts from its own key, sees its own data subset (a bootstrap
resample, all rows but fold ``k``, or all rows) and its own shuffles; all
members advance together in one vmapped ``lax.scan`` per epoch, sharing one
copy of the data. The states come out stacked (member axis first), and so do
the predictions, so every summary and metric written for MC samples takes
ensemble members unchanged.

References:
  Lakshminarayanan, Pritzel & Blundell, "Simple and scalable predictive
  uncertainty estimation using deep ensembles", NeurIPS 2017.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq._src.adapters import from_linen
from jaxuq._src.fit import check_loss_shapes
from jaxuq._src.keys import check_key, check_positive_int
from jaxuq._src.loop import (
  History,
  LoopConfig,
  check_batch_size,
  check_common,
  run_loop,
  select_tree,
  split_validation,
)
from jaxuq._src.losses import LossFn, resolve_loss
from jaxuq._src.sampling import mc_sample
from jaxuq._src.training import (
  TrainState,
  cache_if_hashable,
  init_state,
  make_epoch,
  make_evaluate,
  make_step,
  predict,
)

SUBSAMPLES = ("bootstrap", "kfold", "none")
MEMBER_LOOPS = ("vmap", "map")


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


def member_subsets(key: jax.Array, n: int, num_members: int, method: str = "bootstrap") -> Subsets:
  """Draws each member's training rows out of ``range(n)``.

  Args:
    key: typed PRNG key.
    n: number of rows.
    num_members: number of members (and of folds for ``'kfold'``).
    method: ``'bootstrap'`` (``n`` rows drawn with replacement),
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
  if method not in SUBSAMPLES:
    raise ValueError(f"subsample must be one of {SUBSAMPLES}, got {method!r}")
  rows = np.arange(n)
  if method == "none":
    return Subsets(
      np.tile(rows, (num_members, 1)).astype(np.int32),
      np.full(num_members, n, np.int32),
      np.zeros((num_members, n), bool),
    )
  if method == "bootstrap":
    indices = np.asarray(jax.random.randint(key, (num_members, n), 0, n), np.int32)
    holdout = np.ones((num_members, n), bool)
    for k in range(num_members):
      holdout[k, indices[k]] = False
    return Subsets(indices, np.full(num_members, n, np.int32), holdout)
  if num_members < 2:
    raise ValueError(f"subsample='kfold' needs num_members >= 2 folds, got {num_members}")
  if num_members > n:
    raise ValueError(
      f"subsample='kfold' needs at least one row per fold: {num_members} folds > {n} rows"
    )
  fold = np.empty(n, np.int64)
  fold[np.asarray(jax.random.permutation(key, n))] = rows % num_members
  holdout = fold[None, :] == np.arange(num_members)[:, None]
  counts = (~holdout).sum(axis=1).astype(np.int32)
  indices = np.zeros((num_members, counts.max()), np.int32)
  for k in range(num_members):
    indices[k, : counts[k]] = rows[~holdout[k]]
  return Subsets(indices, counts, holdout)


@cache_if_hashable
def ensemble_epoch(
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFn,
  classifier: bool,
  num_batches: int,
  batch_size: int,
  members: str = "vmap",
):
  """``epoch(states, active, x, y, idx, count)``: one jitted epoch of all members.

  ``members='vmap'`` runs the members side by side (batched arithmetic);
  ``'map'`` runs them one after another inside the same jitted call
  (``lax.map``: the memory of one member, arithmetic exactly that of a single
  training). Members whose ``active`` flag is false keep their state (early
  stopping).
  """
  step = make_step(model, optimizer, loss_fn, classifier)
  one = make_epoch(step, num_batches, batch_size)

  @jax.jit
  def run(states, active, x, y, idx, count):
    if members == "vmap":
      new, metrics = jax.vmap(one, in_axes=(0, None, None, 0, 0))(states, x, y, idx, count)
    else:
      new, metrics = jax.lax.map(lambda a: one(a[0], x, y, a[1], a[2]), (states, idx, count))
    return select_tree(active, new, states), metrics

  return run


@cache_if_hashable
def ensemble_evaluate(
  model: nn.Module, loss_fn: LossFn, classifier: bool, batch_size: int, per_member_weights: bool
):
  """Validation of every member, jitted: on shared data, or weighted per member."""
  evaluate = make_evaluate(model, loss_fn, classifier, batch_size)
  return jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0 if per_member_weights else None)))


def train_ensemble(
  key: jax.Array,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  x: Any,
  y: Any,
  *,
  num_members: int,
  subsample: str = "bootstrap",
  loss: str | LossFn = "mse",
  epochs: int,
  batch_size: int = 32,
  val_fraction: float = 0.0,
  val_split: str = "random",
  validation_data: tuple[Any, Any] | None = None,
  holdout_validation: bool = True,
  members: str = "vmap",
  patience: int | None = None,
  min_delta: float = 0.0,
  restore_best: bool = True,
  eval_batch_size: int = 1024,
  checkpoint: str | os.PathLike | None = None,
  checkpoint_every: int = 1,
  progress: bool = True,
) -> tuple[TrainState, History]:
  """Trains ``num_members`` copies of a model in parallel (one vmapped jitted epoch).

  The key is split as ``subset_key, split_key, members_key = split(key, 3)``:
  the subsets are ``member_subsets(subset_key, n_train, num_members,
  subsample)`` over the training rows, the validation rows (with
  ``val_fraction``) come from ``split_key`` as in :func:`train`, and member
  ``k`` is trained exactly as ``train(split(members_key, num_members)[k],
  model, optimizer, x[rows_k], y[rows_k], ...)`` would train it, up to
  floating-point rounding of the batched arithmetic, provided every member
  has the same number of rows (always for bootstrap and ``'none'``, for
  K-fold when ``num_members`` divides the rows). Otherwise each epoch runs
  ``min(counts) // batch_size`` steps for every member.

  Validation: ``validation_data`` or ``val_fraction`` give a set shared by all
  members; without them and with ``holdout_validation``, each member is
  validated on its own held-out rows (out-of-bag or its fold). Early stopping
  (``patience``) is per member: a member that stops is frozen (its best state
  kept with ``restore_best``) while the others train on.

  Args:
    key: typed PRNG key.
    model, optimizer, x, y, loss, epochs, batch_size, val_fraction, val_split,
      validation_data, patience, min_delta, restore_best, eval_batch_size,
      checkpoint, checkpoint_every, progress: as in :func:`train`.
    num_members: ensemble size N.
    subsample: ``'bootstrap'``, ``'kfold'`` or ``'none'`` (see :func:`member_subsets`).
    holdout_validation: validate each member on the rows it did not see when
      no shared validation set is given.
    members: ``'vmap'`` (default: members side by side in batched arithmetic)
      or ``'map'`` (one after another inside the same jitted epoch, with the
      memory of one member; faster for convolutions on CPU, see
      ``benchmarks/bench_ensemble.py``). Both give the same results up to
      floating-point rounding.

  Returns:
    ``(states, history)``: a ``TrainState`` whose leaves have a leading axis of
    ``num_members``, and per-epoch metrics of shape ``(epochs_run, num_members)``
    (NaN after a member stopped early).

  Raises:
    TypeError, ValueError: as :func:`train`, and for a bad ``num_members`` or ``subsample``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxuq.models import MLP
    >>> from jaxuq.train import train_ensemble, ensemble_predict
    >>> x = jnp.linspace(-1, 1, 64)[:, None]
    >>> net = MLP(width=16, depth=2, rate=0.1)
    >>> states, history = train_ensemble(jax.random.key(0), net, optax.adam(1e-2), x, x**2,
    ...                                  num_members=3, epochs=2, batch_size=16, progress=False)
    >>> history['loss'].shape, ensemble_predict(net, states, x).shape
    ((2, 3), (3, 64, 1))
  """
  x, y = check_common(
    key, optimizer, x, y, epochs=epochs, batch_size=batch_size, val_fraction=val_fraction,
    val_split=val_split, validation_data=validation_data, patience=patience,
    checkpoint_every=checkpoint_every,
  )  # fmt: skip
  check_positive_int(num_members, "num_members")
  check_positive_int(eval_batch_size, "eval_batch_size")
  if subsample not in SUBSAMPLES:
    raise ValueError(f"subsample must be one of {SUBSAMPLES}, got {subsample!r}")
  if members not in MEMBER_LOOPS:
    raise ValueError(f"members must be one of {MEMBER_LOOPS}, got {members!r}")
  loss_fn, classifier = resolve_loss(loss)
  subset_key, split_key, members_key = jax.random.split(key, 3)
  n = x.shape[0]
  rows = np.arange(n)
  x_val = y_val = None
  if val_fraction:
    rows, val_rows = split_validation(split_key, n, val_fraction, val_split)
    x_val, y_val = x[val_rows], y[val_rows]
  elif validation_data is not None:
    x_val, y_val = (jnp.asarray(a) for a in validation_data)
  subsets = member_subsets(subset_key, len(rows), num_members, subsample)
  check_batch_size(batch_size, int(subsets.counts.min()), "training rows of a member")

  member_keys = jax.random.split(members_key, num_members)
  states = jax.vmap(lambda k: init_state(k, model, optimizer, x[:1]))(member_keys)
  check_loss_shapes(model, _member(states, 0).variables, loss_fn, x, y, batch_size)

  num_batches = int(subsets.counts.min()) // batch_size
  run_epoch_jit = ensemble_epoch(
    model, optimizer, loss_fn, classifier, num_batches, batch_size, members
  )
  idx = jnp.asarray(rows[subsets.indices], jnp.int32)
  count = jnp.asarray(subsets.counts)

  def run_epoch(states, active):
    return run_epoch_jit(states, active, x, y, idx, count)

  evaluate = None
  if x_val is not None:
    check_loss_shapes(model, _member(states, 0).variables, loss_fn, x_val, y_val, batch_size)
    shared = ensemble_evaluate(model, loss_fn, classifier, eval_batch_size, False)
    ones = jnp.ones(x_val.shape[0], jnp.float32)

    def evaluate(states):
      return shared(states.variables, x_val, y_val, ones)

  elif holdout_validation and subsample != "none":
    per_member = ensemble_evaluate(model, loss_fn, classifier, eval_batch_size, True)
    weights = np.zeros((num_members, n), np.float32)
    weights[:, rows] = subsets.holdout
    weights_dev = jnp.asarray(weights)

    def evaluate(states):
      return per_member(states.variables, x, y, weights_dev)

  cfg = LoopConfig(
    epochs=epochs,
    patience=patience,
    min_delta=float(min_delta),
    restore_best=bool(restore_best),
    checkpoint=None if checkpoint is None else pathlib.Path(checkpoint),
    checkpoint_every=checkpoint_every,
    progress=progress,
    description=f"ensemble of {num_members} {type(model).__name__}",
    fingerprint={
      "model": repr(model),
      "x": list(x.shape),
      "y": list(y.shape),
      "num_members": num_members,
      "subsample": subsample,
      "batch_size": batch_size,
      "val_fraction": val_fraction,
      "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", repr(loss)),
    },
  )
  return run_loop(cfg, states, run_epoch, evaluate, num_members=num_members)


def _member(tree: Any, k: int) -> Any:
  return jax.tree.map(lambda a: a[k], tree)


def member(states: Any, k: int) -> Any:
  """Member ``k`` of stacked ensemble states (or variables), as a single model's."""
  return _member(states, k)


def _stacked_variables(states: TrainState | Mapping[str, Any]) -> dict[str, Any]:
  if isinstance(states, TrainState):
    return states.variables
  if not isinstance(states, Mapping) or "params" not in states:
    raise TypeError("states must be a stacked TrainState or a stacked variables dict with 'params'")
  return dict(states)


def ensemble_predict(
  model: nn.Module, states: TrainState | Mapping[str, Any], x: Any, *, batch_size: int = 1024
) -> jax.Array:
  """Deterministic predictions of every member (dropout off), member axis first.

  Args:
    model: the members' linen module.
    states: stacked ``TrainState`` (from :func:`train_ensemble`) or stacked variables.
    x: inputs ``(n, ...)``.
    batch_size: rows per forward pass.

  Returns:
    ``(num_members, n, ...)`` outputs (logits for a classifier): pass them to
    ``jaxuq.predictive_mean`` / ``predictive_std`` like MC samples.
  """
  check_positive_int(batch_size, "batch_size")
  return _ensemble_predict(model, _stacked_variables(states), jnp.asarray(x), batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _ensemble_predict(model: nn.Module, variables: Any, x: jax.Array, batch_size: int) -> jax.Array:
  return jax.vmap(lambda v: predict(model, v, x, batch_size=batch_size))(variables)


def ensemble_mc_sample(
  key: jax.Array,
  model: nn.Module,
  states: TrainState | Mapping[str, Any],
  x: Any,
  *,
  num_samples: int,
  chunk_size: int | None = None,
  shared_mask: bool = False,
) -> jax.Array:
  """MC dropout within every member: ``(num_members, num_samples, n, ...)``.

  Member ``k`` is sampled with ``jaxuq.mc_sample(jaxuq.from_linen(model,
  variables_k, train=False), keys[k], x, num_samples=...)`` where ``keys =
  jax.random.split(key, num_members)``: dropout on, BatchNorm on running
  averages. Reshape to ``(num_members * num_samples, n, ...)`` to pool the
  draws of all members as one predictive distribution.

  Args:
    key: typed PRNG key.
    model: the members' linen module (with dropout).
    states: stacked ``TrainState`` or stacked variables.
    x: inputs ``(n, ...)``.
    num_samples: MC passes per member.
    chunk_size: passed to ``mc_sample``.
    shared_mask: passed to ``from_linen``.

  Returns:
    Outputs with axes (member, sample, example, ...).
  """
  check_key(key)
  variables = _stacked_variables(states)
  num_members = jax.tree.leaves(variables)[0].shape[0]
  keys = jax.random.split(key, num_members)
  x = jnp.asarray(x)
  outs = []
  for k in range(num_members):
    fn = from_linen(model, _member(variables, k), shared_mask=shared_mask, train=False)
    outs.append(mc_sample(fn, keys[k], x, num_samples=num_samples, chunk_size=chunk_size))
  return jnp.stack(outs)


__all__ = [
  "SUBSAMPLES",
  "Subsets",
  "ensemble_mc_sample",
  "ensemble_predict",
  "member",
  "member_subsets",
  "train_ensemble",
]
