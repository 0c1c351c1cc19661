"""The one training engine behind ``train`` (one model) and ``train_ensemble`` (N members).

Both public functions validate nothing themselves: they pack their arguments
into :class:`Settings` (and :class:`Members` for an ensemble) and call
:func:`fit`, which checks every setting before any heavy work, splits the key,
draws the validation rows and the members' subsets, initialises the state(s),
computes the resume fingerprint (in one place: :func:`resume_fingerprint`) and
runs the epoch loop of ``loop.py`` with the module-level jitted epoch of
``training.py``. One model is the case ``members is None``: no member axis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq._src.keys import check_positive_int
from jaxuq._src.loop import (
  History,
  LoopConfig,
  check_batch_size,
  check_common,
  check_min_delta,
  run_loop,
  split_validation,
)
from jaxuq._src.losses import LossFn, Objective, check_labels, resolve_loss
from jaxuq._src.model_call import check_linen, mode_flag, mode_kwargs
from jaxuq._src.static import digest, model_entries, value_entries
from jaxuq._src.subsets import SUBSETS, member_subsets
from jaxuq._src.training import EPOCHS, MEMBER_LOOPS, TrainState, evaluate, init_state

LOOPS = tuple(EPOCHS)


@dataclasses.dataclass(frozen=True)
class Settings:
  """The settings shared by ``train`` and ``train_ensemble`` (see ``train`` for their meaning)."""

  loss: str | LossFn
  epochs: int
  batch_size: int
  val_fraction: float
  val_split: str
  validation_data: tuple[Any, Any] | None
  patience: int | None
  min_delta: float
  restore_best: bool
  loop: str
  eval_batch_size: int
  checkpoint: str | os.PathLike | None
  checkpoint_every: int
  progress: bool | None


@dataclasses.dataclass(frozen=True)
class Members:
  """The ensemble's settings (see ``train_ensemble``)."""

  num_members: int
  subsets: str
  holdout_validation: bool
  member_loop: str


def check_loss_shapes(
  state: TrainState, objective: Objective, x: Any, y: Any, batch_size: int, labels: str = "y"
) -> None:
  """Traces the model and the loss on one batch (no computation); raises a clear error on mismatch.

  For cross-entropy it also checks that the labels are integers in
  ``[0, classes)`` (all of them, on the host). A model may return a pytree
  (a tuple ``(mean, variance)``) for a custom loss that takes one.
  """
  model, xb, yb = state.model, x[:batch_size], y[:batch_size]
  out = None
  try:
    flag = mode_kwargs(model, False)
    out = jax.eval_shape(lambda v, a: model.apply(v, a, **flag), state.variables, xb)
    if objective.classifier and not hasattr(out, "shape"):
      raise TypeError(
        "a classification loss needs the model to return one array of logits; return the "
        "logits alone, or pass your own loss callable"
      )
    per_example = jax.eval_shape(lambda o, t: objective(o, t), out, yb)
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"the loss cannot compare the model's outputs ({_shapes(out)} for a batch of x "
      f"{xb.shape}) with {labels} of shape {yb.shape}: {e}"
    ) from e
  if getattr(per_example, "shape", None) != (xb.shape[0],):
    raise ValueError(
      f"the loss must return one value per example, shape ({xb.shape[0]},) for a batch of "
      f"{xb.shape[0]}, got {getattr(per_example, 'shape', type(per_example).__name__)} (outputs "
      f"{_shapes(out)}, {labels} {yb.shape}): reduce every axis but the first, e.g. "
      "jnp.square(out - y).reshape(len(out), -1).mean(-1); a scalar mean would weigh a short "
      "last batch wrongly, and a (batch, batch) result means out and y broadcast"
    )
  if xb.shape[0] >= 2:
    _check_loss_per_example(objective, out, yb[:2], labels)
  if objective.classifier:
    check_labels(y, out.shape[-1], labels)


def _shapes(out: Any) -> str:
  """The shape(s) of the model's outputs, for messages: ``(8, 1)`` or a tree of shapes."""
  if out is None:
    return "shape ?"
  if hasattr(out, "shape"):
    return f"shape {tuple(out.shape)}"
  return f"shapes {jax.tree.map(lambda a: tuple(getattr(a, 'shape', ())), out)}"


