"""``train_ensemble``: deep ensembles trained in parallel, one jitted epoch over all members.

Member ``k`` starts from its own key, sees its own data subset (a bootstrap
resample, all rows but fold ``k``, or all rows) and its own shuffles; all
members advance together in one jitted epoch per epoch, sharing one copy of
the data. The engine is that of ``train`` (``fit.py``); the states come out
stacked (member axis first), and so do the predictions, so every summary and
metric written for MC samples takes ensemble members unchanged.

References:
  Lakshminarayanan, Pritzel & Blundell, "Simple and scalable predictive
  uncertainty estimation using deep ensembles", NeurIPS 2017.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from jaxuq._src.fit import Members, Settings, fit
from jaxuq._src.loop import History
from jaxuq._src.losses import LossFn
from jaxuq._src.training import TrainState


def train_ensemble(
  key: jax.Array,
  model: Any,
  optimizer: Any,
  x: Any,
  y: Any,
  *,
  num_members: int,
  subsets: str = "bootstrap",
  holdout_validation: bool = True,
  member_loop: str = "vmap",
  loss: str | LossFn = "mse",
  epochs: int,
  batch_size: int = 32,
  val_fraction: float = 0.0,
  val_split: str = "random",
  validation_data: tuple[Any, Any] | None = None,
  patience: int | None = None,
  min_delta: float = 0.0,
  restore_best: bool = True,
  loop: str = "scan",
  eval_batch_size: int = 1024,
  checkpoint: str | os.PathLike | None = None,
  checkpoint_every: int = 1,
  progress: bool | None = None,
) -> tuple[TrainState, History]:
  """Trains ``num_members`` copies of a model in parallel (one jitted epoch for all).

  The key is split as ``subset_key, split_key, members_key = split(key, 3)``:
  the subsets are ``member_subsets(subset_key, n_train, num_members,
  subsets)`` over the training rows, the validation rows (with
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
    model, optimizer, x, y, loss, epochs, batch_size, val_fraction, val_split, validation_data, patience, min_delta, restore_best, loop, eval_batch_size, checkpoint, checkpoint_every, progress: as in
      :func:`train` (the same engine; the checkpoint's fingerprint also covers
      ``num_members``, ``subsets`` and ``holdout_validation``).
    num_members: ensemble size N (a count).
    subsets: each member's training rows: ``'bootstrap'``, ``'kfold'`` or
      ``'none'`` (see :func:`member_subsets`).
    holdout_validation: validate each member on the rows it did not see when
      no shared validation set is given.
    member_loop: ``'vmap'`` (default: members side by side in batched
      arithmetic) or ``'map'`` (one after another inside the same jitted
      epoch, with the memory of one member; faster for convolutions on CPU,
      see ``benchmarks/bench_ensemble.py``). Both give the same results up to
      floating-point rounding.

  Returns:
    ``(states, history)``: a ``TrainState`` whose leaves have a leading axis of
    ``num_members``, and per-epoch metrics of shape ``(epochs_run, num_members)``
    (NaN after a member stopped early).

  Raises:
    TypeError, ValueError: as :func:`train`, and for a bad ``num_members``,
      ``subsets`` or ``member_loop``.

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
  settings = Settings(
    loss=loss, epochs=epochs, batch_size=batch_size, val_fraction=val_fraction,
    val_split=val_split, validation_data=validation_data, patience=patience,
    min_delta=min_delta, restore_best=restore_best, loop=loop, eval_batch_size=eval_batch_size,
    checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
  )  # fmt: skip
  members = Members(num_members, subsets, holdout_validation, member_loop)
  return fit(key, model, optimizer, x, y, settings, members)
