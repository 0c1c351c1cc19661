"""The enumeration engine: every dropout mask, in chunks, with its probability.

Pure array code. A model meets it as ``fn(key, masks, *args)``, where ``masks``
is a tuple with one boolean array per dropout layer (``True`` = kept) and
``key`` feeds nothing (the engine checks that). Mask ``i`` keeps unit ``j``
(units numbered across layers in order) when bit ``j`` of ``i`` is set, so its
probability is ``prod_j keep_j**bit_j * (1 - keep_j)**(1 - bit_j)``.

Outputs are computed on the device, ``chunk`` masks vmapped at a time (one
compilation for every chunk); probabilities and every reduction are float64
NumPy on the host, so they sum to 1 to float64 rounding whether or not JAX's
x64 mode is on.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq._src.filtering import StaticPart, combine, partition
from jaxuq._src.memory import per_sample_bytes

DEFAULT_MAX_UNITS = 24  # 2**24 = 16.7 M masks
HARD_MAX_UNITS = 32  # mask indices are uint32
_LOW_BITS = 12  # probabilities: a 2**12 table of the low units times one of the high
# Largest automatic chunk: measured on a 2-core CPU, 2**16..2**18 masks per chunk
# ran 2**24 masks of a small MLP in 0.5-1.0 s, one chunk of 2**21 in 1.3-2.2 s.
MAX_AUTO_CHUNK = 2**16


class MaskLayout(NamedTuple):
  """Where the droppable units are.

  Attributes:
    shapes: one mask shape per dropout layer (one example: batch axis of 1).
    keep_probs: each layer's probability to keep a unit, ``1 - rate``.
    names: each layer's name (its module path), for labels.
  """

  shapes: tuple[tuple[int, ...], ...]
  keep_probs: tuple[float, ...]
  names: tuple[str, ...]

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(math.prod(s) for s in self.shapes)

  @property
  def num_units(self) -> int:
    return sum(self.sizes)

  def unit_keep_probs(self) -> np.ndarray:
    """float64 ``(num_units,)``: each unit's keep probability, in bit order."""
    return np.repeat(np.asarray(self.keep_probs, np.float64), self.sizes)

  def unit_labels(self) -> list[str]:
    """``'name[i]'`` for each unit, in bit order."""
    return [
      f"{n}[{i}]" for n, size in zip(self.names, self.sizes, strict=True) for i in range(size)
    ]


def format_count(num_units: int) -> str:
  """``2**m`` spelled out (with separators) when short, else as a power."""
  return f"{2**num_units:,}" if num_units <= 64 else f"2^{num_units}"


def check_max_units(max_units: object) -> int:
  """``max_units`` as an int: any integer (NumPy's too), not a bool, in ``[0, 32]``."""
  try:
    if isinstance(max_units, (bool, np.bool_)):
      raise TypeError
    value = operator.index(max_units)  # type: ignore[arg-type]
  except TypeError:
    value = -1
  if value < 0:
    raise ValueError(
      f"max_units must be a non-negative int (the largest number of droppable units to "
      f"enumerate), got {max_units!r}; pass e.g. max_units=20"
    )
  if value > HARD_MAX_UNITS:
    raise ValueError(
      f"max_units must be at most {HARD_MAX_UNITS} (uint32 mask indices), got {max_units}"
    )
  return value


def check_enumerable(num_units: int, max_units: int) -> None:
  """Raises ``ValueError`` when ``2**num_units`` masks are more than allowed.

  Called before anything is computed or allocated.
  """
  max_units = check_max_units(max_units)
  if num_units > max_units:
    raise ValueError(
      f"exact enumeration of {num_units} droppable units would take 2^{num_units} = "
      f"{format_count(num_units)} masks, more than the limit of 2^{max_units} "
      f"(max_units={max_units}). Estimate with jaxuq.mc_sample instead, use "
      "jaxuq.exact.closed_form_moments when the only dropout sits right before the "
      "final Dense layer, or raise max_units if you can afford the masks."
    )


def _table(keep: np.ndarray) -> np.ndarray:
  """float64 ``(2**len(keep),)``: the probability of each bit pattern, bit 0 first."""
  table = np.ones(1, np.float64)
  for k in keep:
    table = np.concatenate([table * (1.0 - k), table * k])
  return table