def _check_loss_per_example(objective: Objective, out: Any, y2: Any, labels: str) -> None:
  """Raises if example 0's loss changes with example 1's output (a loss that broadcasts).

  ``(out - y) ** 2`` with outputs ``(b, 1)`` and ``y`` of shape ``(b,)`` is
  ``(b, b)``: its mean over the last axis has the right shape and the wrong value.
  For a pytree of outputs every leaf is moved at example 1 (skipped when a leaf
  has no example axis).
  """
  leaves = jax.tree.leaves(out)
  if not leaves or any(getattr(a, "ndim", 0) == 0 or a.shape[0] < 2 for a in leaves):
    return

  def probe(a):
    size = 2 * int(np.prod(a.shape[1:], dtype=np.int64))
    return jnp.linspace(0.2, 0.8, size, dtype=a.dtype).reshape((2, *a.shape[1:]))

  o = jax.tree.map(probe, out)
  first = objective(o, y2)[0]
  moved = objective(jax.tree.map(lambda a: a.at[1].add(jnp.asarray(0.5, a.dtype)), o), y2)[0]
  if bool(first != moved) and bool(jnp.isfinite(first)):
    raise ValueError(
      f"the loss mixes examples: example 0's value changed when only example 1's output did "
      f"(outputs {_shapes(out)}, {labels} rows {y2.shape[1:]}); "
      f"outputs and {labels} likely broadcast against each other, e.g. (b, 1) - (b,) is "
      "(b, b). Give them the same shape (y[:, None], or out[:, 0])"
    )


def _array_fingerprint(a: Any) -> list[Any] | None:
  if a is None:
    return None
  h = np.asarray(a)
  return [
    list(h.shape),
    str(h.dtype),
    hashlib.sha256(np.ascontiguousarray(h).tobytes()).hexdigest(),
  ]


def resume_fingerprint(
  key: jax.Array,
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  validation: tuple[Any, Any] | None,
  settings: Settings,
  members: Members | None,
) -> dict[str, Any]:
  """Every fact that changes the result of a run; a checkpoint resumes only if they agree.

  The data (shape, dtype and sha256 of ``x``, ``y`` and the validation set),
  the key, the model, the optimizer's and the loss's settings (also the values
  their functions read of configuration objects, and their bytecode, compared
  only under the Python version that wrote it), the batch size,
  the validation split and early stopping, and the ensemble's settings.
  ``epochs`` is left out (a run may be continued to more epochs), and so are
  the settings that change only rounding or speed (``loop``,
  ``member_loop``, ``eval_batch_size``) or only what is shown or returned
  (``progress``, ``restore_best``, ``checkpoint_every``).
  """
  named = isinstance(settings.loss, str)
  return {
    "key": [str(jax.random.key_impl(key)), np.asarray(jax.random.key_data(key)).tolist()],
    **model_entries(state.model),
    **value_entries(state.tx.value, settings.loss, state.model),
    "optimizer": digest(state.tx.value),
    "optimizer_deep": digest(state.tx.value, deep=True),
    "loss": settings.loss if named else digest(settings.loss),
    "loss_deep": settings.loss if named else digest(settings.loss, deep=True),
    "x": _array_fingerprint(x),
    "y": _array_fingerprint(y),
    "validation_data": None
    if settings.validation_data is None
    else [_array_fingerprint(a) for a in validation or ()],
    "batch_size": settings.batch_size,
    "val_fraction": settings.val_fraction,
    "val_split": settings.val_split,
    "patience": settings.patience,
    "min_delta": settings.min_delta,
    "members": None
    if members is None
    else {
      "num_members": members.num_members,
      "subsets": members.subsets,
      "holdout_validation": members.holdout_validation,
    },
  }


def _check(
  model: Any, optimizer: Any, x: Any, y: Any, key: Any, s: Settings, m: Members | None
) -> tuple[jax.Array, jax.Array, Settings, Members | None]:
  """Validates every setting; returns ``x, y`` as arrays and the settings normalised.

  NumPy scalars (``np.int64(8)``, ``np.float32(0.25)``) are accepted and become
  Python ints and floats (a checkpoint's fingerprint is JSON); bools are refused
  where ints are meant.
  """
  check_linen(model)
  mode_flag(model)  # raises, naming the fix, for a model with neither `train` nor `deterministic`
  x, y = check_common(
    key, optimizer, x, y, epochs=s.epochs, batch_size=s.batch_size, val_fraction=s.val_fraction,
    val_split=s.val_split, validation_data=s.validation_data, patience=s.patience,
    checkpoint_every=s.checkpoint_every,
  )  # fmt: skip
  check_positive_int(s.eval_batch_size, "eval_batch_size")
  min_delta = check_min_delta(s.min_delta)
  if s.loop not in LOOPS:
    raise ValueError(f"loop must be one of {LOOPS}, got {s.loop!r}")
  if s.progress is not None and not isinstance(s.progress, bool):
    raise TypeError(
      f"progress must be True, False or None (a bar only on a terminal), got {s.progress!r}"
    )
  if m is not None:
    check_positive_int(m.num_members, "num_members")
    if m.subsets not in SUBSETS:
      raise ValueError(f"subsets must be one of {SUBSETS}, got {m.subsets!r}")
    if m.member_loop not in MEMBER_LOOPS:
      raise ValueError(f"member_loop must be one of {MEMBER_LOOPS}, got {m.member_loop!r}")
    m = dataclasses.replace(m, num_members=int(m.num_members))
  s = dataclasses.replace(
    s, epochs=int(s.epochs), batch_size=int(s.batch_size), val_fraction=float(s.val_fraction),
    patience=None if s.patience is None else int(s.patience), min_delta=min_delta,
    eval_batch_size=int(s.eval_batch_size), checkpoint_every=int(s.checkpoint_every),
  )  # fmt: skip
  return x, y, s, m


