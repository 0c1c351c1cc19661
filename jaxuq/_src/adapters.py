"""Adapters: a Flax model becomes a pure predictive function ``f(key, x)``.

The returned functions are pytrees (their variables are leaves), so samplers
pass the weights to jit as arguments instead of baking them in as constants,
and two predictive functions of the same module share one compilation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx, struct

from jaxuq._src.dropout import Dropout, forced_flax_dropout

_DROPOUT_LAYERS = (nn.Dropout, Dropout)


def _shared_over_batch(one: Any, key: jax.Array, args: tuple) -> Any:
  """Runs ``one(key, *args)`` example by example with the same key.

  Every example sees the same random draws, so each sample is one coherent
  network (one function draw); the mask is drawn once, not per example.
  """

  def per_example(*example):
    out = one(key, *(a[None] for a in example))
    return jax.tree.map(lambda y: y[0], out)

  return jax.vmap(per_example)(*args)


def _call(apply: Any, shared_mask: bool, key: jax.Array, args: tuple) -> Any:
  """``apply(key, *args)``, with one mask for the whole batch when ``shared_mask``."""
  if shared_mask:
    return _shared_over_batch(apply, key, args)
  return apply(key, *args)


@struct.dataclass
class LinenPredictive:
  """``f(key, *args)`` for a linen module: dropout on, fed by ``key``.

  Attributes:
    module: the linen module.
    variables: its variables (``{'params': ..., 'batch_stats': ...}``).
    apply_kwargs: extra keyword arguments of ``module.apply``, as sorted items.
    shared_mask: one mask for the whole batch instead of one per example.
    rng_collection: the rng stream dropout draws from.
    check_dropout: raise if no dropout layer runs (the samples would be equal).
  """

  module: nn.Module = struct.field(pytree_node=False)
  variables: Any
  apply_kwargs: tuple = struct.field(pytree_node=False, default=())
  shared_mask: bool = struct.field(pytree_node=False, default=False)
  rng_collection: str = struct.field(pytree_node=False, default="dropout")
  check_dropout: bool = struct.field(pytree_node=False, default=True)

  def __call__(self, key: jax.Array, *args: Any) -> Any:
    return _call(self._apply, self.shared_mask, key, args)

  def _apply(self, key: jax.Array, *args: Any) -> Any:
    calls = []

    def force_dropout(next_fun, fargs, fkwargs, context):
      module = context.module
      if context.method_name != "__call__" or not isinstance(module, _DROPOUT_LAYERS):
        return next_fun(*fargs, **fkwargs)
      calls.append(module)
      inputs = fargs[0] if fargs else fkwargs["inputs"]
      if isinstance(module, Dropout):
        return module.stochastic(inputs)
      return forced_flax_dropout(module, inputs)

    with nn.intercept_methods(force_dropout):
      out = self.module.apply(
        self.variables, *args, rngs={self.rng_collection: key}, **dict(self.apply_kwargs)
      )
    if self.check_dropout and not calls:
      raise ValueError(
        f"{type(self.module).__name__} ran no dropout layer (flax.linen.Dropout or "
        "jaxuq.Dropout), so every MC sample would be the same. Add dropout to the "
        "model, or pass check_dropout=False if it draws from the "
        f"{self.rng_collection!r} rng stream itself."
      )
    return out


def from_linen(
  module: nn.Module,
  variables: Mapping[str, Any],
  *,
  shared_mask: bool = False,
  rng_collection: str = "dropout",
  check_dropout: bool = True,
  **apply_kwargs: Any,
) -> LinenPredictive:
  """Turns a linen module into a predictive function ``f(key, *args)``.

  Every ``flax.linen.Dropout`` and ``jaxuq.Dropout`` layer in the module is
  switched on whatever its ``deterministic`` flag says, with its mask drawn
  from the rng stream ``rng_collection`` fed by ``key`` (Flax's layers get
  jaxuq's packed masks: same distribution, cheaper bits). BatchNorm keeps its
  running averages as long as ``apply_kwargs`` select inference mode for it
  (e.g. ``train=False``); the variables are never updated.

  Args:
    module: a ``flax.linen.Module``.
    variables: its variables, a mapping with at least ``'params'``.
    shared_mask: if true, one mask is shared by every example in the batch
      (each sample is one coherent network: smooth curves, joint metrics); by
      default each example gets its own mask, as in Keras and PyTorch.
    rng_collection: the rng stream the dropout layers draw from.
    check_dropout: raise ``ValueError`` when a call runs no dropout layer.
    **apply_kwargs: passed to ``module.apply`` (static, hashable values).

  Returns:
    A pytree callable ``f(key, *args)``, with the variables as its leaves.

  Raises:
    TypeError: ``module`` is not a linen module or ``variables`` not a mapping.
    ValueError: ``variables`` has no ``'params'``.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxuq
    >>> net = nn.Sequential([nn.Dense(8), jaxuq.Dropout(0.5, deterministic=True), nn.Dense(1)])
    >>> x = jnp.ones((4, 1))
    >>> f = jaxuq.from_linen(net, net.init(jax.random.key(0), x))
    >>> jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=10).shape
    (10, 4, 1)
  """
  if not isinstance(module, nn.Module):
    raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}")
  if not isinstance(variables, Mapping):
    raise TypeError(
      f"variables must be a mapping such as module.init(...) returns, got {type(variables).__name__}"
    )
  if "params" not in variables:
    raise ValueError(f"variables must contain 'params', got collections {sorted(variables)}")
  return LinenPredictive(
    module=module,
    variables=dict(variables),
    apply_kwargs=tuple(sorted(apply_kwargs.items())),
    shared_mask=bool(shared_mask),
    rng_collection=rng_collection,
    check_dropout=bool(check_dropout),
  )


@struct.dataclass
class NnxPredictive:
  """``f(key, *args)`` for an nnx model: dropout on, BatchNorm on running averages.

  Attributes:
    graphdef: the model's static structure.
    state: its state (parameters, BatchNorm statistics, rng state).
    shared_mask: one mask for the whole batch instead of one per example.
    check_dropout: raise if the model has no ``nnx.Dropout``.
  """

  graphdef: Any = struct.field(pytree_node=False)
  state: Any
  shared_mask: bool = struct.field(pytree_node=False, default=False)
  check_dropout: bool = struct.field(pytree_node=False, default=True)

  def __call__(self, key: jax.Array, *args: Any) -> Any:
    return _call(self._apply, self.shared_mask, key, args)

  def _apply(self, key: jax.Array, *args: Any) -> Any:
    model = nnx.merge(self.graphdef, self.state)
    dropouts = 0
    for _, sub in nnx.iter_modules(model):
      if isinstance(sub, nnx.Dropout):
        # Each layer gets its own stream derived from the sample's key.
        sub.deterministic = False
        sub.rngs = nnx.Rngs(**{sub.rng_collection: jax.random.fold_in(key, dropouts)})[
          sub.rng_collection
        ]
        dropouts += 1
      elif isinstance(sub, nnx.BatchNorm):
        sub.use_running_average = True
    if self.check_dropout and not dropouts:
      raise ValueError(
        f"{type(model).__name__} has no nnx.Dropout layer, so every MC sample would "
        "be the same. Add dropout, or pass check_dropout=False."
      )
    return model(*args)


def from_nnx(
  model: nnx.Module, *, shared_mask: bool = False, check_dropout: bool = True
) -> NnxPredictive:
  """Turns an nnx model into a predictive function ``f(key, *args)``.

  The model is split into its structure and state; each call merges a copy,
  switches every ``nnx.Dropout`` on with a stream derived from ``key`` (the
  model's own rng counters are neither used nor advanced) and every
  ``nnx.BatchNorm`` to its running averages. ``model`` itself is not changed.

  Args:
    model: an ``nnx.Module``.
    shared_mask: one mask for the whole batch (see :func:`from_linen`).
    check_dropout: raise ``ValueError`` when the model has no dropout layer.

  Returns:
    A pytree callable ``f(key, *args)``.
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
  graphdef, state = nnx.split(model)
  return NnxPredictive(
    graphdef=graphdef, state=state, shared_mask=bool(shared_mask), check_dropout=bool(check_dropout)
  )
