"""Monte Carlo sampling over PRNG keys: one jitted vmap, chunked and sharded.

Both samplers evaluate ``fn(keys[i], *args)`` for ``keys = jax.random.split(key,
num_samples)`` and stack the outputs along a new leading axis. ``mc_sample``
does it in one compiled computation; ``sequential_sample`` is the Python loop of
jitted single-key calls that people write today, kept as the baseline.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxuq._src.keys import check_key, check_positive_int, key_impl_name

PyTree = Any
SAMPLE_AXIS = "samples"
# Default memory budget for one chunk of samples on CPU (see
# default_memory_budget); on accelerators a quarter of the device's memory.
DEFAULT_CPU_BUDGET = 8 * 2**20


@dataclasses.dataclass(frozen=True)
class _Static:
  """The non-array part of a predictive function, hashable for jit's cache."""

  treedef: Any
  leaves: tuple[Any, ...]

  def __hash__(self) -> int:
    return hash((self.treedef, tuple(_hash_or_id(x) for x in self.leaves)))

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, _Static) or self.treedef != other.treedef:
      return False
    return all(a is b or _safe_eq(a, b) for a, b in zip(self.leaves, other.leaves, strict=False))


def _hash_or_id(x: Any) -> int:
  try:
    return hash(x)
  except TypeError:
    return id(x)


def _safe_eq(a: Any, b: Any) -> bool:
  try:
    return bool(a == b)
  except Exception:  # noqa: BLE001 - unequal if equality is not a plain bool
    return False


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def partition(fn: Callable[..., Any]) -> tuple[_Static, list[Any]]:
  """Splits a (pytree) callable into its static part and its array leaves.

  A plain function is all static; a pytree callable (such as the adapters'
  predictive functions) passes its arrays to jit as arguments rather than
  baking them into the compiled program as constants.
  """
  leaves, treedef = jax.tree.flatten(fn)
  static = tuple(None if _is_array(x) else x for x in leaves)
  dynamic = [x for x in leaves if _is_array(x)]
  return _Static(treedef, static), dynamic


def _combine(static: _Static, dynamic: Sequence[Any]) -> Callable[..., Any]:
  it = iter(dynamic)
  leaves = [next(it) if x is None else x for x in static.leaves]
  return jax.tree.unflatten(static.treedef, leaves)


def _check_fn(fn: object) -> None:
  if not callable(fn):
    raise TypeError(f"fn must be callable as fn(key, *args), got {type(fn).__name__}")


def _map_chunks(fn: Callable[..., Any], keys: jax.Array, args: tuple, chunk: int) -> PyTree:
  """``fn(keys[i], *args)`` for every i, ``chunk`` keys vmapped at a time."""
  one = lambda k: fn(k, *args)  # noqa: E731
  if chunk >= keys.shape[0]:
    return jax.vmap(one)(keys)
  return jax.lax.map(one, keys, batch_size=chunk)


