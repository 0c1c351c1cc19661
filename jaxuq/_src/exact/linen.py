"""A linen predictive function run with explicit masks instead of drawn ones.

:func:`masked` wraps a :class:`jaxuq.LinenPredictive` (what
:func:`jaxuq.from_linen` returns) into ``g(key, masks, *args)``: the very same
``module.apply`` call that ``mc_sample`` runs, with each dropout layer's mask
put into the variable collection ``'dropout_masks'`` instead of drawn from the
key. :func:`discover` finds the dropout layers and their mask shapes by
tracing the predictive function once under ``jax.eval_shape`` (nothing runs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
from flax import struct, traverse_util

from jaxuq._src.adapters import LinenPredictive, NnxPredictive
from jaxuq._src.dropout import MASK_COLLECTION
from jaxuq._src.exact.engine import MaskLayout
from jaxuq._src.interception import DROPOUT_LAYERS, first_input, intercept_calls


def check_linen(fn: object) -> LinenPredictive:
  if isinstance(fn, NnxPredictive):
    raise TypeError(
      "exact enumeration needs explicit masks, which nnx.Dropout cannot take; build the "
      "model with flax.linen and pass jaxuq.from_linen(module, variables)"
    )
  if not isinstance(fn, LinenPredictive):
    raise TypeError(
      "fn must be a predictive function from jaxuq.from_linen(module, variables), got "
      f"{type(fn).__name__}: a plain f(key, x) hides its masks, so they cannot be enumerated"
    )
  return fn


def _path(module: nn.Module) -> tuple[str, ...]:
  assert module.scope is not None  # bound: it is running
  return tuple(module.scope.path)


def _batch_size(args: tuple) -> int:
  leaves = jax.tree.leaves(args)
  if not leaves or not getattr(leaves[0], "shape", ()):
    raise ValueError("the inputs must be arrays with a leading batch axis, got none")
  return int(leaves[0].shape[0])


def discover(fn: LinenPredictive, args: tuple) -> tuple[MaskLayout, tuple[tuple[str, ...], ...]]:
  """The dropout layers ``fn(key, *args)`` runs, traced once with ``jax.eval_shape``.

  Returns the mask layout and each layer's module path.

  Each layer's mask covers one example (batch axis of size 1, shared over the
  batch; each input's own distribution is unchanged) and is shared along the
  layer's ``broadcast_dims``. Layers with rate 0 are the identity and skipped.

  Raises:
    ValueError: a dropout layer runs more than once per pass (one mask per
      layer could not stand for its several draws), or its input does not have
      the batch axis first.
  """
  found: dict[tuple[str, ...], tuple[tuple[int, ...], float]] = {}
  batch = _batch_size(args)

  def record(module, call, fargs, fkwargs):
    path = _path(module)
    inputs = first_input(fargs, fkwargs)
    name = "/".join(path) or type(module).__name__
    if path in found:
      raise ValueError(
        f"dropout layer {name!r} runs more than once per forward pass; exact "
        "enumeration gives each layer one mask, so it cannot model several draws. "
        "Use a separate dropout layer for each call."
      )
    shape = tuple(int(d) for d in inputs.shape)
    if not shape or shape[0] not in (batch, 1):
      raise ValueError(
        f"dropout layer {name!r} gets an input of shape {shape} whose leading axis is "
        f"not the batch axis (batch size {batch}); enumeration needs the batch axis first"
      )
    broadcast = {d % len(shape) for d in module.broadcast_dims}
    mask = tuple(1 if (d == 0 or d in broadcast) else n for d, n in enumerate(shape))
    found[path] = (mask, float(module.rate))
    return call(*fargs, **fkwargs)

  def trace(f, a):
    with intercept_calls(DROPOUT_LAYERS, record):
      return f(jax.random.key(0), *a)

  jax.eval_shape(trace, fn, args)  # abstract weights and inputs work too
  layers = [(p, s, r) for p, (s, r) in found.items() if r > 0.0 and math.prod(s) > 0]
  layout = MaskLayout(
    shapes=tuple(s for _, s, _ in layers),
    keep_probs=tuple(1.0 - r for _, _, r in layers),
    names=tuple("/".join(p) or "dropout" for p, _, _ in layers),
  )
  return layout, tuple(p for p, _, _ in layers)


def _require_masks(module, call, fargs, fkwargs):
  if module.rate > 0.0 and not module.has_variable(MASK_COLLECTION, "keep"):
    raise ValueError(
      f"dropout layer {'/'.join(_path(module))!r} ran without an explicit mask; the "
      "model's dropout layers changed between tracing and enumeration"
    )
  return call(*fargs, **fkwargs)


@struct.dataclass
class MaskedLinen:
  """``g(key, masks, *args)``: ``fn(key, *args)`` with every dropout mask given.

  Attributes:
    predictive: the linen predictive function (its variables are leaves).
    paths: each dropout layer's module path, in the order of ``masks``.
  """

  predictive: LinenPredictive
  paths: tuple[tuple[str, ...], ...] = struct.field(pytree_node=False)

  def __call__(self, key: jax.Array, masks: tuple[jax.Array, ...], *args: Any) -> Any:
    tree = traverse_util.unflatten_dict(
      {path + ("keep",): m for path, m in zip(self.paths, masks, strict=True)}
    )
    variables = {**self.predictive.variables, MASK_COLLECTION: tree}
    with intercept_calls(DROPOUT_LAYERS, _require_masks):
      return dataclasses.replace(self.predictive, variables=variables)(key, *args)


def masked(fn: LinenPredictive, paths: tuple[tuple[str, ...], ...]) -> MaskedLinen:
  return MaskedLinen(fn, paths)
