"""The pure pieces of training: train state, one step, one epoch, evaluation.

As in Flax's ``TrainState``, the state carries its model and its optimizer as
static (non-pytree) fields, so ONE module-level jitted step and ONE jitted
epoch serve every model and optimizer: jit's own cache, keyed on the static
fields, replaces any cache of closures. The optimizer is wrapped in
:class:`~jaxuq._src.static.Static`, which compares by a structural fingerprint,
so a fresh ``optax.adam(1e-3)`` reuses the compilation of an earlier one while
``optax.adam(1e-2)`` gets its own. The loss is static too
(:class:`~jaxuq._src.losses.Objective`). :func:`init_state` is one jitted
program as well: run eagerly, every initializer compiled on its own.

The epoch runs its minibatches in a ``lax.scan`` (one jitted call per epoch;
see ``benchmarks/bench_ensemble.py`` for the measurement against a Python loop
of jitted steps, ``loop='python'``). Data are never copied per member or per
epoch: an epoch takes the full arrays ``x, y`` and an index vector ``idx``
(the rows this model trains on, padded at the end, the first ``count``
valid), so ensemble members share one copy. ``member_loop`` runs N stacked
members side by side (``'vmap'``) or one after another in the same jitted
call (``'map'``); ``None`` is one model.
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

from jaxuq._src.losses import LossFn, Objective, accuracy, check_labels, resolve_loss
from jaxuq._src.metrics._checks import as_jax, is_concrete
from jaxuq._src.model_call import check_linen, mode_kwargs
from jaxuq._src.static import Static

Metrics = dict[str, jax.Array]
MEMBER_LOOPS = ("vmap", "map")


class TrainState(struct.PyTreeNode):
  """The immutable state of one training run (or of N members, stacked on axis 0).

  Attributes:
    params: the model's parameters (collection ``'params'``).
    opt_state: the optax optimizer's state.
    batch_stats: BatchNorm running averages (collection ``'batch_stats'``);
      an empty dict for a model without BatchNorm.
    step: number of optimizer steps taken, int32 scalar.
    key: typed PRNG key, split at every step (dropout) and epoch (shuffle).
    model: the linen module (static field, compared by value).
    tx: the optax transformation, wrapped in a ``Static`` (static field,
      compared by its settings; ``state.tx.value`` is the transformation).
  """

  params: Any
  opt_state: Any
  batch_stats: Any
  step: jax.Array
  key: jax.Array
  model: nn.Module = struct.field(pytree_node=False)
  tx: Static = struct.field(pytree_node=False)

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

  Raises:
    TypeError: ``model`` is not a linen module, or its ``__call__`` takes
      neither ``train`` nor ``deterministic``.
  """
  check_linen(model)
  tx = Static(optimizer)
  init = _init_state_jit_cpu if _runs_on_cpu(x) else _init_state_jit
  state = init(key, Static(model), tx, x)
  # jit's cache may hand back an equal model or optimizer seen earlier: the
  # state carries the caller's own objects.
  return state.replace(model=model, tx=tx)


def _init_state_body(key: jax.Array, model: Static, tx: Static, x: jax.Array) -> TrainState:
  # One compiled program. Run eagerly, every initializer and optimizer buffer
  # is an operation compiled on its own: a CNN's init took 3.2 s eagerly and
  # 2.1 s jitted, a BatchNorm CNN's 10.1 s and 4.8 s, with the same bits
  # (tests/test_train.py). Inside an outer jit or vmap it is inlined. The
  # model is wrapped in a Static so that one with unhashable fields (a list)
  # compares by identity instead of failing as a static argument.
  init_key, key = jax.random.split(key)
  module = model.value
  variables = module.init({"params": init_key}, x, **mode_kwargs(module, False))
  params = variables["params"]
  return TrainState(
    params=params,
    opt_state=tx.value.init(params),
    batch_stats=variables.get("batch_stats", {}),
    step=jnp.zeros((), jnp.int32),
    key=key,
    model=module,
    tx=tx,
  )


_init_state_jit = jax.jit(_init_state_body, static_argnums=(1, 2))
# The init program runs once, so on the CPU its compilation is nearly all its
# cost. At LLVM optimization level 1 instead of XLA's default 3, XLA:CPU compiled
# it 1.6-4x faster with the same run time and the same bits (random bits are
# integer arithmetic; the float steps are IEEE operations at either level; the
# programs are compared bit for bit in tests/test_train.py). Measured in fresh
# processes on the 2-core CPU, two each: seed MLP 1.8-2.0 s -> 1.1-1.2 s, BasicCNN
# 3.0-3.1 s -> 1.0 s, DeepCNN 8.8-10.9 s -> 2.3-3.3 s, the active-learning CNN
# 7.1-7.6 s -> 1.5 s. (Level 0 compiled about as fast but drew the MLP's 3.2 M numbers 5x slower.)
_init_state_jit_cpu = jax.jit(
  _init_state_body,
  static_argnums=(1, 2),
  compiler_options={"xla_backend_optimization_level": 1},
)