@functools.partial(
  jax.jit, static_argnames=("static", "num_samples", "chunk_size", "memory_budget", "mesh")
)
def _mc_sample_jit(
  static: _Static,
  dynamic: list[Any],
  key: jax.Array,
  args: tuple,
  *,
  num_samples: int,
  chunk_size: int | None,
  memory_budget: int,
  mesh: Mesh | None,
) -> PyTree:
  fn = _combine(static, dynamic)
  num_devices = 1 if mesh is None else mesh.devices.size
  if chunk_size is None:  # decided while tracing, so jit's cache remembers it
    per_device = -(-num_samples // num_devices)
    chunk_size = _chunk_for_budget(fn, key, args, per_device, memory_budget)
  keys = jax.random.split(key, num_samples)
  if mesh is None:
    return _map_chunks(fn, keys, args, chunk_size)
  per_device = -(-num_samples // num_devices)
  padded = per_device * num_devices
  if padded != num_samples:  # extra keys only fill the devices; dropped below
    keys = keys[jnp.arange(padded) % num_samples]
  # A leading device axis, sharded over the mesh: GSPMD gives each device its
  # own row, and each device runs its keys chunk by chunk.
  keys = jax.lax.with_sharding_constraint(
    keys.reshape(num_devices, per_device), NamedSharding(mesh, P(SAMPLE_AXIS))
  )
  out = jax.vmap(lambda k: _map_chunks(fn, k, args, chunk_size))(keys)
  out = jax.tree.map(
    lambda y: jax.lax.with_sharding_constraint(y, NamedSharding(mesh, P(SAMPLE_AXIS))), out
  )
  return jax.tree.map(lambda y: y.reshape((padded,) + y.shape[2:])[:num_samples], out)


def _chunk_for_budget(
  fn: Callable[..., Any], key: jax.Array, args: tuple, per_device: int, budget: int
) -> int:
  structs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), args)
  key_struct = jax.ShapeDtypeStruct(key.shape, key.dtype)
  return int(max(1, min(per_device, budget // per_sample_bytes(fn, key_struct, *structs))))


def _sample_mesh(devices: Sequence[jax.Device] | None) -> Mesh | None:
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices must name at least one device, got an empty list")
  if len(devices) == 1:
    return None
  return Mesh(np.array(devices), (SAMPLE_AXIS,))


def default_memory_budget(devices: Sequence[jax.Device] | None = None) -> int:
  """Bytes one chunk of samples may use on each device.

  8 MiB on CPU: chunks that stay in cache were fastest there (measured on 2
  cores, seed MLP 1 -> 4x1024 -> 1 with dropout after every layer, 1000 masks
  at batch 256: chunks of 4 (this budget) ran 1.19x faster than the jitted
  loop, chunks of 10 1.16x, chunks of 100 0.93x, XLA's matmul slowing on very
  tall matrices; at batch 5000 one sample per chunk was best). On an
  accelerator, a quarter of the memory limit the runtime reports, else 1 GiB.
  """
  device = (list(devices) if devices is not None else jax.devices())[0]
  if device.platform == "cpu":
    return DEFAULT_CPU_BUDGET
  stats = device.memory_stats() or {}
  limit = stats.get("bytes_limit")
  return int(limit) // 4 if limit else 2**30


def per_sample_bytes(fn: Callable[..., Any], key: Any, *args: Any) -> int:
  """Estimates the memory one more sample needs: twice its largest key-dependent array.

  The estimate traces ``fn`` once (no compilation, no computation). Arrays that
  do not depend on the key (the layers before the first dropout) are computed
  once for all the samples of a chunk, so only arrays downstream of the key
  count; a layer's input and output are alive together, and XLA fuses the
  element-wise work around them, so twice the largest such array bounds what
  one sample adds.
  """
  jaxpr = jax.make_jaxpr(fn)(key, *args).jaxpr
  return 2 * max(1, _largest_dependent(jaxpr, {jaxpr.invars[0]}))


def _nbytes(var: Any) -> int:
  aval = getattr(var, "aval", None)
  shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
  if shape is None or dtype is None:
    return 0
  itemsize = 4 if jnp.issubdtype(dtype, jax.dtypes.prng_key) else np.dtype(dtype).itemsize
  return math.prod(shape) * itemsize


def _largest_dependent(jaxpr: Any, dependent: set) -> int:
  """The largest array of ``jaxpr`` that depends on a variable in ``dependent``."""
  largest = 0
  for eqn in jaxpr.eqns:
    if not any(not hasattr(v, "val") and v in dependent for v in eqn.invars):
      continue
    dependent.update(eqn.outvars)
    largest = max([largest, *(_nbytes(v) for v in eqn.outvars)])
    for sub in _subjaxprs(eqn):  # inside a key-dependent call: all of it counts
      largest = max(largest, _largest_dependent(sub, set(sub.invars) | set(sub.constvars)))
  return largest


def _subjaxprs(eqn: Any):
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      inner = getattr(v, "jaxpr", None)
      if inner is not None and hasattr(inner, "eqns"):
        yield inner
      elif hasattr(v, "eqns"):
        yield v


def auto_chunk_size(
  fn: Callable[..., Any],
  key: jax.Array,
  *args: Any,
  num_samples: int,
  memory_budget: int | None = None,
  devices: Sequence[jax.Device] | None = None,
) -> int:
  """The chunk size ``mc_sample`` uses when ``chunk_size=None``.

  ``memory_budget // per_sample_bytes(fn, key, *args)``, at least 1 and at most
  the number of samples each device runs.
  """
  budget = default_memory_budget(devices) if memory_budget is None else memory_budget
  per_device = -(-num_samples // max(1, len(devices or jax.devices())))
  return _chunk_for_budget(fn, key, args, per_device, budget)


def mc_sample(
  fn: Callable[..., PyTree],
  key: jax.Array,
  *args: Any,
  num_samples: int,
  chunk_size: int | None = None,
  memory_budget: int | None = None,
  devices: Sequence[jax.Device] | None = None,
) -> PyTree:
  """Draws ``num_samples`` stochastic forward passes in one jitted computation.

  Sample ``i`` is ``fn(keys[i], *args)`` with ``keys = jax.random.split(key,
  num_samples)``. The masks (every random draw) therefore depend only on
  ``keys[i]``: they are the same for every ``chunk_size``, number of devices,
  with or without jit, and equal to those of :func:`sequential_sample` bit for
  bit. Outputs agree with the sequential loop to floating-point rounding (XLA
  may block a batched matmul differently from a single one), and the same call
  gives bit-identical results every time.

  Args:
    fn: a pure predictive function ``fn(key, *args)`` returning a pytree of
      arrays; see :func:`jaxuq.from_linen` and :func:`jaxuq.from_nnx`.
    key: a typed PRNG key (``jax.random.key(seed)``). ``rbg`` keys are
      refused (under vmap they give every sample the first key's bits), and so
      are ``philox4x32`` keys with several devices (JAX cannot compile them).
    *args: arrays passed to every call of ``fn`` (not split over samples).
    num_samples: how many passes, a positive int.
    chunk_size: how many samples are vmapped at once on each device (the rest
      run one chunk after another, bounding memory). ``None`` picks
      :func:`auto_chunk_size`: the memory budget divided by an estimate of one
      sample's memory. A chunk larger than the samples means one chunk.
    memory_budget: bytes per chunk and device for ``chunk_size=None``; default
      :func:`default_memory_budget`.
    devices: devices to shard the sample axis over (a 1-D mesh named
      ``'samples'``); default all of ``jax.devices()``. One device: no sharding.

  Returns:
    ``fn``'s output pytree with a leading axis of ``num_samples``.

  Raises:
    TypeError: ``key`` is not a typed key, or ``fn`` is not callable.
    ValueError: ``num_samples``, ``chunk_size`` or ``memory_budget`` is not a
      positive int, or ``key`` is an ``rbg`` key.

  Examples:
    >>> import jax, jaxuq
    >>> f = lambda key, x: x * jax.random.bernoulli(key, 0.5, x.shape)
    >>> jaxuq.mc_sample(f, jax.random.key(0), jax.numpy.ones(3), num_samples=8).shape
    (8, 3)
  """
  _check_fn(fn)
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  if memory_budget is not None:
    memory_budget = check_positive_int(memory_budget, "memory_budget")
  if chunk_size is not None:
    chunk_size = check_positive_int(chunk_size, "chunk_size")
  if memory_budget is None:
    memory_budget = default_memory_budget(devices)
  mesh = _sample_mesh(devices)
  if mesh is not None and key_impl_name(key) == "philox4x32":
    raise ValueError(
      "key is a philox4x32 key, which JAX cannot compile for several devices (its "
      "mulhi fails to lower). Use the default jax.random.key(seed), or pass "
      "devices=[one device]."
    )
  static, dynamic = partition(fn)
  return _mc_sample_jit(
    static,
    dynamic,
    key,
    args,
    num_samples=num_samples,
    chunk_size=chunk_size,
    memory_budget=memory_budget,
    mesh=mesh,
  )


@functools.partial(jax.jit, static_argnames=("static",))
def _single_jit(static: _Static, dynamic: list[Any], key: jax.Array, args: tuple) -> PyTree:
  return _combine(static, dynamic)(key, *args)


def sequential_sample(
  fn: Callable[..., PyTree], key: jax.Array, *args: Any, num_samples: int
) -> PyTree:
  """The baseline: a Python loop of jitted single-key calls, outputs stacked.

  Uses the same keys as :func:`mc_sample` (``jax.random.split(key,
  num_samples)``), so the two return the same samples up to rounding.

  Args:
    fn: a pure predictive function ``fn(key, *args)``.
    key: a typed PRNG key.
    *args: arrays passed to every call.
    num_samples: how many passes, a positive int.

  Returns:
    ``fn``'s output pytree with a leading axis of ``num_samples``.
  """
  _check_fn(fn)
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  static, dynamic = partition(fn)
  keys = jax.random.split(key, num_samples)
  outs = [_single_jit(static, dynamic, keys[i], args) for i in range(num_samples)]
  return jax.tree.map(lambda *ys: jnp.stack(ys), *outs)
