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
import numpy as np
from flax import struct, traverse_util

from jaxuq._src.adapters import LinenPredictive, NnxPredictive
from jaxuq._src.cast import CastPredictive
from jaxuq._src.dropout import MASK_COLLECTION, check_layer_input, layer_rate
from jaxuq._src.exact.engine import MaskLayout
from jaxuq._src.interception import DROPOUT_LAYERS, first_input, intercept_calls


def check_linen(fn: object) -> LinenPredictive:
  if isinstance(fn, NnxPredictive):
    raise TypeError(
      "exact enumeration needs explicit masks, which nnx.Dropout cannot take; build the "
      "model with flax.linen and pass jaxuq.from_linen(module, variables)"
    )
  if isinstance(fn, CastPredictive):
    raise TypeError(
      "exact enumeration takes the function from jaxuq.from_linen itself, got a "
      f"with_dtype(..., {fn.dtype}) function; to enumerate in {fn.dtype}, cast the weights instead: "
      "jaxuq.from_linen(module, jax.tree.map(lambda a: a.astype(dtype), variables))"
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


def _dropout_inputs(fn: LinenPredictive, args: Any) -> dict[tuple[str, ...], tuple[Any, ...]]:
  """Each dropout layer's (input shape, rate, broadcast_dims), traced under ``eval_shape``.

  Raises:
    ValueError: a dropout layer runs more than once per pass.
  """
  found: dict[tuple[str, ...], tuple[Any, ...]] = {}

  def record(module, call, fargs, fkwargs):
    path = _path(module)
    if path in found:
      raise ValueError(
        f"dropout layer {'/'.join(path) or type(module).__name__!r} runs more than once per "
        "forward pass; exact enumeration gives each layer one mask, so it cannot model "
        "several draws. Use a separate dropout layer for each call."
      )
    shape = tuple(int(d) for d in first_input(fargs, fkwargs).shape)
    found[path] = (shape, layer_rate(module), tuple(module.broadcast_dims))
    return call(*fargs, **fkwargs)

  def trace(f, a):
    with intercept_calls(DROPOUT_LAYERS, record):
      return f(jax.random.key(0), *a)

  jax.eval_shape(trace, fn, args)  # abstract weights and inputs work too
  return found


def _with_batch(args: tuple, batch: int, other: int) -> Any:
  """``args`` as abstract arrays, each leading axis of size ``batch`` made ``other``."""

  def resize(x: Any) -> Any:
    shape = tuple(getattr(x, "shape", ()))
    if shape and shape[0] == batch:
      shape = (other, *shape[1:])
    return jax.ShapeDtypeStruct(shape, jax.numpy.result_type(x))

  return jax.tree.map(resize, args)


def discover(fn: LinenPredictive, args: tuple) -> tuple[MaskLayout, tuple[tuple[str, ...], ...]]:
  """The dropout layers ``fn(key, *args)`` runs, traced with ``jax.eval_shape``.

  Returns the mask layout and each layer's module path.

  Each layer's mask covers one example (batch axis of size 1, shared over the
  batch; each input's own distribution is unchanged) and is shared along the
  layer's ``broadcast_dims``. Layers with rate 0 are the identity and skipped.
  The model is traced at the batch size of ``args`` and at one more, so that
  an input whose leading axis only happens to equal the batch size (a
  time-major ``(T, B, D)`` with ``T == B``) is told from the batch axis.

  Raises:
    ValueError: a dropout layer runs more than once per pass (one mask per
      layer could not stand for its several draws), or its input does not have
      the batch axis first.
  """
  batch = _batch_size(args)
  found = _dropout_inputs(fn, args)
  try:
    grown = _dropout_inputs(fn, _with_batch(args, batch, batch + 1))
  except Exception:  # noqa: BLE001 - a model fixed to one batch size: judge by sizes alone
    grown = None
  for path, (shape, _, _) in found.items():
    name = "/".join(path) or "dropout"
    other = None if grown is None or path not in grown else grown[path][0]
    batch_first = bool(shape) and shape[0] in (batch, 1)
    if batch_first and other is not None:
      follows = (batch + 1, *shape[1:])  # the leading axis is the batch's
      fixed = shape  # no batch axis at all (a mask shared over the batch anyway)
      if shape[0] == batch and batch != 1:
        batch_first = other == follows  # the same size at batch + 1: not the batch axis
      elif batch != 1:
        batch_first = other == fixed
      else:
        batch_first = other in (follows, fixed)
    if not batch_first:
      raise ValueError(
        f"dropout layer {name!r} gets an input of shape {shape} whose leading axis is "
        f"not the batch axis (batch size {batch}"
        + ("" if other is None else f"; with a batch of {batch + 1} its shape is {other}")
        + "); enumeration needs the batch axis first"
      )
  layers = []
  for path, (shape, rate, dims) in found.items():
    mask = _mask_shape(shape, dims)
    if rate > 0.0 and math.prod(mask) > 0:
      layers.append((path, mask, rate))
  layout = MaskLayout(
    shapes=tuple(s for _, s, _ in layers),
    keep_probs=tuple(1.0 - r for _, _, r in layers),
    names=tuple("/".join(p) or "dropout" for p, _, _ in layers),
  )
  return layout, tuple(p for p, _, _ in layers)


def _mask_shape(shape: tuple[int, ...], dims: Any) -> tuple[int, ...]:
  """One example's mask over an input of ``shape``, shared along ``dims`` (and the batch)."""
  broadcast = {d % len(shape) for d in dims} if shape else set()
  return tuple(1 if (d == 0 or d in broadcast) else n for d, n in enumerate(shape))


def _require_masks(module, call, fargs, fkwargs):
  # A concrete float: a rate given as a jnp array made `module.rate > 0.0` a tracer here.
  if layer_rate(module) > 0.0 and not module.has_variable(MASK_COLLECTION, "keep"):
    inputs = first_input(fargs, fkwargs)
    shape = tuple(getattr(inputs, "shape", ()))
    if shape and math.prod(_mask_shape(shape, module.broadcast_dims)) == 0:
      # No unit to drop (a zero-width input): discover gives such a layer no mask. The
      # sampling path's checks still apply; dropping nothing from nothing is the input.
      check_layer_input(module, inputs)
      return inputs
    raise ValueError(
      f"dropout layer {'/'.join(_path(module))!r} ran without an explicit mask: it sits "
      "inside a lifted transform (nn.vmap, nn.scan, nn.jit, nn.remat, ...) that does not "
      "carry the masks' variable collection, or the model's dropout layers changed between "
      "tracing and enumeration. Exact enumeration needs the dropout layers outside lifted "
      "transforms."
    )
  return call(*fargs, **fkwargs)


def check_rows_independent(
  g: MaskedLinen, shapes: tuple[tuple[int, ...], ...], args: tuple
) -> None:
  """Raises if an example's output depends on the masks of other examples in the batch.

  Enumeration gives every example the same mask per unit; each example's
  distribution is then that of its own per-example masks (what ``mc_sample``
  draws) only if the model treats the examples separately. A graph network
  (``adj @ h``), a batch mean or attention across the batch mixes them. The
  model runs (once, vmapped) with every unit kept and then, for each bit ``b``
  of the example index, with the units of the examples whose bit ``b`` is 1
  (then 0) all dropped: two different examples differ in some bit, so a
  dependence of one on the other's masks changes an output that must not move.

  With per-example masks and a batch of two or more, every output must have
  the batch axis first (one row per example): an output reduced over the
  batch (``y.mean(0)``, even with ``keepdims=True``) or laid out otherwise
  belongs to no one example, so it is refused before the probes run. A batch
  of one passes whatever its outputs.

  Raises:
    ValueError: an output has no leading batch axis, or the model mixes the
      examples of its batch.
  """
  batch = _batch_size(args)
  if batch < 2:
    return
  found = _dropout_inputs(g.predictive, args)
  per_row = [found[p][0][0] == batch for p in g.paths]
  if not any(per_row):
    return  # no layer has a per-example mask: shared masks are the model's own
  rows = np.arange(batch)
  # probe 0 keeps everything; the others drop the examples in `dropped[p]`
  dropped = [np.zeros(batch, bool)]
  for b in range(max(1, (batch - 1).bit_length())):
    bit = (rows >> b) & 1 == 1
    dropped += [bit, ~bit]
  keep_rows = ~np.stack(dropped)  # (probes, batch)
  masks = tuple(
    np.broadcast_to(
      keep_rows.reshape(len(dropped), batch, *([1] * (len(s) - 1))),
      (len(dropped), batch, *s[1:]),
    )
    if row
    else np.ones((len(dropped), *s), bool)
    for s, row in zip(shapes, per_row, strict=True)
  )
  key = jax.random.key(0)
  probes = jax.vmap(lambda m: g(key, m, *args))
  probe_masks = tuple(jax.numpy.asarray(m) for m in masks)
  shapes_out = jax.eval_shape(probes, probe_masks)
  for path, y in jax.tree_util.tree_flatten_with_path(shapes_out)[0]:
    if y.ndim < 2 or y.shape[1] != batch:  # nothing computed yet: refused from shapes
      where = f"output leaf {jax.tree_util.keystr(path)}" if path else "the model's output"
      raise ValueError(
        f"{where} has shape {tuple(y.shape[1:])}, without a leading batch axis of size "
        f"{batch}, although the dropout masks are per example: an output reduced over the "
        "batch (such as y.mean(0)) mixes the examples, and enumeration, which shares each "
        "unit's mask across the batch, would not give mc_sample's distribution. Return "
        "per-example outputs with the batch axis first (and reduce the samples "
        "afterwards), or enumerate one example at a time."
      )
  outs = probes(probe_masks)
  for leaf, y in enumerate(jax.tree.leaves(outs)):
    y = np.asarray(y)
    base = y[0]
    scale = float(np.nanmax(np.abs(base), initial=0.0)) or 1.0
    for probe in range(1, len(dropped)):
      kept = ~dropped[probe]
      same = np.isclose(y[probe][kept], base[kept], rtol=1e-4, atol=1e-6 * scale, equal_nan=True)
      if not same.all():
        raise ValueError(
          "the model mixes the examples of its batch (the output of an example changed "
          "when only other examples' dropout masks changed: a graph layer, a batch mean, "
          "attention over the batch). Enumeration shares each unit's mask across the "
          "batch, which equals mc_sample's per-example masks only for models that treat "
          "examples separately, so it would not be exact here."
          + ("" if leaf == 0 else f" (output leaf {leaf})")
        )


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
