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

import os
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq._src.ensemble_predict import member
from jaxuq._src.fit import check_loss_shapes
from jaxuq._src.keys import check_positive_int
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
from jaxuq._src.subsets import SUBSAMPLES, member_subsets
from jaxuq._src.training import (
  TrainState,
  cache_if_hashable,
  init_state,
  make_epoch,
  make_evaluate,
  make_step,
)

MEMBER_LOOPS = ("vmap", "map")


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
  check_loss_shapes(model, member(states, 0).variables, loss_fn, x, y, batch_size)

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
    check_loss_shapes(model, member(states, 0).variables, loss_fn, x_val, y_val, batch_size)
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
