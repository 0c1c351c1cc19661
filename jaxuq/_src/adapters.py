"""Adapters: a Flax model becomes a pure predictive function ``f(key, x)``.

The returned functions are pytrees (their variables are leaves), so samplers
pass the weights to jit as arguments instead of baking them in as constants,
and two predictive functions of the same module share one compilation.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxuq._src.dropout import (
  MASK_COLLECTION,
  Dropout,
  check_dropout_input,
  forced_flax_dropout,
  layer_name,
)
from jaxuq._src.filtering import as_arrays
from jaxuq._src.interception import DROPOUT_LAYERS, first_input, intercept_calls
from jaxuq._src.keys import check_key_type, check_rate, traced_rate_error

# apply() arguments the adapter sets itself, and why a caller may not.
_RESERVED = {
  "rngs": "the adapter feeds each sample's key to the dropout rng stream itself; pass "
  "the key as f(key, x) (or mc_sample(f, key, x, ...)) and name the stream with rng_collection=",
  "mutable": "the adapter never updates the variables (BatchNorm stays on its running averages)",
}


def _shared_over_batch(one: Any, key: jax.Array, args: tuple) -> Any:
  """Runs ``one(key, *args)`` example by example with the same key.

  Every example sees the same random draws, so each sample is one coherent
  network (one function draw); the mask is drawn once, not per example.
  """

  shapes = [tuple(jnp.shape(a)) for a in jax.tree.leaves(args)]
  sizes = {s[0] for s in shapes if s}
  if not args or any(not s for s in shapes) or len(sizes) > 1:
    raise ValueError(
      "shared_mask=True runs the model on one example at a time, along the leading (batch) "
      f"axis of every argument, so each needs one of the same size; got shapes {shapes}. "
      "Pass values without a batch axis inside the model (or a lambda closing over them), "
      "or use shared_mask=False"
    )

  def per_example(*example):
    out = one(key, *(a[None] for a in example))
    leading = [tuple(jnp.shape(y)) for y in jax.tree.leaves(out)]
    if any(not s or s[0] != 1 for s in leading):
      raise ValueError(
        "shared_mask=True runs the model on a batch of one example and takes the leading "
        f"axis of each output as that batch, but the outputs' shapes are {leading} (each "
        "needs a leading axis of size 1 there); return outputs with the batch axis first, "
        "or use shared_mask=False"
      )
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

  # By identity: the generated hash would hash the weights (a dict: unhashable), and
  # jax.jit(f) needs a hashable f. Equal-weight copies are different functions to jit.
  __hash__ = object.__hash__

  def __call__(self, key: jax.Array, *args: Any) -> Any:
    check_key_type(key)
    return _call(self._apply, self.shared_mask, key, as_arrays(args))

  def _apply(self, key: jax.Array, *args: Any) -> Any:
    rates: list[float] = []  # of the dropout layers that ran

    def force(module, call, fargs, fkwargs):
      if isinstance(module, nn.BatchNorm):
        _check_running_average(module, fargs, fkwargs)
        return call(*fargs, **fkwargs)
      if isinstance(module, nn.MultiHeadDotProductAttention):
        rate = _rate(module.dropout_rate, module, "dropout_rate")
        if rate > 0.0:  # its own dropout on the attention weights: on, fed by the key
          rates.append(rate)
          return _attention_on(module, call, fargs, fkwargs, self.rng_collection)
        return call(*fargs, **fkwargs)
      rates.append(_rate(module.rate, module))
      self._check_collection(module)
      return _dropout_on(module, fargs, fkwargs)

    with intercept_calls((*DROPOUT_LAYERS, nn.BatchNorm, nn.MultiHeadDotProductAttention), force):
      out = self.module.apply(
        self.variables, *args, rngs={self.rng_collection: key}, **dict(self.apply_kwargs)
      )
    if self.check_dropout:
      _check_dropout_ran(type(self.module).__name__, "flax.linen.Dropout or jaxuq.Dropout", rates)
    return out

  def _check_collection(self, module: nn.Module) -> None:
    if module.rng_collection == self.rng_collection or module.rate == 0.0:
      return
    if module.has_variable(MASK_COLLECTION, "keep"):  # an explicit mask draws nothing
      return
    raise ValueError(
      f"dropout layer {layer_name(module)} draws from the rng collection "
      f"{module.rng_collection!r}, but the adapter feeds the key to "
      f"{self.rng_collection!r}. Pass rng_collection={module.rng_collection!r} to "
      "from_linen (every dropout layer must use that one collection)."
    )


def _check_running_average(module: nn.BatchNorm, fargs: tuple, fkwargs: dict) -> None:
  """Raises if a BatchNorm layer would normalise with the batch's own statistics."""
  flag = fkwargs.get("use_running_average", fargs[1] if len(fargs) > 1 else None)
  if flag is None:
    flag = module.use_running_average
  if flag is False:
    raise ValueError(
      f"{layer_name(module)} runs with use_running_average=False (training mode), so it "
      "would normalise with each batch's statistics and try to update batch_stats. MC "
      "dropout keeps BatchNorm on its running averages while dropout samples: pass the "
      "model's inference setting to from_linen (e.g. train=False); dropout is switched "
      "on whatever its flags say."
    )