def _runs_on_cpu(x: Any) -> bool:
  """Whether the init program is a top-level call that runs on the CPU.

  Only a matter of compile time. Inside a trace (an outer ``jit``,
  ``eval_shape``, ``vmap``) JAX refuses a nested ``jit`` with compiler options,
  and the outer program's settings apply anyway.
  """
  if not _at_top_level():
    return False
  if isinstance(x, jax.Array):
    return all(d.platform == "cpu" for d in x.devices())
  return jax.default_backend() == "cpu"


def _at_top_level() -> bool:
  """No trace is active (JAX internals, here only; without them: assume a trace)."""
  from jax._src import core  # noqa: PLC0415

  clean = getattr(core, "trace_state_clean", None)
  return bool(clean()) if clean is not None else False


def apply_step(
  state: TrainState, xb: jax.Array, yb: jax.Array, objective: Objective
) -> tuple[TrainState, Metrics]:
  """One optimizer step on a batch (not jitted; traced inside the jitted epoch).

  Dropout is on with a key split from ``state.key``; BatchNorm normalises with
  the batch statistics and updates its running averages, kept in the dtypes
  they were created with (under ``jax_enable_x64`` Flax creates them float32
  but computes float64 statistics of float64 inputs).

  The optimizer's update gets optax's extra arguments (an
  ``optax.GradientTransformationExtraArgs`` such as ``optax.chain``): ``value``,
  the batch's mean loss (for ``optax.contrib.reduce_on_plateau``: the
  training batch's loss, not the validation loss), ``grad`` and ``value_fn``,
  that loss as a function of the parameters (the same batch, dropout masks
  and batch statistics; for ``optax.lbfgs``'s line search). A transformation
  that does not read them compiles to the same program as without them.
  """
  key, dropout_key = jax.random.split(state.key)
  model = state.model

  def apply(params):
    return model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      xb,
      **mode_kwargs(model, True),
      rngs={"dropout": dropout_key},
      mutable=["batch_stats"],
    )

  def loss_of(params):
    out, updates = apply(params)
    return objective(out, yb).mean(), (out, updates)

  def value_fn(params):
    return objective(apply(params)[0], yb).mean()

  (loss, (out, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
  tx = optax.with_extra_args_support(state.tx.value)
  deltas, opt_state = tx.update(
    grads, state.opt_state, state.params, value=loss, grad=grads, value_fn=value_fn
  )
  new = state.replace(
    params=optax.apply_updates(state.params, deltas),
    opt_state=opt_state,
    batch_stats=_same_dtypes(updates.get("batch_stats", state.batch_stats), state.batch_stats),
    step=state.step + 1,
    key=key,
  )
  metrics = {"loss": loss}
  if objective.classifier:
    metrics["accuracy"] = accuracy(out, yb).mean()
  return new, metrics


def _same_dtypes(new: Any, old: Any) -> Any:
  """``new`` (updated batch statistics) cast leaf by leaf to the dtypes of ``old``.

  A scan's carry must keep its types, and a checkpoint its dtypes: BatchNorm's
  running averages are created in its ``param_dtype`` (float32) but updated with
  statistics in the inputs' dtype (float64 under ``jax_enable_x64``).
  """
  if cast(Any, jax.tree.structure(new)) != jax.tree.structure(old):
    return new
  return jax.tree.map(lambda a, b: a.astype(b.dtype) if a.dtype != b.dtype else a, new, old)


_jitted_step = jax.jit(apply_step, static_argnames=("objective",))


def train_step(
  state: TrainState, x: jax.Array, y: jax.Array, *, loss: str | LossFn = "mse"
) -> tuple[TrainState, Metrics]:
  """One jitted optimizer step on the batch ``(x, y)``: ``(new state, {'loss': ...})``.

  One module-level jitted function serves every model and optimizer (they are
  static fields of the state), so equal settings never recompile.

  Args:
    state: a :class:`TrainState` (from :func:`init_state`).
    x: a batch of inputs.
    y: its targets.
    loss: as in ``jaxuq.train.train``.

  Returns:
    The state after the step and the batch's mean loss (and accuracy for
    ``'cross_entropy'``).

  Raises:
    TypeError, ValueError: for ``'cross_entropy'``, labels that are not integer
      classes in ``[0, classes)`` (checked when ``y`` is concrete: optax would
      wrap -1 to the last class and give nan for too large a label).
  """
  objective = resolve_loss(loss)
  x, y = as_jax(x, "x"), as_jax(y, "y")
  if objective.classifier and is_concrete(y):
    check_labels(y, _num_outputs(state, x))
  return _jitted_step(state, x, y, objective)


_OUTPUTS: dict[Any, int] = {}  # (model, shapes) -> outputs per example: a memo, as jit's cache


def _num_outputs(state: TrainState, x: jax.Array) -> int:
  """The model's outputs per example (its last axis), traced once per model and shapes."""
  leaves, tree = jax.tree.flatten(state.variables)
  try:
    key: Any = (state.model, tree, tuple(a.shape for a in leaves), x.shape, str(x.dtype))
    hash(key)
  except TypeError:  # a model with unhashable fields: traced every time
    key = None
  if key is not None and key in _OUTPUTS:
    return _OUTPUTS[key]
  flag = mode_kwargs(state.model, False)
  out = jax.eval_shape(lambda v, a: state.model.apply(v, a, **flag), state.variables, x)
  if key is not None:
    if len(_OUTPUTS) > 64:
      _OUTPUTS.clear()
    _OUTPUTS[key] = int(out.shape[-1])
  return int(out.shape[-1])


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


def _per_member(fn: Callable[..., Any], member_loop: str | None) -> Callable[..., Any]:
  """``fn`` over the leading member axis of all its arguments (``None``: one model)."""
  if member_loop is None:
    return fn
  if member_loop == "vmap":
    return jax.vmap(fn)
  return lambda *args: jax.lax.map(lambda a: fn(*a), args)


def select_tree(mask: jax.Array, new: Any, old: Any) -> Any:
  """``new`` where ``mask`` (over the leading member axis) else ``old``, leaf by leaf."""

  def pick(a, b):
    m = mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim))
    return jnp.where(m, a, b)

  return jax.tree.map(pick, new, old)