class MaskProbabilities:
  """Probabilities of masks by index: a low-bit table times a high-bit table."""

  def __init__(self, layout: MaskLayout):
    keep = layout.unit_keep_probs()
    self.low_bits = min(_LOW_BITS, keep.size)
    self.low = _table(keep[: self.low_bits])
    self.high = _table(keep[self.low_bits :])

  def __call__(self, start: int, count: int) -> np.ndarray:
    idx = np.arange(start, start + count, dtype=np.int64)
    return self.high[idx >> self.low_bits] * self.low[idx & (2**self.low_bits - 1)]


def index_masks(layout: MaskLayout, index: jax.Array) -> tuple[jax.Array, ...]:
  """The masks of indices ``index`` (``(n,)`` uint32): per layer ``(n, *shape)`` bool."""
  bits = (index[:, None] >> jnp.arange(layout.num_units, dtype=jnp.uint32)[None, :]) & jnp.uint32(1)
  out, offset = [], 0
  for shape, size in zip(layout.shapes, layout.sizes, strict=True):
    out.append(bits[:, offset : offset + size].astype(jnp.bool_).reshape((-1, *shape)))
    offset += size
  return tuple(out)


@functools.partial(jax.jit, static_argnames=("static", "layout", "chunk"))
def _chunk_jit(
  static: StaticPart,
  dynamic: list[Any],
  start: jax.Array,
  args: tuple,
  *,
  layout: MaskLayout,
  chunk: int,
) -> Any:
  fn = combine(static, dynamic)
  masks = index_masks(layout, start + jnp.arange(chunk, dtype=jnp.uint32))
  key = jax.random.key(0)  # feeds nothing; see check_key_unused
  return jax.vmap(lambda ms: fn(key, ms, *args))(masks)


def one_mask(layout: MaskLayout) -> tuple[jax.ShapeDtypeStruct, ...]:
  return tuple(jax.ShapeDtypeStruct(s, jnp.bool_) for s in layout.shapes)


def check_key_unused(fn: Callable[..., Any], layout: MaskLayout, args: tuple) -> None:
  """Raises unless ``fn(key, masks, *args)`` ignores ``key`` (traced, not run).

  With every mask given explicitly, a model that still consumes its key draws
  randomness the enumeration does not cover, so the result would not be exact.
  """
  closed = jax.make_jaxpr(fn)(jax.random.key(0), one_mask(layout), *args)
  use = _key_use(closed.jaxpr, {0})
  if use is not None:
    raise ValueError(
      "the model draws random numbers besides its dropout masks (its key is "
      f"used by {use}), so enumerating the masks would not give its "
      "exact distribution. Enumeration covers jaxuq.Dropout and flax.linen.Dropout only."
    )


# Primitives that only derive keys from keys (or move them): following their outputs is enough.
_KEY_DERIVING = frozenset(
  {
    "random_fold_in",
    "random_split",
    "random_wrap",
    "random_unwrap",
    "reshape",
    "squeeze",
    "expand_dims",
    "broadcast_in_dim",
    "slice",
    "dynamic_slice",
    "concatenate",
    "copy",
  }
)
# Primitives whose inner jaxpr takes the equation's inputs one to one.
_ONE_TO_ONE = frozenset({"pjit", "jit", "closed_call", "core_call", "remat2", "checkpoint"})


def _key_use(jaxpr: Any, tainted_inputs: set[int]) -> str | None:
  """The first primitive that draws from a key derived from the given inputs, or ``None``.

  Keys are followed through derivations (``fold_in``, ``split``, reshapes) and
  into nested jaxprs that take their inputs one to one (Flax's lifted
  ``nn.jit`` and ``nn.remat`` pass the key along even when nothing inside
  draws); any other use counts as a draw.
  """
  tainted = {id(jaxpr.invars[i]) for i in tainted_inputs}
  for eqn in jaxpr.eqns:
    hit = [i for i, v in enumerate(eqn.invars) if id(v) in tainted]
    if not hit:
      continue
    name = eqn.primitive.name
    if name in _KEY_DERIVING:
      tainted.update(id(v) for v in eqn.outvars)
      continue
    inner = eqn.params.get("jaxpr") if name in _ONE_TO_ONE else None
    if inner is None:
      return name
    inner = getattr(inner, "jaxpr", inner)  # a ClosedJaxpr (jit) or a Jaxpr (remat)
    found = _key_use(inner, set(hit))
    if found is not None:
      return f"{found} inside {name}"
    if _returns_tainted(inner, set(hit)):
      tainted.update(id(v) for v in eqn.outvars)
  return None