def _attention_on(
  module: nn.MultiHeadDotProductAttention, call: Any, fargs: tuple, fkwargs: dict, stream: str
) -> Any:
  """Runs a linen attention layer with its dropout on, the mask drawn from ``stream``.

  Flax refuses ``deterministic`` at call time when the constructor set it, so
  the attribute of this (per-call, bound) instance is cleared for the call.
  """
  kwargs = {**fkwargs, "deterministic": False, "dropout_rng": module.make_rng(stream)}
  fixed = module.deterministic
  if fixed is None:
    return call(*fargs, **kwargs)
  object.__setattr__(module, "deterministic", None)
  try:
    return call(*fargs, **kwargs)
  finally:
    object.__setattr__(module, "deterministic", fixed)


def _rate(value: Any, layer: Any, field: str = "rate") -> float:
  """A dropout layer's rate as a float; a traced one (Flax cannot branch on it either) refused."""
  try:
    return float(value)
  except jax.errors.ConcretizationTypeError:
    name = getattr(layer, "name", None)
    where = f"{type(layer).__name__} {name!r}" if isinstance(name, str) else type(layer).__name__
    raise traced_rate_error(f"the {field} of {where}") from None


def _check_dropout_ran(model: str, layers: str, rates: list[float]) -> None:
  """Raises unless a dropout layer with a positive rate ran (``rates``: those that ran)."""
  if not rates:
    raise ValueError(
      f"{model} ran no dropout layer ({layers}), so every MC sample would be the same. "
      "Add dropout to the model, or pass check_dropout=False if it draws its own "
      "randomness from the key."
    )
  if max(rates) == 0.0:
    raise ValueError(
      f"{model} ran {len(rates)} dropout layer(s), all with rate 0: no dropout layer "
      "with a positive rate ran, so every MC sample would be the same. Give a dropout "
      "layer a rate in (0, 1), or pass check_dropout=False."
    )


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
  jaxuq's packed masks: same distribution, cheaper bits). A
  ``flax.linen.MultiHeadDotProductAttention`` with a ``dropout_rate`` drops
  its attention weights too (Flax's own masks, from the same stream), whatever
  its ``deterministic`` flag says. BatchNorm must run on
  its running averages: ``apply_kwargs`` select inference mode for it (e.g.
  ``train=False``), and a BatchNorm layer in training mode is refused; the
  variables are never updated. Inputs that are nested Python lists of numbers
  are converted with ``jnp.asarray``.

  Args:
    module: a ``flax.linen.Module``.
    variables: its variables, a mapping with at least ``'params'``.
    shared_mask: if true, one mask is shared by every example in the batch
      (each sample is one coherent network: smooth curves, joint metrics); by
      default each example gets its own mask, as in Keras and PyTorch. The
      model then runs on one example at a time (vmapped, the same key for
      each), so it must not mix the examples of a batch (batch statistics,
      attention across the leading axis).
    rng_collection: the rng stream the dropout layers draw from.
    check_dropout: raise ``ValueError`` when a call runs no dropout layer with
      a positive rate (every sample would be the same).
    **apply_kwargs: passed to ``module.apply`` (static, hashable values), except
      ``rngs`` and ``mutable``, which the adapter sets itself.

  Returns:
    A pytree callable ``f(key, *args)``, with the variables as its leaves.
    Calling it raises ``ValueError`` when a dropout layer draws from another
    rng collection than ``rng_collection``, a BatchNorm layer runs in training
    mode, or (with ``check_dropout``) no dropout layer with a positive rate ran;
    ``TypeError`` when a dropout layer gets integer or boolean input.

  Raises:
    TypeError: ``module`` is not a linen module, ``variables`` not a mapping, or
      ``apply_kwargs`` holds ``rngs`` or ``mutable`` or an unhashable value (an
      array, a list).
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
  if not isinstance(rng_collection, str):
    raise TypeError(f"rng_collection must be a str, got {rng_collection!r}")
  for name, why in _RESERVED.items():
    if name in apply_kwargs:
      raise TypeError(f"from_linen does not take {name}=: {why}.")
  for name, value in apply_kwargs.items():
    if not _hashable(value):
      raise TypeError(
        f"from_linen's keyword {name}= must be a static, hashable value (it is part of the "
        f"compiled program's identity), got {type(value).__name__}; pass arrays "
        "as positional inputs instead (mc_sample(f, key, x, value) calls module.apply(variables, "
        "x, value)), or a tuple for a few numbers"
      )
  return LinenPredictive(
    module=module,
    variables=dict(variables),
    apply_kwargs=tuple(sorted(apply_kwargs.items())),
    shared_mask=bool(shared_mask),
    rng_collection=rng_collection,
    check_dropout=bool(check_dropout),
  )


def _hashable(value: object) -> bool:
  try:
    hash(value)
  except TypeError:
    return False
  return True


@functools.cache
def _sampling_class(cls: type) -> type:
  """A subclass of an nnx layer whose ``__call__`` ignores its call-time switches.

  Dropout always drops, from the stream the adapter set (a call-time
  ``deterministic`` or ``rngs`` is overridden), and so does an attention
  layer's dropout on its weights; BatchNorm always uses its
  running averages (a call-time ``use_running_average`` is overridden).
  """
  if issubclass(cls, nnx.Dropout):

    def drop(self, inputs, *args, **kwargs):
      check_dropout_input(inputs, self.broadcast_dims, f"nnx layer {cls.__name__}")
      ran = _NNX_RATES.get()
      if ran is not None:
        ran.append(_rate(self.rate, self))
      return cls.__call__(self, inputs, deterministic=False)

    return type(cls.__name__, (cls,), {"__call__": drop, "__module__": cls.__module__})

  if issubclass(cls, nnx.MultiHeadAttention):

    def attend(self, *args, **kwargs):
      ran = _NNX_RATES.get()
      if ran is not None:
        ran.append(_rate(self.dropout_rate, self, "dropout_rate"))
      kwargs = {k: v for k, v in kwargs.items() if k not in ("deterministic", "rngs")}
      return cls.__call__(self, *args, deterministic=False, rngs=self.rngs, **kwargs)

    return type(cls.__name__, (cls,), {"__call__": attend, "__module__": cls.__module__})

  def normalize(self, x, *args, mask=None, **kwargs):
    return cls.__call__(self, x, use_running_average=True, mask=mask)

  return type(cls.__name__, (cls,), {"__call__": normalize, "__module__": cls.__module__})


# The rates of the nnx dropout layers that ran in the current NnxPredictive call.
_NNX_RATES: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
  "jaxuq_nnx_rates", default=None
)


