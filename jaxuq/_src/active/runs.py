"""The host side of the loop: runs side by side, round by round, with checkpoints and a bar.

Each round is one ``run_round`` for all runs at once (its jitted programs
``vmap`` over the runs), then a few numbers to the host for the history and
the progress bar, and an atomic checkpoint of every run's carry with the history
so far. Round ``r`` of a run uses the key ``fold_in(rounds_key, r)``, so a
run resumed after round ``r`` computes exactly what it would have computed
without the interruption: the resumed history and parameters are identical
bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxuq._src.active.labelled import labelled_set
from jaxuq._src.active.round import Carry, RoundConfig, fresh_state, run_round
from jaxuq._src.checkpoint import read_metadata, restore_checkpoint, save_checkpoint
from jaxuq._src.loop import show_progress
from jaxuq._src.static import without_later_keys

History = dict[str, np.ndarray]
INTEGER_RECORDS = ("acquired", "num_labelled")


def jsonable(value: Any) -> Any:
  """``value`` as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(value))


def check_fingerprint(path: pathlib.Path, found: Any, expected: dict[str, Any]) -> None:
  """Raises unless a checkpoint was written by this configuration, naming what differs.

  A checkpoint written before an entry of ``static.LATER_KEYS`` entered the
  fingerprint (the runs' keys, the deep digests) is checked on the rest.
  """
  expected = without_later_keys(found, expected)
  if found == expected:
    return
  differ = sorted(k for k in expected if not isinstance(found, dict) or found.get(k) != expected[k])
  if "options" in differ and isinstance(found, dict) and isinstance(found.get("options"), dict):
    was, now = found["options"], expected["options"]
    names = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    details = "; ".join(f"{k}: {was.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in names)
    differ[differ.index("options")] = f"options ({details})"
  raise ValueError(
    f"checkpoint {path} was written by a different active-learning run (it differs in "
    f"{', '.join(differ) or 'its format'}); resume with the same data, key and settings, "
    "or use another checkpoint path"
  )


@dataclasses.dataclass(frozen=True)
class Plan:
  """The host-side settings: how many acquisitions, where to checkpoint, what to show."""

  acquisitions: int
  checkpoint: pathlib.Path | None
  progress: bool | None
  description: str
  fingerprint: dict[str, Any]
  callback: Callable[[int, dict[str, np.ndarray]], None] | None = None
  stop_after: int | None = None  # rounds in all (with the checkpoint's), None: every round


def initial_carry(
  keys: jax.Array, model: Any, optimizer: Any, x0: jax.Array, seeds: np.ndarray,
  which: np.ndarray, pool_size: int, capacity: int, members: int | None = None,
) -> tuple[Carry, jax.Array]:  # fmt: skip
  """Every run's first carry, and its rounds key: ``init_key, rounds_key = split(run_key)``."""
  split = jax.vmap(jax.random.split)(keys)
  states = jax.vmap(lambda k: fresh_state(k, model, optimizer, x0, members))(split[:, 0])
  labelled = jax.vmap(lambda s: labelled_set(s, pool_size, capacity))(jnp.asarray(seeds))
  return Carry(states, labelled, jnp.asarray(which, jnp.int32)), split[:, 1]


def _round_keys(rounds_keys: jax.Array, r: int) -> jax.Array:
  return jax.vmap(lambda k: jax.random.fold_in(k, r))(rounds_keys)


def run_rounds(
  cfg: RoundConfig, plan: Plan, carry: Carry, rounds_keys: jax.Array, data: tuple[jax.Array, ...]
) -> tuple[Carry, History]:
  """Runs ``plan.acquisitions`` acquisitions and one last training for every run.

  With ``plan.stop_after`` it stops after that many rounds in all (those the
  checkpoint already holds included), checkpointed, so a later call with the
  same checkpoint goes on from there.

  Returns:
    ``(carry, history)``: the carries after the last training done (the
    labelled sets hold every acquisition so far) and the history, each entry
    with the run axis second: ``(rounds, runs)`` per-round numbers, ``rounds
    = acquisitions + 1`` unless stopped early, and ``acquired`` ``(rounds
    acquiring, runs, k)``.
  """
  history: dict[str, list] = {}
  start = 0
  if plan.checkpoint is not None and plan.checkpoint.exists():
    # the settings first: another run's arrays (another capacity) would fail to restore
    # with a shape error that never says which setting differs
    found = read_metadata(plan.checkpoint).get("fingerprint")
    check_fingerprint(plan.checkpoint, found, jsonable(plan.fingerprint))
    tree, meta = restore_checkpoint(plan.checkpoint, {"carry": carry})
    carry, start = tree["carry"], int(meta["round"])
    history = {k: [np.asarray(v) for v in vals] for k, vals in meta["history"].items()}
    if start > plan.acquisitions + 1:
      raise ValueError(
        f"checkpoint {plan.checkpoint} already holds {start - 1} acquisitions, more than "
        f"acquisitions={plan.acquisitions}: pass at least {start - 1}, or use another path"
      )
  end = (
    plan.acquisitions + 1
    if plan.stop_after is None
    else min(plan.stop_after, plan.acquisitions + 1)
  )
  bar = tqdm(
    total=end, initial=min(start, end), disable=not show_progress(plan.progress),
    desc=plan.description, unit="round",
  )  # fmt: skip
  with bar:
    for r in range(start, end):
      last = r == plan.acquisitions  # the last round trains and evaluates, acquires nothing
      new, record = run_round(cfg, _round_keys(rounds_keys, r), carry, data, last)
      host = {k: np.asarray(v) for k, v in jax.device_get(record).items()}
      for name, value in host.items():
        history.setdefault(name, []).append(value)
      carry = new
      bar.update(1)
      bar.set_postfix(test_error=f"{np.mean(host['test_error']):.4f}")
      if plan.checkpoint is not None:
        meta = {
          "round": r + 1,
          "history": {k: [np.asarray(v).tolist() for v in vals] for k, vals in history.items()},
          "fingerprint": jsonable(plan.fingerprint),
        }
        save_checkpoint(plan.checkpoint, {"carry": carry}, meta)
      if plan.callback is not None:
        plan.callback(r, host)
  return carry, stack_history(history, carry.which.shape[0], cfg.acquisition_size)


def stack_history(history: dict[str, list], runs: int, acquisition_size: int) -> History:
  """The rounds' records as arrays ``(rounds, runs, ...)``: float32, integer counts and rows."""
  out = {
    k: np.stack([np.asarray(x) for x in v]).astype(np.int32 if k in INTEGER_RECORDS else np.float32)
    for k, v in history.items()
  }
  if "acquired" not in out:
    out["acquired"] = np.zeros((0, runs, acquisition_size), np.int32)
  return out


def checkpoint_history(path: str | os.PathLike) -> History:
  """The history saved in an active-learning checkpoint, read without the model or the data.

  For a long job's partial results: the rounds done so far, read from the
  checkpoint file itself (its integrity hash checked).

  Args:
    path: a ``checkpoint`` of :func:`jaxuq.active.active_learning` or
      :func:`jaxuq.active.active_learning_runs` (side by side: the one file;
      one by one: each run's ``<checkpoint>.runN``).

  Returns:
    The history of :func:`jaxuq.active.active_learning` for the rounds done,
    with a run axis after the round axis: one run, or side by side every
    function x repeat, run ``f * repeats + r``. ``test_error`` etc. have
    shape ``(rounds, runs)``, ``acquired`` ``(acquisitions_done, runs,
    acquisition_size)``.

  Raises:
    FileNotFoundError: there is no checkpoint at ``path``.
    ValueError: the file is corrupted, not a jaxuq checkpoint, or not one of
      the active-learning loop.
  """
  meta = read_metadata(path)
  history, options = meta.get("history"), meta.get("fingerprint", {}).get("options", {})
  if not isinstance(history, dict) or "test_error" not in history or "round" not in meta:
    raise ValueError(
      f"{path} is a jaxuq checkpoint, but not one of the active-learning loop (its metadata "
      f"holds {sorted(meta)}); read it with the function that wrote it"
    )
  runs = len(history["test_error"][0]) if history["test_error"] else 0
  return stack_history(history, runs, int(options.get("acquisition_size", 0)))
