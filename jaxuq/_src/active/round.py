"""One round of active learning for every run side by side: train, evaluate, score, acquire.

The round is a short host sequence of jitted programs, each ``vmap``-ed over
the runs (a leading run axis on every carried array): :func:`begin` (a fresh
or warm model), the training steps of ``fit_labelled.py``, the test set in
chunks, and :func:`acquire` (a random pool subset, MC dropout softmax
samples, the acquisition function, the new labels). Everything that changes a
traced program is a field of the hashable :class:`RoundConfig`; arrays are
arguments, so each program compiles once for the whole loop.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp

from jaxuq._src.active.fit_labelled import fit_labelled
from jaxuq._src.active.labelled import LabelledSet, add_labels, draw_unlabelled
from jaxuq._src.adapters import from_linen
from jaxuq._src.losses import Objective
from jaxuq._src.model_call import mode_kwargs
from jaxuq._src.static import Static
from jaxuq._src.training import TrainState, init_state

Select = Callable[[jax.Array, jax.Array, int], jax.Array]


@dataclasses.dataclass(frozen=True)
class RoundConfig:
  """The static settings of a round (see ``active_learning`` for their meaning).

  ``selects`` holds the acquisition functions ``select(key, probs, k) ->
  (k,)`` positions, each wrapped in :class:`Static`; a run picks one by its
  index (``lax.switch``; under ``vmap`` every function is evaluated on the
  scores and the run's own choice is kept). ``hyperparams`` maps the
  labelled-set size to values of an ``optax.inject_hyperparams`` optimizer's
  hyperparameters (or is ``None``). With ``members``, each run is a deep
  ensemble (its state has a member axis after the run axis) whose members'
  softmax outputs, dropout off, are the samples.
  """

  objective: Objective
  selects: tuple[Static, ...]
  epochs: int
  batch_size: int
  acquisition_size: int
  pool_subset: int
  num_samples: int
  eval_samples: int | None
  eval_batch_size: int
  warm_start: bool
  hyperparams: Static | None
  members: int | None = None
  shared_mask: bool = False
  even_batches: bool = False
  check_positions: bool = False  # a user's select: its positions are checked every round


class Carry(NamedTuple):
  """What the runs carry from one round to the next (each leaf with a leading run axis)."""

  state: TrainState
  labelled: LabelledSet
  which: jax.Array  # int32 (runs,): each run's index into ``RoundConfig.selects``


def set_hyperparams(state: TrainState, hyperparams: Static | None, count: jax.Array) -> TrainState:
  """Writes ``hyperparams(count)`` into an ``inject_hyperparams`` optimizer state (traced)."""
  if hyperparams is None:
    return state
  opt_state: Any = state.opt_state
  values = dict(opt_state.hyperparams)
  for name, value in hyperparams.value(count).items():
    values[name] = jnp.asarray(value, jnp.result_type(values[name]))
  return state.replace(opt_state=opt_state._replace(hyperparams=values))


@functools.partial(jax.jit, static_argnums=0)
def begin(cfg: RoundConfig, keys: jax.Array, carry: Carry, x0: jax.Array):
  """Splits each run's round key and gives the model to train: fresh (``init_key``) or warm.

  Returns:
    The states, and the keys ``(eval_key, subset_key, score_key, select_key)``
    of every run.
  """

  def one(key: jax.Array, state: TrainState, labelled: LabelledSet):
    init_key, *rest = jax.random.split(key, 5)
    if not cfg.warm_start:
      state = fresh_state(init_key, state.model, state.tx.value, x0, cfg.members)
    state = _members(lambda s: set_hyperparams(s, cfg.hyperparams, labelled.count), cfg.members)(
      state
    )
    return state, jnp.stack(rest)

  return jax.vmap(one)(keys, carry.state, carry.labelled)


def _members(fn: Callable[..., Any], members: int | None) -> Callable[..., Any]:
  """``fn`` over an ensemble's member axis (``members``), or ``fn`` itself."""
  return fn if members is None else jax.vmap(fn)


def fresh_state(
  key: jax.Array, model: Any, optimizer: Any, x0: jax.Array, members: int | None
) -> TrainState:
  """A new model (or ``members`` of them, from ``split(key, members)``) and its optimizer state."""
  if members is None:
    return init_state(key, model, optimizer, x0)
  return jax.vmap(lambda k: init_state(k, model, optimizer, x0))(jax.random.split(key, members))


def _probs(
  key: jax.Array,
  state: TrainState,
  x: jax.Array,
  num_samples: int | None,
  shared_mask: bool = False,
) -> jax.Array:
  """MC dropout softmax outputs ``(num_samples, n, classes)``, or ``(1, n, classes)`` dropout off.

  For an ensemble (a state with a member axis, ``num_samples=None``): each
  member's softmax outputs, dropout off, ``(members, n, classes)``.
  """
  model = state.model
  flag = mode_kwargs(model, False)
  if num_samples is None:
    members = state.step.ndim > 0
    out = _members(
      lambda v: jax.nn.softmax(cast(jax.Array, model.apply(v, x, **flag))), members or None
    )
    probs = out(state.variables)
    return probs if members else probs[None]
  f = from_linen(model, state.variables, shared_mask=shared_mask, **flag)
  # Layers before the first dropout do not depend on the key: vmap computes them once.
  return jax.vmap(lambda k: jax.nn.softmax(f(k, x)))(jax.random.split(key, num_samples))


@functools.partial(jax.jit, static_argnames=("num_samples",))
def _test_chunk(keys, state, x, y, valid, *, num_samples):
  def one(key, state):
    probs = _probs(key, state, x, num_samples).mean(axis=0)  # the predictive mean
    p_true = jnp.take_along_axis(probs, y[:, None], axis=-1)[:, 0]
    correct = jnp.sum(valid * (jnp.argmax(probs, axis=-1) == y))
    nll = -jnp.sum(valid * jnp.log(jnp.maximum(p_true, jnp.finfo(probs.dtype).tiny)))
    return correct, nll

  return jax.vmap(one)(keys, state)


def evaluate(cfg: RoundConfig, keys: jax.Array, state: TrainState, x: jax.Array, y: jax.Array):
  """Test accuracy, error and NLL of each run's predictive mean, in chunks of ``eval_batch_size``.

  Chunk ``c`` of run ``i`` uses the key ``fold_in(keys[i], c)`` for its MC passes.
  """
  n = x.shape[0]
  size = min(cfg.eval_batch_size, n)
  correct = nll = jnp.zeros(keys.shape, jnp.float32)
  for c, start in enumerate(range(0, n, size)):
    rows = jnp.minimum(jnp.arange(start, start + size), n - 1)
    valid = (jnp.arange(start, start + size) < n).astype(jnp.float32)
    chunk_keys = jax.vmap(lambda k, c=c: jax.random.fold_in(k, c))(keys)
    samples = None if cfg.members else cfg.eval_samples
    sums = _test_chunk(chunk_keys, state, x[rows], y[rows], valid, num_samples=samples)
    correct, nll = correct + sums[0], nll + sums[1]
  accuracy = correct / n
  return {"test_accuracy": accuracy, "test_error": 1.0 - accuracy, "test_nll": nll / n}


def _select(cfg: RoundConfig, which: jax.Array, key: jax.Array, probs: jax.Array) -> jax.Array:
  k = cfg.acquisition_size

  def run(s: Static, key: jax.Array, probs: jax.Array) -> jax.Array:
    out = s.value(key, probs, k)
    if jnp.shape(out) != (k,) or not jnp.issubdtype(jnp.result_type(out), jnp.integer):
      raise ValueError(
        f"a select function must return acquisition_size = {k} integer positions into the "
        f"scored subset, shape ({k},); {s.value!r} returned "
        f"{jnp.result_type(out)} of shape {jnp.shape(out)}"
      )
    return out

  if len(cfg.selects) == 1:
    return run(cfg.selects[0], key, probs)
  branches = [functools.partial(run, s) for s in cfg.selects]
  return jax.lax.switch(which, branches, key, probs)


def _positions_ok(positions: jax.Array, n: int) -> jax.Array:
  """Whether ``positions`` are distinct and in ``[0, n)`` (JAX would clamp the others)."""
  inside = jnp.all((positions >= 0) & (positions < n))
  ordered = jnp.sort(positions)
  return inside & jnp.all(ordered[1:] != ordered[:-1])


@functools.partial(jax.jit, static_argnums=0)
def acquire(cfg: RoundConfig, keys: jax.Array, carry: Carry, state: TrainState, x_pool: jax.Array):
  """Each run scores a random unlabelled subset with MC dropout and labels what it selects.

  Returns:
    The new labelled sets, the acquired pool rows ``(runs, acquisition_size)``
    and, for a user's select (``cfg.check_positions``), whether each run's
    positions were distinct and in range (else ``None``).
  """

  def one(keys: jax.Array, labelled: LabelledSet, which: jax.Array, state: TrainState):
    subset_key, score_key, select_key = keys
    subset = draw_unlabelled(subset_key, labelled.mask, cfg.pool_subset)
    samples = None if cfg.members else cfg.num_samples
    probs = _probs(score_key, state, x_pool[subset], samples, cfg.shared_mask)
    positions = _select(cfg, which, select_key, probs)
    rows = subset[positions]
    ok = _positions_ok(positions, subset.shape[0]) if cfg.check_positions else None
    return add_labels(labelled, rows), rows, ok

  return jax.vmap(one)(keys, carry.labelled, carry.which, state)


def run_round(
  cfg: RoundConfig, keys: jax.Array, carry: Carry, data: tuple[jax.Array, ...], last: bool
) -> tuple[Carry, dict[str, jax.Array]]:
  """One round of every run; the last round trains and evaluates but acquires nothing.

  Each run's round key is split into ``init_key`` (a fresh model unless
  ``warm_start``), ``eval_key`` (MC passes on the test set), ``subset_key``
  (the random pool subset), ``score_key`` (its MC passes) and
  ``select_key`` (a stochastic acquisition).
  """
  x_pool, y_pool, x_test, y_test = data
  state, round_keys = begin(cfg, keys, carry, x_pool[:1])
  labelled, m = carry.labelled, cfg.members or 1
  if cfg.members:  # every member of every run trains side by side, as runs of their own
    state = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), state)
    labelled = jax.tree.map(lambda a: jnp.repeat(a, m, axis=0), labelled)
  state, loss = fit_labelled(
    state, x_pool, y_pool, labelled, objective=cfg.objective, epochs=cfg.epochs,
    batch_size=cfg.batch_size, even_batches=cfg.even_batches,
  )  # fmt: skip
  if cfg.members:
    state = jax.tree.map(lambda a: a.reshape(-1, m, *a.shape[1:]), state)
    loss = loss.reshape(-1, m).mean(axis=1)
  record = evaluate(cfg, round_keys[:, 0], state, x_test, y_test)
  record.update(train_loss=loss, num_labelled=carry.labelled.count)
  if last:
    return carry._replace(state=state), record
  labelled, rows, ok = acquire(cfg, round_keys[:, 1:], carry, state, x_pool)
  if ok is not None and not bool(jnp.all(ok)):
    raise ValueError(
      "a select function returned positions that repeat or lie outside the scored subset "
      f"[0, {cfg.pool_subset}) (JAX would have clamped them to other rows): it must return "
      "acquisition_size distinct positions into the probabilities it was given"
    )
  record["acquired"] = rows
  return Carry(state, labelled, carry.which), record
