"""The pure pieces of training: train state, one step, one epoch, evaluation.

Every function here is pure and jit-friendly; the hyperparameters (model,
optimizer, loss, batch size) are fixed by the factories, arrays and keys come
in as arguments. The epoch runs its minibatches in a ``lax.scan`` (one jitted
call per epoch; see ``benchmarks/bench_ensemble.py`` for the measurement
against a Python loop of jitted steps, ``loop='python'``).

Data are never copied per member or per epoch: an epoch takes the full arrays
``x, y`` and an index vector ``idx`` (the rows this model trains on, padded at
the end, the first ``count`` valid), so ensemble members share one copy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxuq._src.losses import LossFn, accuracy

Metrics = dict[str, jax.Array]


def cache_if_hashable(fn):
  """``functools.lru_cache`` for hashable arguments; a plain call otherwise."""
  cached = functools.lru_cache(maxsize=16)(fn)

  @functools.wraps(fn)
  def wrapper(*args):
    try:
      hash(args)
    except TypeError:
      return fn(*args)
    return cached(*args)

  return wrapper


class TrainState(struct.PyTreeNode):
  """The immutable state of one training run (or of N members, stacked).

  Attributes:
    params: the model's parameters (collection ``'params'``).
    opt_state: the optax optimizer's state.
    batch_stats: BatchNorm running averages (collection ``'batch_stats'``);
      an empty dict for a model without BatchNorm.
    step: number of optimizer steps taken, int32 scalar.
    key: typed PRNG key, split at every step (dropout) and epoch (shuffle).
  """

  params: Any
  opt_state: Any
  batch_stats: Any
  step: jax.Array
  key: jax.Array

  @property
  def variables(self) -> dict[str, Any]:
    """The model's variables for ``model.apply`` or ``jaxuq.from_linen``."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}


def init_state(
  key: jax.Array, model: nn.Module, optimizer: optax.GradientTransformation, x: jax.Array
) -> TrainState:
  """Initialises the model on the example batch ``x`` and the optimizer on its parameters.

  ``key`` is split into the parameter initialisation key and the state's key.
  """
  init_key, key = jax.random.split(key)
  variables = model.init({"params": init_key}, x, train=False)
  params = variables["params"]
  return TrainState(
    params=params,
    opt_state=optimizer.init(params),
    batch_stats=variables.get("batch_stats", {}),
    step=jnp.zeros((), jnp.int32),
    key=key,
  )


def make_step(
  model: nn.Module, optimizer: optax.GradientTransformation, loss_fn: LossFn, classifier: bool
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
  """Returns ``step(state, xb, yb) -> (state, metrics)``: one optimizer step on a batch.

  Dropout is on with a key split from ``state.key``; BatchNorm normalises with
  the batch statistics and updates its running averages.
  """

  def step(state: TrainState, xb: jax.Array, yb: jax.Array) -> tuple[TrainState, Metrics]:
    key, dropout_key = jax.random.split(state.key)

    def objective(params):
      out, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        xb,
        train=True,
        rngs={"dropout": dropout_key},
        mutable=["batch_stats"],
      )
      return loss_fn(out, yb).mean(), (out, updates)

    (loss, (out, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    deltas, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new = state.replace(
      params=optax.apply_updates(state.params, deltas),
      opt_state=opt_state,
      batch_stats=updates.get("batch_stats", state.batch_stats),
      step=state.step + 1,
      key=key,
    )
    metrics = {"loss": loss}
    if classifier:
      metrics["accuracy"] = accuracy(out, yb).mean()
    return new, metrics

  return step


def shuffled_batches(
  key: jax.Array, idx: jax.Array, count: jax.Array, num_batches: int, batch_size: int
) -> jax.Array:
  """Shuffles the first ``count`` entries of ``idx`` and cuts ``num_batches`` batches.

  The order is an argsort of random 32-bit words (the padding after ``count``
  sorts last), so it depends only on ``key``, ``len(idx)`` and ``count``.

  Returns:
    ``(num_batches, batch_size)`` rows of ``x``; the rest of the epoch's
    shuffle (fewer than one batch when ``count == len(idx)``) is left out.
  """
  bits = jax.random.bits(key, idx.shape, jnp.uint32)
  valid = jnp.arange(idx.shape[0]) < count
  order = jnp.argsort(jnp.where(valid, bits, jnp.uint32(0xFFFFFFFF)), stable=True)
  return idx[order[: num_batches * batch_size]].reshape(num_batches, batch_size)


def _mean_metrics(metrics: Metrics) -> Metrics:
  return {name: value.mean(axis=0) for name, value in metrics.items()}


def make_epoch(
  step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]],
  num_batches: int,
  batch_size: int,
) -> Callable[..., tuple[TrainState, Metrics]]:
  """Returns ``epoch(state, x, y, idx, count) -> (state, mean metrics)``, a ``lax.scan`` over batches."""

  def epoch(state, x, y, idx, count):
    key, shuffle_key = jax.random.split(state.key)
    batches = shuffled_batches(shuffle_key, idx, count, num_batches, batch_size)

    def body(state, rows):
      return step(state, x[rows], y[rows])

    state, metrics = jax.lax.scan(body, state.replace(key=key), batches)
    return state, _mean_metrics(metrics)

  return epoch