def _returns_tainted(jaxpr: Any, tainted_inputs: set[int]) -> bool:
  """Whether a nested jaxpr passes a key derived from the given inputs out."""
  tainted = {id(jaxpr.invars[i]) for i in tainted_inputs}
  for eqn in jaxpr.eqns:
    if any(id(v) in tainted for v in eqn.invars):
      tainted.update(id(v) for v in eqn.outvars)
  return any(id(v) in tainted for v in jaxpr.outvars)


def auto_enum_chunk(
  fn: Callable[..., Any], layout: MaskLayout, args: tuple, memory_budget: int
) -> int:
  """Masks per chunk: ``memory_budget`` over one mask's memory, a power of two.

  At most ``MAX_AUTO_CHUNK`` (larger chunks were slower, not faster, on CPU).
  """
  masks = tuple(jnp.ones(s, jnp.bool_) for s in layout.shapes)
  per_mask = per_sample_bytes(lambda k: fn(k, masks, *args), jax.random.key(0))
  fit = max(1, memory_budget // per_mask)
  return int(min(2**layout.num_units, MAX_AUTO_CHUNK, 2 ** int(math.log2(fit))))


def iter_chunks(
  fn: Callable[..., Any], layout: MaskLayout, args: tuple, chunk: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """Yields ``(start, outputs, probs)`` for consecutive chunks of all masks.

  ``outputs`` is ``fn``'s output for masks ``start .. start + len(probs) - 1``
  (a NumPy array with that leading axis), ``probs`` their float64 probabilities.
  """
  total = 2**layout.num_units
  probs = MaskProbabilities(layout)
  static, dynamic = partition(fn)
  chunk = min(chunk, total)
  pending = None
  for start in range(0, total, chunk):
    # Dispatch the next chunk before reading the last one back (async dispatch).
    out = _chunk_jit(static, dynamic, jnp.uint32(start), args, layout=layout, chunk=chunk)
    if pending is not None:
      yield pending[0], np.asarray(pending[1])[: pending[2]], probs(pending[0], pending[2])
    pending = (start, out, min(chunk, total - start))
  assert pending is not None
  yield pending[0], np.asarray(pending[1])[: pending[2]], probs(pending[0], pending[2])


class Moments:
  """Streaming probability-weighted mean, variance and covariance (Chan et al.).

  References:
    Chan, Golub, LeVeque, "Updating formulae and a pairwise algorithm for
    computing sample variances", 1979.
  """

  def __init__(self, covariance: bool):
    self.covariance = covariance
    self.weight = 0.0
    self.mean: np.ndarray | None = None
    self.m2: np.ndarray | None = None
    self.c2: np.ndarray | None = None

  def update(self, y: np.ndarray, w: np.ndarray) -> None:
    y = y.astype(np.float64)
    wc = float(w.sum())
    if wc == 0.0:
      return
    mean_c = np.tensordot(w, y, axes=1) / wc
    d = y - mean_c
    m2_c = np.tensordot(w, d * d, axes=1)
    c2_c = np.einsum("t,t...i,t...j->...ij", w, d, d) if self.covariance else None
    if self.mean is None:
      self.weight, self.mean, self.m2, self.c2 = wc, mean_c, m2_c, c2_c
      return
    assert self.m2 is not None
    total = self.weight + wc
    delta = mean_c - self.mean
    factor = self.weight * wc / total
    self.mean = self.mean + delta * (wc / total)
    self.m2 = self.m2 + m2_c + delta * delta * factor
    if self.covariance:
      assert self.c2 is not None and c2_c is not None
      self.c2 = self.c2 + c2_c + delta[..., :, None] * delta[..., None, :] * factor
    self.weight = total