select_members = jax.jit(select_tree)


def _epoch_batches(state, idx, count, num_batches: int, batch_size: int):
  """The epoch's shuffled minibatches, and the state with its key advanced past the shuffle."""
  key, shuffle_key = jax.random.split(state.key)
  return state.replace(key=key), shuffled_batches(shuffle_key, idx, count, num_batches, batch_size)


@functools.partial(
  jax.jit, static_argnames=("objective", "num_batches", "batch_size", "member_loop")
)
def scan_epoch(
  state: TrainState,
  active: jax.Array,
  x: jax.Array,
  y: jax.Array,
  idx: jax.Array,
  count: jax.Array,
  *,
  objective: Objective,
  num_batches: int,
  batch_size: int,
  member_loop: str | None = None,
) -> tuple[TrainState, Metrics]:
  """One epoch as a ``lax.scan`` over shuffled minibatches; ``(state, mean metrics)``.

  With ``member_loop`` the state, ``idx`` and ``count`` have a leading member
  axis and members whose ``active`` flag is false keep their state (early
  stopping); without, ``active`` is ignored.
  """

  def one(state, idx, count):
    state, batches = _epoch_batches(state, idx, count, num_batches, batch_size)

    def body(state, rows):
      return apply_step(state, x[rows], y[rows], objective)

    state, metrics = jax.lax.scan(body, state, batches)
    return state, _mean_metrics(metrics)

  new, metrics = _per_member(one, member_loop)(state, idx, count)
  if member_loop is not None:
    new = select_tree(active, new, state)
  return new, metrics


@functools.partial(jax.jit, static_argnames=("num_batches", "batch_size", "member_loop"))
def _shuffle(state, idx, count, *, num_batches, batch_size, member_loop):
  def one(state, idx, count):
    return _epoch_batches(state, idx, count, num_batches, batch_size)

  return _per_member(one, member_loop)(state, idx, count)


@functools.partial(jax.jit, static_argnames=("objective", "member_loop"))
def _indexed_step(state, x, y, rows, *, objective, member_loop):
  return _per_member(lambda s, r: apply_step(s, x[r], y[r], objective), member_loop)(state, rows)