def make_python_epoch(
  step: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]],
  num_batches: int,
  batch_size: int,
) -> Callable[..., tuple[TrainState, Metrics]]:
  """Like :func:`make_epoch`, but a Python loop of jitted steps (same results, for comparison)."""

  @jax.jit
  def prepare(state, idx, count):
    key, shuffle_key = jax.random.split(state.key)
    return state.replace(key=key), shuffled_batches(
      shuffle_key, idx, count, num_batches, batch_size
    )

  @jax.jit
  def indexed_step(state, x, y, rows):
    return step(state, x[rows], y[rows])

  def epoch(state, x, y, idx, count):
    state, batches = prepare(state, idx, count)
    collected = []
    for b in range(num_batches):
      state, metrics = indexed_step(state, x, y, batches[b])
      collected.append(metrics)
    return state, _mean_metrics(jax.tree.map(lambda *m: jnp.stack(m), *collected))

  return epoch


def _chunks(n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """Row indices ``(num_chunks, batch_size)`` covering ``range(n)`` (last rows repeated) and validity."""
  num_chunks = -(-n // batch_size)
  rows = jnp.arange(num_chunks * batch_size).reshape(num_chunks, batch_size)
  return jnp.minimum(rows, n - 1), rows < n


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def predict(model: nn.Module, variables: Any, x: jax.Array, *, batch_size: int = 1024) -> jax.Array:
  """Deterministic outputs (dropout off, BatchNorm on running averages), in chunks, jitted.

  Args:
    model: the linen module.
    variables: its variables (e.g. ``state.variables``).
    x: inputs ``(n, ...)``.
    batch_size: rows per forward pass (a static int; bounds memory).

  Returns:
    The model's outputs ``(n, ...)`` (logits for a classifier).
  """
  n = x.shape[0]
  rows, _ = _chunks(n, min(batch_size, n))
  out = jax.lax.map(lambda r: model.apply(variables, x[r], train=False), rows)
  return out.reshape(-1, *out.shape[2:])[:n]


def make_evaluate(
  model: nn.Module, loss_fn: LossFn, classifier: bool, batch_size: int
) -> Callable[..., Metrics]:
  """Returns ``evaluate(variables, x, y, weights) -> metrics``: weighted means, dropout off.

  ``weights`` ``(n,)`` selects (1) or leaves out (0) each row, so one function
  serves a validation set and an ensemble member's held-out rows alike.
  """

  def evaluate(variables, x, y, weights):
    n = x.shape[0]
    rows, valid = _chunks(n, min(batch_size, n))

    def one(args):
      r, v = args
      out = cast(jax.Array, model.apply(variables, x[r], train=False))
      w = jnp.where(v, weights[r], 0.0)
      sums = {"loss": jnp.sum(w * loss_fn(out, y[r]))}
      if classifier:
        sums["accuracy"] = jnp.sum(w * accuracy(out, y[r]))
      return sums, jnp.sum(w)

    sums, totals = jax.lax.map(one, (rows, valid))
    total = jnp.sum(totals)
    return {"val_" + name: jnp.sum(s) / total for name, s in sums.items()}

  return evaluate
