"""The host-side epoch loop shared by ``train`` and ``train_ensemble``.

Per epoch it makes one jitted call (the epoch), one evaluation, a few scalars
to the host for the history, the progress bar and early stopping, and
optionally an atomic checkpoint. It works for one model (metrics are scalars)
and for N stacked members (metrics have shape ``(N,)``; a member that stops
early is frozen while the others go on).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import pathlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxuq._src.checkpoint import read_metadata, restore_checkpoint, save_checkpoint
from jaxuq._src.keys import check_key, check_positive_int
from jaxuq._src.metrics._checks import _all_finite, as_jax
from jaxuq._src.static import without_later_keys
from jaxuq._src.training import select_members

History = dict[str, np.ndarray]
VAL_SPLITS = ("random", "last")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Settings of the epoch loop (see ``train`` for their meaning)."""

  epochs: int
  patience: int | None = None
  min_delta: float = 0.0
  restore_best: bool = True
  checkpoint: pathlib.Path | None = None
  checkpoint_every: int = 1
  progress: bool | None = None
  description: str = "train"
  fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_common(
  key: Any,
  optimizer: Any,
  x: Any,
  y: Any,
  *,
  epochs: Any,
  batch_size: Any,
  val_fraction: Any,
  val_split: str,
  validation_data: Any,
  patience: Any,
  checkpoint_every: Any,
) -> tuple[jax.Array, jax.Array]:
  """Validates the settings shared by ``train`` and ``train_ensemble``; returns ``x, y`` as arrays."""
  check_key(key)
  if not isinstance(optimizer, optax.GradientTransformation):
    fix = (
      f"; pass {type(optimizer).__name__}(...).gradient_transformation()"
      if hasattr(optimizer, "gradient_transformation")  # optax.MultiSteps
      else ""
    )
    raise TypeError(
      f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
      f"got {type(optimizer).__name__}{fix}"
    )
  check_positive_int(epochs, "epochs")
  check_positive_int(batch_size, "batch_size")
  check_positive_int(checkpoint_every, "checkpoint_every")
  if patience is not None:
    check_positive_int(patience, "patience")
  x, y = as_jax(x, "x"), as_jax(y, "y")  # int64 labels beyond int32 refused, not wrapped
  if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
    raise ValueError(
      f"x and y must have the same number of rows, got x of shape {x.shape} and y of shape {y.shape}"
    )
  _check_finite_rows(x, "x")
  _check_finite_rows(y, "y")
  if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
    raise TypeError(f"val_fraction must be a float in [0, 1), got {val_fraction!r}")
  if not 0.0 <= float(val_fraction) < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
  if val_split not in VAL_SPLITS:
    raise ValueError(f"val_split must be one of {VAL_SPLITS}, got {val_split!r}")
  if validation_data is not None:
    if val_fraction:
      raise ValueError("give either validation_data or val_fraction, not both")
    if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
      raise TypeError("validation_data must be a pair (x_val, y_val)")
    for a, name in zip(validation_data, ("x_val", "y_val"), strict=True):
      _check_finite_rows(as_jax(a, name), f"validation_data's {name}")
    rows = [np.shape(a)[0] if np.ndim(a) else None for a in validation_data]
    if None in rows or rows[0] != rows[1] or rows[0] == 0:
      raise ValueError(
        "validation_data must be (x_val, y_val) with the same number of rows, at least one, "
        f"got shapes {np.shape(validation_data[0])} and {np.shape(validation_data[1])}"
      )
  return x, y


def _check_finite_rows(a: jax.Array, name: str) -> None:
  """Raises if a floating array holds nan or inf (a nan target gives nan losses, silently)."""
  if jnp.issubdtype(a.dtype, jnp.inexact) and a.size and not bool(_all_finite(a)):
    bad = int(np.asarray(~jnp.isfinite(a)).reshape(a.shape[0], -1).any(axis=1).sum())
    raise ValueError(
      f"{name} must be finite, got nan or inf in {bad} of its {a.shape[0]} rows; drop or "
      "impute those rows first"
    )


def check_min_delta(min_delta: Any) -> float:
  """``min_delta`` as a float, or raises unless it is finite and >= 0."""
  if (
    isinstance(min_delta, bool)
    or not isinstance(min_delta, numbers.Real)
    or not 0.0 <= float(min_delta) < float("inf")
  ):
    raise ValueError(
      f"min_delta must be a finite float >= 0 (how much the validation loss must fall to "
      f"count as better), got {min_delta!r}"
    )
  return float(min_delta)