@struct.dataclass
class NnxPredictive:
  """``f(key, *args)`` for an nnx model: dropout on, BatchNorm on running averages.

  Attributes:
    graphdef: the model's static structure.
    state: its state (parameters, BatchNorm statistics, rng state).
    shared_mask: one mask for the whole batch instead of one per example.
    check_dropout: raise if no ``nnx.Dropout`` with a positive rate runs.
  """

  graphdef: Any = struct.field(pytree_node=False)
  state: Any
  shared_mask: bool = struct.field(pytree_node=False, default=False)
  check_dropout: bool = struct.field(pytree_node=False, default=True)

  # By identity: the generated hash would hash the weights (a dict: unhashable), and
  # jax.jit(f) needs a hashable f. Equal-weight copies are different functions to jit.
  __hash__ = object.__hash__

  def __call__(self, key: jax.Array, *args: Any) -> Any:
    check_key_type(key)
    return _call(self._apply, self.shared_mask, key, as_arrays(args))

  def _apply(self, key: jax.Array, *args: Any) -> Any:
    # a copy: switching it leaves the model. The state's Variables are rebuilt here (a tree
    # map unflattens new ones), so that they belong to the trace this call runs in: Variables
    # made outside it (the model's own, captured by a jax.vmap or jax.jit around this call)
    # make Flax refuse the model's own transforms (nnx.scan, nnx.vmap) and Variable updates.
    model = nnx.merge(self.graphdef, jax.tree.map(lambda a: a, self.state))
    _reseed_own_streams(model, key)
    layer = attention = 0
    for _, sub in nnx.iter_modules(model):
      if isinstance(sub, nnx.Dropout):
        # Layer j draws as if called with rngs=nnx.Rngs(fold_in(key, j)); a stacked layer
        # (built under nnx.vmap, run by nnx.vmap or nnx.scan) gets split keys of its shape.
        base = jax.random.fold_in(key, layer)
        shape = () if sub.rngs is None else tuple(sub.rngs.key[...].shape)
        if shape:
          sub.rngs = nnx.RngStream(jax.random.split(base, shape), tag=sub.rng_collection)
        else:
          sub.rngs = nnx.Rngs(**{sub.rng_collection: base})[sub.rng_collection]
        sub.deterministic = False
        layer += 1
      elif (
        isinstance(sub, nnx.MultiHeadAttention)
        and _rate(sub.dropout_rate or 0.0, sub, "dropout_rate") > 0.0
      ):
        # Attention layer j drops attention weights from a stream of fold_in(key, 2**30 + j).
        stream = nnx.Rngs(dropout=jax.random.fold_in(key, ATTENTION_STREAMS + attention))
        sub.rngs = stream["dropout"]
        attention += 1
      elif not isinstance(sub, nnx.BatchNorm):
        continue
      sub.__class__ = _sampling_class(type(sub))
    rates: list[float] = []
    token = _NNX_RATES.set(rates)
    try:
      # linen layers inside flax.nnx.bridge.ToNNX: their dropout switched on too, drawing
      # from the bridge's own (reseeded) rng streams
      with intercept_calls(DROPOUT_LAYERS, _linen_dropout_in_nnx):
        out = model(*args)
    finally:
      _NNX_RATES.reset(token)
    if self.check_dropout:
      _check_dropout_ran(type(model).__name__, "nnx.Dropout", rates)
    return out