def fit(
  key: jax.Array,
  model: Any,
  optimizer: Any,
  x: Any,
  y: Any,
  settings: Settings,
  members: Members | None = None,
) -> tuple[TrainState, History]:
  """Trains one model (``members=None``) or an ensemble; see ``train`` and ``train_ensemble``."""
  x, y, s, m = _check(model, optimizer, x, y, key, settings, members)
  objective = resolve_loss(s.loss)
  n = x.shape[0]
  if m is None:
    split_key = init_key = key
    if s.val_fraction and s.val_split == "random":
      split_key, init_key = jax.random.split(key)
  else:
    subset_key, split_key, init_key = jax.random.split(key, 3)
  rows = np.arange(n)
  validation = None
  if s.val_fraction:
    rows, val_rows = split_validation(split_key, n, s.val_fraction, s.val_split)
    validation = (x[val_rows], y[val_rows])
  elif s.validation_data is not None:
    validation = (jnp.asarray(s.validation_data[0]), jnp.asarray(s.validation_data[1]))

  if m is None:
    check_batch_size(s.batch_size, len(rows))
    idx, count = jnp.asarray(rows, jnp.int32), jnp.asarray(len(rows), jnp.int32)
    num_batches = len(rows) // s.batch_size
    state = init_state(init_key, model, optimizer, x[:1])
    one = state
  else:
    subsets = member_subsets(subset_key, len(rows), m.num_members, m.subsets)
    check_batch_size(s.batch_size, int(subsets.counts.min()), "training rows of a member")
    idx, count = jnp.asarray(rows[subsets.indices], jnp.int32), jnp.asarray(subsets.counts)
    num_batches = int(subsets.counts.min()) // s.batch_size
    member_keys = jax.random.split(init_key, m.num_members)
    state = jax.vmap(lambda k: init_state(k, model, optimizer, x[:1]))(member_keys)
    one = jax.tree.map(lambda a: a[0], state)
  check_loss_shapes(one, objective, x, y, s.batch_size)
  if validation is not None:
    check_loss_shapes(one, objective, *validation, s.batch_size, "the validation targets")

  member_loop = None if m is None else m.member_loop
  epoch_fn = EPOCHS[s.loop]

  def run_epoch(state: TrainState, active: jax.Array):
    return epoch_fn(
      state, active, x, y, idx, count, objective=objective, num_batches=num_batches,
      batch_size=s.batch_size, member_loop=member_loop,
    )  # fmt: skip

  eval_data: tuple[jax.Array, jax.Array, jax.Array] | None = None
  if validation is not None:
    eval_data = (*validation, jnp.ones(validation[0].shape[0], jnp.float32))
  elif m is not None and m.holdout_validation and m.subsets != "none":
    weights = np.zeros((m.num_members, n), np.float32)
    weights[:, rows] = subsets.holdout
    eval_data = (x, y, jnp.asarray(weights))

  def validate(state: TrainState):
    assert eval_data is not None
    return evaluate(
      state.model,
      state.variables,
      *eval_data,
      objective=objective,
      batch_size=s.eval_batch_size,
      member_loop=member_loop,
    )

  name = type(model).__name__
  cfg = LoopConfig(
    epochs=s.epochs,
    patience=s.patience,
    min_delta=float(s.min_delta),
    restore_best=bool(s.restore_best),
    checkpoint=None if s.checkpoint is None else pathlib.Path(s.checkpoint),
    checkpoint_every=s.checkpoint_every,
    progress=s.progress,
    description=f"train {name}" if m is None else f"ensemble of {m.num_members} {name}",
    fingerprint={}
    if s.checkpoint is None
    else resume_fingerprint(key, one, x, y, validation, s, m),
  )
  return run_loop(
    cfg,
    state,
    run_epoch,
    None if eval_data is None else validate,
    num_members=None if m is None else m.num_members,
  )


