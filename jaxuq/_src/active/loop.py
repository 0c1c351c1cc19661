"""The active-learning loop: ``active_learning`` (one run) and ``active_learning_runs`` (many).

From a labelled seed set, each round trains the model on the labelled pool
rows (from scratch, or warm from the previous round), evaluates it on the
test set, draws a random subset of the unlabelled pool, scores it with MC
dropout softmax samples, acquires ``acquisition_size`` rows with the
acquisition function and adds their labels. A round is one jitted program
(``round.py``) over a fixed-capacity labelled set (``labelled.py``), so it
compiles once for the whole run and ``vmap``-s over runs; the host loop
(``runs.py``) checkpoints every round and resumes bit for bit.

References:
  Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data",
  ICML 2017. Beluch, Genewein, Nürnberger & Köhler, "The power of ensembles
  for active learning in image classification", CVPR 2018.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq._src.active import checks
from jaxuq._src.active.round import Select
from jaxuq._src.active.runs import History, Plan, initial_carry, run_rounds
from jaxuq._src.active.select import Acquisition
from jaxuq._src.active.setup import fingerprint, prepare, resolve_select
from jaxuq._src.keys import check_key
from jaxuq._src.losses import LossFn
from jaxuq._src.training import TrainState


def _run(key, model, optimizer, data, seeds, run_selects, options, *, selects, labels, runs_keys):
  spread = [lab.split(":")[0] for _, lab, _ in selects]
  spread = [n for n in spread if n in ("bald", "variation_ratios", "mean_std", "batchbald")]
  if spread and options["members"] is None and options["num_samples"] < 2:
    raise ValueError(
      f"num_samples must be at least 2 for {', '.join(spread)}, got {options['num_samples']}: "
      "with one MC pass these scores are 0 everywhere and the choice would be random"
    )
  consistent = any(c for _, _, c in selects)
  custom = any(label.startswith("callable:") for _, label, _ in selects)
  cfg, _ = prepare(key, model, optimizer, data, seeds, [s for s, _, _ in selects], options,
                   shared_mask=consistent, check_positions=custom)  # fmt: skip
  arrays = tuple(jnp.asarray(a) for a in data)
  capacity = seeds.shape[1] + (options["acquisitions"] + 1) * options["acquisition_size"]
  carry, rounds_keys = initial_carry(
    runs_keys,
    model,
    optimizer,
    arrays[0][:1],
    seeds,
    run_selects,
    len(data[1]),
    capacity,
    options["members"],
  )
  path = options["checkpoint"]
  plan = Plan(
    acquisitions=options["acquisitions"],
    checkpoint=None if path is None else pathlib.Path(path),
    progress=options["progress"],
    description=f"active learning, {len(run_selects)} run(s)",
    fingerprint={}
    if path is None
    else fingerprint(key, model, optimizer, data, seeds, labels, options, runs_keys),
    callback=options["callback"],
    stop_after=options["stop_after"],
  )
  return run_rounds(cfg, plan, carry, rounds_keys, arrays)


def _naming_runs(options: dict[str, Any], runs: Sequence[int]) -> dict[str, Any]:
  """``options`` whose callback's record also holds ``run``: each column's grid index."""
  callback = options["callback"]
  if callback is None:
    return options
  which = np.asarray(runs, np.int32)
  return options | {"callback": lambda r, record: callback(r, record | {"run": which})}


def _grid(key, run_keys, model, optimizer, data, seeds, statics, labels, side_by_side, options):
  """Every function x repeat: side by side (one vmapped round) or one run after another."""
  num_f, repeats = len(statics), seeds.shape[0]
  checkpoint = options["checkpoint"]
  if side_by_side:
    # Functions that need consistent samples (BatchBALD) run in a group of their own: one
    # vmapped round shares its sampling mode, and BALD beside BatchBALD would otherwise
    # score with shared masks, unlike BALD alone.
    flags = [bool(c) for _, _, c in statics]
    groups = [[f for f in range(num_f) if flags[f] == c] for c in sorted(set(flags))]
    parts = []
    for g, fs in enumerate(groups):
      where = checkpoint if len(groups) == 1 or checkpoint is None else f"{checkpoint}.group{g}"
      grid_keys = jnp.tile(run_keys, len(fs))  # run i * repeats + r of the group's i-th
      grid_seeds = np.tile(seeds, (len(fs), 1))
      which = np.repeat(np.arange(len(fs)), repeats)
      runs = [f * repeats + r for f in fs for r in range(repeats)]
      carry, history = _run(key, model, optimizer, data, grid_seeds, which,
                            _naming_runs(options, runs) | {"checkpoint": where},
                            selects=[statics[f] for f in fs], labels=[labels[f] for f in fs],
                            runs_keys=grid_keys)  # fmt: skip
      parts.append((fs, carry.state, history))
    if len(parts) == 1:
      states, history = parts[0][1], parts[0][2]
    else:
      order = [(g, i) for f in range(num_f) for g, (fs, _, _) in enumerate(parts) if f in fs
               for i in [fs.index(f)]]  # fmt: skip
      per_run = lambda a, g, i: a[i * repeats : (i + 1) * repeats]  # noqa: E731
      states = jax.tree.map(
        lambda *a: jnp.concatenate([per_run(a[g], g, i) for g, i in order]),
        *(st for _, st, _ in parts),
      )
      keep = {k: min(len(h[k]) for _, _, h in parts) for k in parts[0][2]}
      history = {
        k: np.concatenate(
          [per_run(parts[g][2][k][:n].swapaxes(0, 1), g, i) for g, i in order]
        ).swapaxes(0, 1)
        for k, n in keep.items()
      }
  else:
    outs = []
    for i in range(num_f * repeats):
      f, r = divmod(i, repeats)
      opts = _naming_runs(options, [i]) | {
        "checkpoint": None if checkpoint is None else f"{checkpoint}.run{i}"
      }
      outs.append(_run(key, model, optimizer, data, seeds[r : r + 1], np.zeros(1), opts,
                       selects=statics[f : f + 1], labels=labels[f : f + 1],
                       runs_keys=run_keys[r : r + 1]))  # fmt: skip
    states = jax.tree.map(lambda *a: jnp.concatenate(a), *(c.state for c, _ in outs))
    # runs stopped early can hold different numbers of rounds (a checkpoint past stop_after):
    # the history goes as far as every run went
    keep = {k: min(len(h[k]) for _, h in outs) for k in outs[0][1]}
    history = {k: np.concatenate([h[k][:n] for _, h in outs], axis=1) for k, n in keep.items()}
  states = jax.tree.map(lambda a: a.reshape(num_f, repeats, *a.shape[1:]), states)
  history = {k: v.reshape(v.shape[0], num_f, repeats, *v.shape[2:]) for k, v in history.items()}
  return states, history


def active_learning_runs(
  key: jax.Array,
  model: Any,
  optimizer: optax.GradientTransformation,
  x_pool: Any,
  y_pool: Any,
  x_test: Any,
  y_test: Any,
  *,
  selects: Sequence[str | Acquisition | Select],
  seed_indices: Any,
  acquisitions: int,
  epochs: int,
  acquisition_size: int = 10,
  pool_subset: int | None = None,
  num_samples: int = 20,
  batch_size: int = 128,
  even_batches: bool = False,
  loss: str | LossFn = "cross_entropy",
  warm_start: bool = False,
  hyperparams: Callable[[jax.Array], dict[str, Any]] | None = None,
  eval_samples: int | None = None,
  eval_batch_size: int = 1000,
  members: int | None = None,
  side_by_side: bool = True,
  checkpoint: str | os.PathLike | None = None,
  stop_after: int | None = None,
  progress: bool | None = None,
  callback: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> tuple[TrainState, History]:
  """Several acquisition functions x repeats of :func:`active_learning`, side by side.

  Repeat ``r`` uses the run key ``split(key, repeats)[r]`` and the seed set
  ``seed_indices[r]`` for every function (common random numbers: the
  functions start from the same model and labels), so run ``(f, r)`` is
  ``active_learning(split(key, repeats)[r], ..., select=selects[f],
  seed_indices=seed_indices[r])`` up to floating-point rounding of batched
  arithmetic. With ``side_by_side`` all runs advance together, one jitted
  ``vmap``-ed round for all (the memory of all runs at once); without, one
  run after another (each with its own checkpoint, ``<checkpoint>.runN``).
  Functions that need consistent samples (BatchBALD) cannot share a round's
  sampling with the others, so side by side they advance in a group of their
  own (checkpoints ``<checkpoint>.group0`` for the others, ``.group1`` for
  them; ``callback`` is then called for each group's rounds). The record
  given to ``callback`` also holds ``run``: int32 ``(runs,)``, the grid index
  ``f * repeats + r`` of each of its columns (one by one, a single one).

  Args:
    key, model, optimizer, x_pool, y_pool, x_test, y_test: as in
      :func:`active_learning`.
    selects: acquisition functions (names, ``Acquisition`` objects or
      callables), F of them.
    seed_indices: ``(repeats, s)`` seed sets, or one ``(s,)`` set for one repeat.
    side_by_side: ``vmap`` over the runs (default) or run them one by one
      (each run to ``stop_after``, then the next; if their checkpoints hold
      different numbers of rounds, the history goes as far as every run
      went, and each state is its run's last).
    acquisitions, epochs, acquisition_size, pool_subset, num_samples, batch_size, even_batches, loss, warm_start, hyperparams, eval_samples, eval_batch_size, members, checkpoint, stop_after, progress, callback:
      as in :func:`active_learning`.

  Returns:
    ``(states, history)``: the final states with leading axes ``(F,
    repeats)``, and the history of :func:`active_learning` with the axes
    ``(F, repeats)`` after the round axis.
  """
  check_key(key)
  data = (x_pool, y_pool, x_test, y_test)
  checks.check_data(*data)
  seeds = checks.check_seeds(seed_indices, len(y_pool), runs=0)
  if isinstance(selects, str) or not isinstance(selects, Sequence) or not selects:
    raise TypeError(f"selects must be a non-empty list of acquisition functions, got {selects!r}")
  statics = [resolve_select(s) for s in selects]
  labels = [label for _, label, _ in statics]
  checks.check_flag(side_by_side, "side_by_side")
  options = dict(
    acquisitions=acquisitions, acquisition_size=acquisition_size, pool_subset=pool_subset,
    num_samples=num_samples, epochs=epochs, batch_size=batch_size,
    even_batches=even_batches, loss=loss,
    warm_start=warm_start, hyperparams=hyperparams, eval_samples=eval_samples,
    eval_batch_size=eval_batch_size, members=members, checkpoint=checkpoint,
    stop_after=checks.check_optional_positive(stop_after, "stop_after"), progress=progress,
    callback=callback,
  )  # fmt: skip
  run_keys = jax.random.split(key, seeds.shape[0])
  return _grid(key, run_keys, model, optimizer, data, seeds, statics, labels, side_by_side, options)


def active_learning(
  key: jax.Array,
  model: Any,
  optimizer: optax.GradientTransformation,
  x_pool: Any,
  y_pool: Any,
  x_test: Any,
  y_test: Any,
  *,
  select: str | Acquisition | Select,
  seed_indices: Any,
  acquisitions: int,
  epochs: int,
  acquisition_size: int = 10,
  pool_subset: int | None = None,
  num_samples: int = 20,
  batch_size: int = 128,
  even_batches: bool = False,
  loss: str | LossFn = "cross_entropy",
  warm_start: bool = False,
  hyperparams: Callable[[jax.Array], dict[str, Any]] | None = None,
  eval_samples: int | None = None,
  eval_batch_size: int = 1000,
  members: int | None = None,
  checkpoint: str | os.PathLike | None = None,
  stop_after: int | None = None,
  progress: bool | None = None,
  callback: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> tuple[TrainState, History]:
  """Pool-based active learning with MC dropout, from a labelled seed set.

  Round ``r = 0 .. acquisitions`` trains on the labelled rows, evaluates on
  the test set and, except in the last round, draws ``pool_subset`` random
  unlabelled rows, computes ``num_samples`` MC dropout softmax outputs on
  them and acquires the ``acquisition_size`` rows ``select`` picks; acquired
  rows are never offered again. Keys: ``init_key, rounds_key = split(key)``
  (the first model), and round ``r`` uses ``fold_in(rounds_key, r)``, split
  into a fresh model's key, the subset's, the MC passes', the acquisition's
  and the test passes'. So a run interrupted after any round and resumed from
  its checkpoint gives the same history and parameters bit for bit.

  Args:
    key: typed PRNG key.
    model: a ``flax.linen`` classifier returning logits, whose ``__call__``
      takes ``train`` or ``deterministic``, with dropout.
    optimizer: any optax transformation.
    x_pool, y_pool: the pool (inputs and integer labels; the labels of a row
      are read only once it is labelled).
    x_test, y_test: the test set.
    select: the acquisition function: a name of
      :func:`jaxuq.active.acquisition` (``'bald'``, ``'max_entropy'``,
      ``'variation_ratios'``, ``'mean_std'``, ``'random'``, ``'batchbald'``),
      an :class:`~jaxuq.active.Acquisition`, or any callable ``select(key,
      probs, k) -> (k,)`` distinct positions into ``probs`` ``(num_samples,
      pool_subset, classes)``. For BatchBALD (an acquisition marked
      ``consistent``) each MC pass shares one dropout mask across the scored
      rows, so that a pass is one network.
    seed_indices: the seed set, ``(s,)`` distinct pool rows.
    acquisitions: the number of acquisition rounds.
    epochs: training epochs per round (``ceil(labelled / batch_size)`` steps
      each; the last batch of an epoch is partial, as in Keras, unless
      ``even_batches``).
    acquisition_size: rows acquired per round.
    pool_subset: rows scored per round (``None``: every row still unlabelled
      at the last acquisition).
    num_samples: MC dropout passes per scored row.
    batch_size: rows per optimizer step.
    even_batches: cut each epoch into ``ceil(labelled / batch_size)``
      batches whose sizes differ by at most one (130 rows at batch 128: 65
      and 65) instead of full batches and a partial last one (128 and 2:
      50 epochs then take 50 steps on 2 rows). Runs without it keep their
      checkpoints' fingerprint.
    loss: the per-example loss, as in ``jaxuq.train.train``.
    warm_start: continue training the previous round's model (and optimizer
      state) instead of a fresh model each round.
    hyperparams: ``count -> {name: value}`` for an
      ``optax.inject_hyperparams`` optimizer, set before each round's
      training from the labelled-set size (e.g. weight decay ``c / count``).
    eval_samples: MC passes for the test predictive mean (``None``: dropout off).
    eval_batch_size: rows per forward pass when testing.
    members: a deep ensemble of this many members per run instead of MC
      dropout (Beluch et al. 2018): each round trains the members from their
      own initialisations side by side (one ``vmap``-ed step, as
      ``jaxuq.train.train_ensemble`` does, on all labelled rows), and their
      softmax outputs with dropout off are the samples ``select`` scores
      (``num_samples`` is then unused) and whose mean is tested.
    checkpoint: a file rewritten atomically after every round; if it exists
      the run resumes from it (same data, key and settings, else an error).
    stop_after: stop after this many rounds in all (the checkpoint's
      included), to split a long run into time-boxed calls: a later call
      with the same checkpoint and settings continues it bit for bit
      (``None``: all ``acquisitions + 1`` rounds). The history then holds
      the rounds done.
    progress: a progress bar over rounds (``None``: only on a terminal).
    callback: called on the host after every round (and its checkpoint)
      with the round's index and its record (numpy arrays; a run axis first).

  Returns:
    ``(state, history)``: the last round's trained state, and numpy arrays
    ``test_error``, ``test_accuracy``, ``test_nll``, ``train_loss`` and
    ``num_labelled`` ``(acquisitions + 1,)`` (one per training), and
    ``acquired`` ``(acquisitions, acquisition_size)`` (pool rows, in order);
    stopped early by ``stop_after``, ``(stop_after,)`` and ``(stop_after,
    acquisition_size)``.

  Raises:
    TypeError, ValueError: eagerly, for a bad argument: a seed set as large
      as the pool, an ``acquisition_size`` below 1, a ``pool_subset`` bigger
      than the unlabelled pool, an unknown acquisition function, labels out
      of range, a checkpoint of another run.
  """
  check_key(key)
  checks.check_data(x_pool, y_pool, x_test, y_test)
  seeds = checks.check_seeds(seed_indices, len(y_pool), runs=None)
  static = resolve_select(select)
  options = dict(
    acquisitions=acquisitions, acquisition_size=acquisition_size, pool_subset=pool_subset,
    num_samples=num_samples, epochs=epochs, batch_size=batch_size,
    even_batches=even_batches, loss=loss,
    warm_start=warm_start, hyperparams=hyperparams, eval_samples=eval_samples,
    eval_batch_size=eval_batch_size, members=members, checkpoint=checkpoint,
    stop_after=checks.check_optional_positive(stop_after, "stop_after"), progress=progress,
    callback=callback,
  )  # fmt: skip
  data = (x_pool, y_pool, x_test, y_test)
  states, history = _grid(
    key, key[None], model, optimizer, data, seeds, [static], [static[1]], True, options
  )
  state = jax.tree.map(lambda a: a[0, 0], states)
  return state, {k: v[:, 0, 0] for k, v in history.items()}