def _dropout_on(module: Any, fargs: tuple, fkwargs: dict) -> Any:
  """A linen dropout layer (jaxuq's or Flax's) applied with its mask drawn, whatever its flags."""
  inputs = first_input(fargs, fkwargs)
  if isinstance(module, Dropout):
    return module.stochastic(inputs)
  return forced_flax_dropout(module, inputs)


def _linen_dropout_in_nnx(module, call, fargs, fkwargs):
  """A linen dropout layer run by an nnx model (``bridge.ToNNX``): always on."""
  ran = _NNX_RATES.get()
  if ran is not None:
    ran.append(_rate(module.rate, module))
  try:
    return _dropout_on(module, fargs, fkwargs)
  except flax.errors.InvalidRngError:
    raise ValueError(
      f"linen layer {layer_name(module)} inside an nnx model (flax.nnx.bridge.ToNNX) has no "
      f"{module.rng_collection!r} rng stream to draw its mask from; build the bridge with "
      "rngs=nnx.Rngs(...) holding that stream"
    ) from None


# The model's own rng streams draw from fold_in(key, OWN_STREAMS + i), attention layers
# from fold_in(key, ATTENTION_STREAMS + j); the dropout layers use fold_in(key, j) for small
# j, so none shares a key.
OWN_STREAMS = 2**31
ATTENTION_STREAMS = 2**30


