"""``train``: fit one linen model with an optax optimizer, with validation and checkpoints."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq._src.keys import check_positive_int
from jaxuq._src.loop import (
  History,
  LoopConfig,
  check_batch_size,
  check_common,
  run_loop,
  split_validation,
)
from jaxuq._src.losses import LossFn, resolve_loss
from jaxuq._src.training import (
  TrainState,
  cache_if_hashable,
  init_state,
  make_epoch,
  make_evaluate,
  make_python_epoch,
  make_step,
)

LOOPS = ("scan", "python")


def check_loss_shapes(
  model: nn.Module, variables: Any, loss_fn: LossFn, x: Any, y: Any, batch_size: int
) -> None:
  """Traces the model and the loss on one batch (no computation); raises a clear error on mismatch."""
  xb, yb = x[:batch_size], y[:batch_size]
  try:
    out = jax.eval_shape(lambda v, a: model.apply(v, a, train=False), variables, xb)
    jax.eval_shape(loss_fn, out, yb)
  except (TypeError, ValueError) as e:
    shape = getattr(locals().get("out"), "shape", "?")
    raise ValueError(
      f"the loss cannot compare the model's outputs (shape {shape} for a batch of x "
      f"{xb.shape}) with y of shape {yb.shape}: {e}"
    ) from e


@cache_if_hashable
def make_run_epoch(
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFn,
  classifier: bool,
  num_batches: int,
  batch_size: int,
  loop: str,
):
  """The epoch function of one model: ``epoch(state, x, y, idx, count)``, jitted (``'scan'``) or not.

  Cached on its (hashable) arguments, so that training the same model with the
  same optimizer object again (a sweep, a resumed run) reuses the compilation.
  """
  step = make_step(model, optimizer, loss_fn, classifier)
  if loop == "python":
    return make_python_epoch(step, num_batches, batch_size)
  return jax.jit(make_epoch(step, num_batches, batch_size))


@cache_if_hashable
def jitted_evaluate(model: nn.Module, loss_fn: LossFn, classifier: bool, batch_size: int):
  """``make_evaluate`` jitted, cached like :func:`make_run_epoch`."""
  return jax.jit(make_evaluate(model, loss_fn, classifier, batch_size))


def train(
  key: jax.Array,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  x: Any,
  y: Any,
  *,
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
  progress: bool = True,
) -> tuple[TrainState, History]:
  """Trains a linen model with minibatch gradient descent; returns the state and history.

  Each epoch shuffles the training rows with a key split from the state's key
  and runs ``len(train) // batch_size`` optimizer steps in one jitted
  ``lax.scan`` (the remainder, fewer than one batch, is left out of that
  epoch; a fresh shuffle next epoch). Dropout is on and BatchNorm uses batch
  statistics in training (``model(x, train=True)``); validation runs with
  ``train=False``. The model is called as ``model.apply(variables, x,
  train=...)``, as jaxuq's reference models are.

  The key is used, in this order, for the validation split (only with
  ``val_fraction`` and ``val_split='random'``), then
  ``init_key, state.key = split(key)``. The same key and settings give the
  same result bit for bit, also when resumed from a checkpoint.

  Args:
    key: typed PRNG key.
    model: a linen module whose ``__call__`` takes ``train``.
    optimizer: any optax ``GradientTransformation``.
    x: inputs ``(n, ...)``.
    y: targets ``(n, ...)`` (integer labels ``(n,)`` for ``'cross_entropy'``).
    loss: ``'mse'``, ``'gaussian_nll'`` (two outputs: mean, raw variance),
      ``'cross_entropy'`` (logits; accuracy is tracked too), or a callable
      ``loss(outputs, y_batch) -> (batch,)``.
    epochs: number of passes over the training rows.
    batch_size: rows per optimizer step (Keras's default is 32).
    val_fraction: fraction of the rows held out for validation, in ``[0, 1)``.
    val_split: ``'random'`` (drawn from ``key``) or ``'last'`` (the last rows,
      as Keras's ``validation_split`` does).
    validation_data: an explicit ``(x_val, y_val)`` instead of ``val_fraction``.
    patience: stop after this many epochs without a validation-loss
      improvement larger than ``min_delta`` (``None``: never stop early).
    min_delta: the least decrease of the validation loss that counts.
    restore_best: with ``patience``, return the state of the best epoch.
    loop: ``'scan'`` (one jitted call per epoch) or ``'python'`` (a Python
      loop of jitted steps; the same arithmetic, for comparison).
    eval_batch_size: rows per forward pass in validation.
    checkpoint: a file path; if it exists, training resumes from it (the same
      data and settings are required, ``epochs`` may grow); it is rewritten
      atomically every ``checkpoint_every`` epochs and at the end.
    checkpoint_every: epochs between checkpoints.
    progress: show a tqdm progress bar over epochs.

  Returns:
    ``(state, history)``: the final ``TrainState`` (the best one with
    ``patience`` and ``restore_best``) and a dict of per-epoch arrays:
    ``'loss'`` (mean training loss over the epoch's steps, dropout on),
    ``'accuracy'`` (classifiers), ``'val_loss'``, ``'val_accuracy'`` (with
    validation).

  Raises:
    TypeError: ``key`` is not a typed key, ``optimizer`` not an optax transformation.
    ValueError: a non-positive ``epochs``/``batch_size``, ``batch_size`` larger
      than the training rows, ``x`` and ``y`` of different lengths,
      ``val_fraction`` outside ``[0, 1)``, outputs the loss cannot compare with
      ``y``, or a checkpoint of another configuration.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxuq.models import MLP
    >>> from jaxuq.train import train
    >>> x = jnp.linspace(-1, 1, 64)[:, None]
    >>> state, history = train(jax.random.key(0), MLP(width=16, depth=2, rate=0.1),
    ...                        optax.adam(1e-2), x, x**2, epochs=5, batch_size=16,
    ...                        progress=False)
    >>> history['loss'].shape
    (5,)
  """
  x, y = check_common(
    key, optimizer, x, y, epochs=epochs, batch_size=batch_size, val_fraction=val_fraction,
    val_split=val_split, validation_data=validation_data, patience=patience,
    checkpoint_every=checkpoint_every,
  )  # fmt: skip
  check_positive_int(eval_batch_size, "eval_batch_size")
  if loop not in LOOPS:
    raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
  loss_fn, classifier = resolve_loss(loss)
  n = x.shape[0]
  rows = np.arange(n)
  x_val = y_val = None
  if val_fraction:
    if val_split == "random":
      split_key, key = jax.random.split(key)
    else:
      split_key = key
    rows, val_rows = split_validation(split_key, n, val_fraction, val_split)
    x_val, y_val = x[val_rows], y[val_rows]
  elif validation_data is not None:
    x_val, y_val = (jnp.asarray(a) for a in validation_data)
  check_batch_size(batch_size, len(rows))
  state = init_state(key, model, optimizer, x[:1])
  check_loss_shapes(model, state.variables, loss_fn, x, y, batch_size)
  if x_val is not None:
    check_loss_shapes(model, state.variables, loss_fn, x_val, y_val, batch_size)

  num_batches = len(rows) // batch_size
  epoch = make_run_epoch(model, optimizer, loss_fn, classifier, num_batches, batch_size, loop)
  idx, count = jnp.asarray(rows, jnp.int32), jnp.asarray(len(rows), jnp.int32)

  def run_epoch(state: TrainState, active: jax.Array):
    del active  # one model: the loop stops instead
    return epoch(state, x, y, idx, count)

  evaluate = None
  if x_val is not None:
    evaluate_fn = jitted_evaluate(model, loss_fn, classifier, eval_batch_size)
    weights = jnp.ones(x_val.shape[0], jnp.float32)

    def evaluate(state: TrainState):
      return evaluate_fn(state.variables, x_val, y_val, weights)

  cfg = LoopConfig(
    epochs=epochs,
    patience=patience,
    min_delta=float(min_delta),
    restore_best=bool(restore_best),
    checkpoint=None if checkpoint is None else pathlib.Path(checkpoint),
    checkpoint_every=checkpoint_every,
    progress=progress,
    description=f"train {type(model).__name__}",
    fingerprint=_fingerprint(model, x, y, x_val, batch_size, loss, val_fraction, val_split),
  )
  return run_loop(cfg, state, run_epoch, evaluate)


def _fingerprint(model, x, y, x_val, batch_size, loss, val_fraction, val_split) -> dict[str, Any]:
  """Facts a checkpoint must agree with to be resumed (cheap, no hashing of data)."""
  return {
    "model": repr(model),
    "x": [list(x.shape), str(x.dtype)],
    "y": [list(y.shape), str(y.dtype)],
    "x_val": None if x_val is None else list(x_val.shape),
    "batch_size": batch_size,
    "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", repr(loss)),
    "val_fraction": val_fraction,
    "val_split": val_split,
  }