def split_validation(
  key: jax.Array, n: int, val_fraction: float, val_split: str
) -> tuple[np.ndarray, np.ndarray]:
  """Returns ``(train_rows, val_rows)``: a random split drawn from ``key`` or the last rows.

  ``max(1, round(n * val_fraction))`` rows are held out (Python's ``round``,
  half to even). Keras's ``validation_split`` holds out ``n - int(n * (1 -
  val_fraction))``, which can be one more (10 rows at 0.25: 2 here, 3 there);
  the rule is kept as it is, since recorded runs depend on it.
  """
  n_val = max(1, round(n * val_fraction))
  if n_val >= n:
    raise ValueError(f"val_fraction={val_fraction} leaves no training rows out of {n}")
  if val_split == "last":
    return np.arange(n - n_val), np.arange(n - n_val, n)
  perm = np.asarray(jax.random.permutation(key, n))
  return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def check_batch_size(batch_size: int, n_train: int, what: str = "training rows") -> None:
  if batch_size > n_train:
    raise ValueError(
      f"batch_size={batch_size} is larger than the {n_train} {what}; lower batch_size"
    )


def _to_host(metrics: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  return {k: np.asarray(v, np.float64) for k, v in jax.device_get(metrics).items()}


def run_loop(
  cfg: LoopConfig,
  state: Any,
  run_epoch: Callable[[Any, jax.Array], tuple[Any, dict[str, jax.Array]]],
  evaluate: Callable[[Any], dict[str, jax.Array]] | None,
  num_members: int | None = None,
) -> tuple[Any, History]:
  """Runs ``cfg.epochs`` epochs; returns the final (or best) state and the history.

  Args:
    cfg: loop settings.
    state: the initial state (one model, or members stacked on axis 0).
    run_epoch: ``(state, active) -> (state, metrics)``, jitted; ``active``
      (``(num_members,)`` bool) tells which members still train.
    evaluate: ``state -> validation metrics``, or ``None`` without validation.
    num_members: ``None`` for one model, else the number of stacked members.

  Returns:
    ``(state, history)``; history maps each metric name to an array of shape
    ``(epochs_run,)`` or ``(epochs_run, num_members)`` (NaN after a member stopped).
  """
  batch_shape: tuple[int, ...] = () if num_members is None else (num_members,)
  if cfg.patience is not None and evaluate is None:
    raise ValueError(
      "patience (early stopping) needs validation: give val_fraction or validation_data"
    )
  history: dict[str, list] = {}
  best_val = np.full(batch_shape, np.inf)
  wait = np.zeros(batch_shape, np.int64)
  active = np.ones(batch_shape, bool)
  best = state if cfg.patience is not None else None
  start = 0
  if cfg.checkpoint is not None and cfg.checkpoint.is_dir():
    raise ValueError(
      f"checkpoint must be a file path (e.g. {cfg.checkpoint / 'run.msgpack'}), got the folder "
      f"{cfg.checkpoint}"
    )
  if cfg.checkpoint is not None and cfg.checkpoint.exists():
    target = {"state": state, "best": state} if best is not None else {"state": state}
    # The fingerprint first: another optimizer's state would fail the restore with a
    # tree-structure error instead of naming what differs.
    found = read_metadata(cfg.checkpoint).get("fingerprint")
    _check_fingerprint(cfg.checkpoint, found, _jsonable(cfg.fingerprint))
    tree, meta = restore_checkpoint(cfg.checkpoint, target)
    state, best = tree["state"], tree.get("best")
    start = int(meta["epoch"])
    if start > cfg.epochs:
      raise ValueError(
        f"checkpoint {cfg.checkpoint} already holds {start} epochs, more than epochs="
        f"{cfg.epochs}: pass epochs >= {start} to continue it (epochs={start} returns it as "
        "it is), or use another checkpoint path"
      )
    history = {k: [np.asarray(v, np.float64) for v in vals] for k, vals in meta["history"].items()}
    best_val = np.asarray(meta["best_val"], np.float64).reshape(batch_shape)
    wait = np.asarray(meta["wait"], np.int64).reshape(batch_shape)
    active = np.asarray(meta["active"], bool).reshape(batch_shape)

  bar = tqdm(
    total=cfg.epochs,
    initial=start,
    disable=not show_progress(cfg.progress),
    desc=cfg.description,
    unit="epoch",
  )
  epoch = start
  with bar:
    while epoch < cfg.epochs and active.any():
      new_state, metrics = run_epoch(state, jnp.asarray(active))
      record = _to_host(metrics)
      if evaluate is not None:
        record.update(_to_host(evaluate(new_state)))
      for name, value in record.items():
        history.setdefault(name, []).append(np.where(active, value, np.nan))
      state = new_state
      epoch += 1
      if cfg.patience is not None:
        val = record["val_loss"]
        improved = active & (val < best_val - cfg.min_delta)
        best_val = np.where(improved, val, best_val)
        wait = np.where(improved, 0, wait + active)
        best = state if num_members is None and improved else best
        if num_members is not None:
          best = select_members(jnp.asarray(improved), state, best)
        active = active & (wait < cfg.patience)
      bar.update(1)
      bar.set_postfix({k: f"{_finite_mean(v):.4g}" for k, v in record.items()})
      last = epoch == cfg.epochs or not active.any()
      if cfg.checkpoint is not None and (epoch % cfg.checkpoint_every == 0 or last):
        tree = {"state": state, "best": best} if best is not None else {"state": state}
        meta = {
          "epoch": epoch,
          "history": {k: [np.asarray(v).tolist() for v in vals] for k, vals in history.items()},
          "best_val": best_val.tolist(),
          "wait": wait.tolist(),
          "active": active.tolist(),
          "fingerprint": _jsonable(cfg.fingerprint),
        }
        save_checkpoint(cfg.checkpoint, tree, meta)
  if best is not None and cfg.restore_best:
    state = _restored(state, best, best_val, num_members)
  return state, {k: np.stack(v) for k, v in history.items()}


def _restored(state: Any, best: Any, best_val: np.ndarray, num_members: int | None) -> Any:
  """The best state, except where the validation loss never was finite: the last state there.

  ``best`` starts as the initial state; a run whose validation loss is nan in
  every epoch (an empty out-of-bag set, a diverged model) would otherwise come
  back untrained.
  """
  never = ~np.isfinite(best_val)
  if not never.any():
    return best
  which = "the run" if num_members is None else f"members {np.flatnonzero(never).tolist()}"
  warnings.warn(
    f"restore_best: the validation loss of {which} was never finite (nan or inf in every "
    "epoch: an empty or non-finite validation set, or a diverged model), so there is no best "
    "epoch; returning the last state there instead of the untrained one",
    stacklevel=4,
  )
  if num_members is None:
    return state
  return select_members(jnp.asarray(~never), best, state)


def _finite_mean(values: np.ndarray) -> float:
  """The mean of the finite entries (nan if none), without NumPy's empty-slice warning."""
  finite = np.asarray(values)[np.isfinite(values)]
  return float(finite.mean()) if finite.size else float("nan")


def show_progress(progress: bool | None) -> bool:
  """Whether to draw a progress bar: ``None`` means only when stderr is a terminal.

  A bar redrawn into a log file (CI, a batch job) floods it with one line per
  refresh; ``progress=True`` forces it there anyway, ``False`` turns it off.
  """
  if progress is None:
    return sys.stderr.isatty()
  return bool(progress)


def _check_fingerprint(path: pathlib.Path, found: Any, expected: Any) -> None:
  """Raises unless a checkpoint's fingerprint is that of the current run, naming what differs."""
  if isinstance(expected, dict):
    expected = without_later_keys(found, expected)
  if found == expected:
    return
  if isinstance(found, dict) and isinstance(expected, dict):
    differ = sorted(k for k in found.keys() | expected.keys() if found.get(k) != expected.get(k))
  else:
    differ = ["(no fingerprint)"]
  differ = [_WHAT.get(k, k) for k in differ]
  raise ValueError(
    f"checkpoint {path} was written by a different configuration (it differs in "
    f"{', '.join(differ)}: the data, key or settings are not those of this run); resume with "
    "the same ones, or use another checkpoint path"
  )


_WHAT = {
  "python_code": "python_code (the bytecode of the optimizer's, the loss's or the model's "
  "functions: an operator or a call changed)",
}


def _jsonable(value: Any) -> Any:
  """``value`` as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(value))