def _reseed_own_streams(model: nnx.Module, key: jax.Array) -> None:
  """Gives every ``nnx.RngStream`` the model keeps a fresh stream seeded from the sample's key.

  A model that draws its own noise (``self.rngs.noise()``) would otherwise
  advance a counter created outside the sampler's trace (an nnx trace error
  under ``vmap``), or give every sample the same draw. Stream ``i`` (in
  ``nnx.iter_graph`` order) starts from ``fold_in(key, OWN_STREAMS + i)`` with
  its counter at 0; the caller's model keeps its own streams, unadvanced.
  """
  nodes = [node for _, node in nnx.iter_graph(model)]
  fresh: dict[int, nnx.RngStream] = {}
  for node in nodes:
    if isinstance(node, nnx.RngStream):
      base = jax.random.fold_in(key, OWN_STREAMS + len(fresh))
      shape = tuple(node.key[...].shape)
      seed = base if not shape else jax.random.split(base, shape)
      fresh[id(node)] = nnx.RngStream(seed, tag=node.tag)
  if not fresh:
    return
  for node in nodes:  # every reference to a stream, shared ones included
    if isinstance(node, nnx.RngStream):
      continue
    if isinstance(node, list):
      for i, value in enumerate(node):
        if id(value) in fresh:
          node[i] = fresh[id(value)]
    elif hasattr(node, "__dict__"):
      for name, value in list(vars(node).items()):
        if id(value) in fresh and isinstance(value, nnx.RngStream):
          setattr(node, name, fresh[id(value)])


def from_nnx(
  model: nnx.Module, *, shared_mask: bool = False, check_dropout: bool = True
) -> NnxPredictive:
  """Turns an nnx model into a predictive function ``f(key, *args)``.

  The model is split into its structure and state; each call merges a copy in
  which every ``nnx.Dropout`` drops and every ``nnx.BatchNorm`` uses its
  running averages, whatever their attributes or call-time arguments say
  (``deterministic=not train``, ``rngs=``, ``use_running_average=``). The
  ``j``-th dropout layer (in ``nnx.iter_modules`` order) draws its masks as
  ``nnx.Dropout`` does when called with ``rngs=nnx.Rngs(dropout=
  jax.random.fold_in(key, j))`` (its own ``rng_collection`` in place of
  ``dropout``). The ``j``-th ``nnx.MultiHeadAttention`` with a
  ``dropout_rate`` drops its attention weights whatever ``deterministic`` says,
  from a stream seeded with ``fold_in(key, 2**30 + j)``. Any other
  ``nnx.RngStream`` the model keeps (its own noise,
  ``self.rngs.noise()``) draws from a fresh stream seeded with
  ``fold_in(key, 2**31 + i)`` (``i``: its place in ``nnx.iter_graph``), so
  that randomness too varies from sample to sample, the same in
  :func:`jaxuq.mc_sample` and :func:`jaxuq.sequential_sample`. The model's
  own rng counters are neither used nor advanced.
  ``model`` itself is not changed. Inputs that are nested Python lists of
  numbers are converted with ``jnp.asarray``.

  Args:
    model: an ``nnx.Module``.
    shared_mask: one mask for the whole batch (see :func:`from_linen`).
    check_dropout: raise ``ValueError`` when a call runs no dropout layer with
      a positive rate.

  Returns:
    A pytree callable ``f(key, *args)``.

  Raises:
    TypeError: ``model`` is not an nnx module.
    ValueError: an ``nnx.Dropout`` rate is outside ``[0, 1)``.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxuq
    >>> from flax import nnx
    >>> class Net(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.dense = nnx.Linear(1, 8, rngs=rngs)
    ...     self.drop = nnx.Dropout(0.5)
    ...   def __call__(self, x, train=False):
    ...     return self.drop(self.dense(x), deterministic=not train)
    >>> f = jaxuq.from_nnx(Net(nnx.Rngs(0)))
    >>> s = jaxuq.mc_sample(f, jax.random.key(1), jnp.ones((4, 1)), num_samples=10)
    >>> s.shape, bool(s.std(axis=0).max() > 0)
    ((10, 4, 8), True)
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
  for path, sub in nnx.iter_modules(model):
    where = "/".join(map(str, path)) or type(sub).__name__
    if isinstance(sub, nnx.Dropout):
      check_rate(sub.rate, f"the rate of nnx.Dropout {where!r}")
  graphdef, state = nnx.split(model)
  return NnxPredictive(
    graphdef=graphdef, state=state, shared_mask=bool(shared_mask), check_dropout=bool(check_dropout)
  )