def train(
  key: jax.Array,
  model: Any,
  optimizer: Any,
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
  progress: bool | None = None,
) -> tuple[TrainState, History]:
  """Trains a linen model with minibatch gradient descent; returns the state and history.

  Each epoch shuffles the training rows with a key split from the state's key
  and runs ``len(train) // batch_size`` optimizer steps in one jitted
  ``lax.scan`` (the remainder, fewer than one batch, is left out of that
  epoch; a fresh shuffle next epoch). Dropout is on and BatchNorm uses batch
  statistics in training; validation runs with dropout off. The model's
  ``__call__`` must take a mode flag, ``train: bool`` (as jaxuq's reference
  models do) or Flax's ``deterministic: bool``; training finds which in its
  signature. One jitted epoch serves every call: a fresh optimizer with the
  same settings (``optax.adam(1e-3)`` again) does not recompile.

  The key is used, in this order, for the validation split (only with
  ``val_fraction`` and ``val_split='random'``), then
  ``init_key, state.key = split(key)``. The same key and settings give the
  same result bit for bit, also when resumed from a checkpoint.

  Args:
    key: typed PRNG key.
    model: a ``flax.linen`` module whose ``__call__`` takes ``train`` or
      ``deterministic``.
    optimizer: any optax ``GradientTransformation``.
    x: inputs ``(n, ...)``.
    y: targets ``(n, ...)`` (integer labels in ``[0, classes)``, shape
      ``(n,)``, for ``'cross_entropy'``).
    loss: ``'mse'``, ``'gaussian_nll'`` (two outputs: mean, raw variance),
      ``'cross_entropy'`` (logits; accuracy is tracked too), or a callable
      ``loss(outputs, y_batch) -> (batch,)``.
    epochs: number of passes over the training rows.
    batch_size: rows per optimizer step (Keras's default is 32).
    val_fraction: fraction of the rows held out for validation, in ``[0, 1)``.
    val_split: ``'random'`` (drawn from ``key``) or ``'last'`` (the last rows,
      like Keras's ``validation_split``). Either way ``max(1, round(n *
      val_fraction))`` rows are held out (Python's ``round``, half to even),
      which can be one fewer than Keras's ``n - int(n * (1 - val_fraction))``:
      10 rows at 0.25 hold out 2 here, 3 in Keras.
    validation_data: an explicit ``(x_val, y_val)`` instead of ``val_fraction``.
    patience: stop after this many epochs without a validation-loss
      improvement larger than ``min_delta`` (``None``: never stop early).
    min_delta: the least decrease of the validation loss that counts.
    restore_best: with ``patience``, return the state of the best epoch.
    loop: ``'scan'`` (one jitted call per epoch) or ``'python'`` (a Python
      loop of jitted steps; the same arithmetic, for comparison).
    eval_batch_size: rows per forward pass in validation.
    checkpoint: a file path; if it exists, training resumes from it. Resuming
      requires the same data (compared by sha256), key and settings (a
      clear error otherwise); ``epochs`` may grow, and a checkpoint that
      already holds more epochs than ``epochs`` is refused (equal: it is
      returned as it is). It is rewritten atomically every
      ``checkpoint_every`` epochs and at the end.
    checkpoint_every: epochs between checkpoints.
    progress: a tqdm progress bar over epochs: ``None`` (default) draws it
      only when stderr is a terminal (no flood of lines in logs), ``True``
      always, ``False`` never.

  Returns:
    ``(state, history)``: the final ``TrainState`` (the best one with
    ``patience`` and ``restore_best``) and a dict of per-epoch arrays:
    ``'loss'`` (mean training loss over the epoch's steps, dropout on),
    ``'accuracy'`` (classifiers), ``'val_loss'``, ``'val_accuracy'`` (with
    validation).

  Raises:
    TypeError: ``key`` is not a typed key, ``optimizer`` not an optax
      transformation, ``model`` not a linen module or without a mode flag,
      labels for ``'cross_entropy'`` not integers.
    ValueError: a non-positive ``epochs``/``batch_size``, ``batch_size`` larger
      than the training rows, ``x`` and ``y`` of different lengths,
      ``val_fraction`` outside ``[0, 1)``, outputs the loss cannot compare with
      ``y``, class labels outside ``[0, classes)``, or a checkpoint of another
      configuration or with more epochs.

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
  settings = Settings(
    loss=loss, epochs=epochs, batch_size=batch_size, val_fraction=val_fraction,
    val_split=val_split, validation_data=validation_data, patience=patience,
    min_delta=min_delta, restore_best=restore_best, loop=loop, eval_batch_size=eval_batch_size,
    checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
  )  # fmt: skip
  return fit(key, model, optimizer, x, y, settings)