def python_epoch(
  state: TrainState,
  active: jax.Array,
  x: jax.Array,
  y: jax.Array,
  idx: jax.Array,
  count: jax.Array,
  *,
  objective: Objective,
  num_batches: int,
  batch_size: int,
  member_loop: str | None = None,
) -> tuple[TrainState, Metrics]:
  """Like :func:`scan_epoch`, but a Python loop of jitted steps (same results, for comparison)."""
  start = state
  state, batches = _shuffle(
    state, idx, count, num_batches=num_batches, batch_size=batch_size, member_loop=member_loop
  )
  collected = []
  for b in range(num_batches):
    rows = batches[b] if member_loop is None else batches[:, b]
    state, metrics = _indexed_step(state, x, y, rows, objective=objective, member_loop=member_loop)
    collected.append(metrics)
  if member_loop is not None:
    state = select_members(active, state, start)
  return state, _mean_metrics(jax.tree.map(lambda *m: jnp.stack(m), *collected))


EPOCHS: dict[str, Callable[..., tuple[TrainState, Metrics]]] = {
  "scan": scan_epoch,
  "python": python_epoch,
}


def _chunks(n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """Row indices ``(num_chunks, batch_size)`` covering ``range(n)`` (last rows repeated) and validity."""
  num_chunks = -(-n // batch_size)
  rows = jnp.arange(num_chunks * batch_size).reshape(num_chunks, batch_size)
  return jnp.minimum(rows, n - 1), rows < n


def predict(model: nn.Module, variables: Any, x: jax.Array, *, batch_size: int = 1024) -> jax.Array:
  """Deterministic outputs (dropout off, BatchNorm on running averages), in chunks, jitted.

  One jitted program per model, shapes and ``batch_size``: the model is
  compared by its settings (a model with unhashable fields, a list of widths,
  too), so an equal model reuses the compilation.

  Args:
    model: the linen module (called with ``train=False`` or
      ``deterministic=True``, whichever its ``__call__`` takes).
    variables: its variables (e.g. ``state.variables``).
    x: inputs ``(n, ...)``.
    batch_size: rows per forward pass (a static int; bounds memory).

  Returns:
    The model's outputs ``(n, ...)`` (logits for a classifier), or a pytree of
    such arrays for a model that returns one.
  """
  return _predict(Static(model), variables, x, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _predict(model: Static, variables: Any, x: jax.Array, *, batch_size: int) -> jax.Array:
  module = model.value
  n = x.shape[0]
  rows, _ = _chunks(n, min(batch_size, n))
  out = jax.lax.map(lambda r: module.apply(variables, x[r], **mode_kwargs(module, False)), rows)
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


def evaluate(
  model: nn.Module,
  variables: Any,
  x: jax.Array,
  y: jax.Array,
  weights: jax.Array,
  *,
  objective: Objective,
  batch_size: int,
  member_loop: str | None = None,
) -> Metrics:
  """Weighted mean validation metrics, dropout off: ``{'val_loss': ..., 'val_accuracy': ...}``.

  ``weights`` ``(n,)`` selects (1) or leaves out (0) each row, so one function
  serves a validation set and an ensemble member's held-out rows alike; with
  ``member_loop``, ``variables`` are stacked members' and ``weights`` is
  either shared ``(n,)`` or per member ``(N, n)``. The optimizer is no
  argument: validation compiles once per model (compared by its settings, as
  in :func:`predict`), whatever the optimizer.
  """
  return _evaluate(
    Static(model), variables, x, y, weights, objective=objective, batch_size=batch_size,
    member_loop=member_loop,
  )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("model", "objective", "batch_size", "member_loop"))
def _evaluate(
  model: Static,
  variables: Any,
  x: jax.Array,
  y: jax.Array,
  weights: jax.Array,
  *,
  objective: Objective,
  batch_size: int,
  member_loop: str | None,
) -> Metrics:
  module = model.value
  n = x.shape[0]
  rows, valid = _chunks(n, min(batch_size, n))

  def one_model(variables, weights):
    def chunk(args):
      r, v = args
      out = cast(jax.Array, module.apply(variables, x[r], **mode_kwargs(module, False)))
      w = jnp.where(v, weights[r], 0.0)
      sums = {"loss": jnp.sum(w * objective(out, y[r]))}
      if objective.classifier:
        sums["accuracy"] = jnp.sum(w * accuracy(out, y[r]))
      return sums, jnp.sum(w)

    sums, totals = jax.lax.map(chunk, (rows, valid))
    total = jnp.sum(totals)
    return {"val_" + name: jnp.sum(s) / total for name, s in sums.items()}

  if member_loop is not None and weights.ndim == 1:
    num_members = jax.tree.leaves(variables)[0].shape[0]
    weights = jnp.broadcast_to(weights, (num_members, n))
  return _per_member(one_model, member_loop)(variables, weights)
