"""Monte Carlo sampling over PRNG keys: one jitted vmap, chunked and sharded.

Both samplers evaluate ``fn(keys[i], *args)`` for ``keys = jax.random.split(key,
num_samples)`` and stack the outputs along a new leading axis. ``mc_sample``
does it in one compiled computation; ``sequential_sample`` is the Python loop of
jitted single-key calls that people write today, kept as the baseline.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from jaxuq._src.filtering import StaticPart, as_arrays, combine, partition
from jaxuq._src.keys import check_devices, check_key, check_key_for_devices, check_positive_int
from jaxuq._src.memory import (
  FEWER_SAMPLES,
  check_fits,
  check_samples_fit,
  chunk_for_budget,
  chunk_from_bytes,
  default_memory_budget,
  device_memory,
  jaxpr_sample_bytes,
  tree_bytes,
)
from jaxuq._src.mesh import (
  check_batch_divides,
  place,
  sample_mesh,
  sample_shards,
  shard_batch,
  shard_keys,
  shard_samples,
)
from jaxuq._src.traced import trace_once

PyTree = Any


def _check_fn(fn: object) -> None:
  if not callable(fn):
    raise TypeError(f"fn must be callable as fn(key, *args), got {type(fn).__name__}")


def balanced_chunk(num: int, chunk: int) -> int:
  """The chunk size that splits ``num`` samples into the fewest chunks of at most ``chunk``, evenly.

  ``ceil(num / ceil(num / chunk))``: 1000 samples at a budget of 850 per chunk
  run as 2 chunks of 500, not 850 + 150.
  """
  if chunk >= num:
    return num
  return -(-num // -(-num // chunk))


def _map_chunks(fn: Callable[..., Any], keys: jax.Array, args: tuple, chunk: int) -> PyTree:
  """``fn(keys[i], *args)`` for every i, ``chunk`` keys vmapped at a time.

  The keys are cut into equal chunks (the last padded with repeated keys whose
  samples are dropped), so that one compiled loop body serves every chunk: a
  shorter last chunk would be a second program to compile (and, on a GPU, to
  autotune).
  """
  one = lambda k: fn(k, *args)  # noqa: E731
  num = keys.shape[0]
  chunk = balanced_chunk(num, chunk)
  if chunk == num:
    return jax.vmap(one)(keys)
  count = -(-num // chunk)
  if count * chunk != num:
    keys = keys[jnp.arange(count * chunk) % num]
  out = jax.lax.map(jax.vmap(one), keys.reshape(count, chunk, *keys.shape[1:]))
  return jax.tree.map(lambda y: y.reshape(count * chunk, *y.shape[2:])[:num], out)


@functools.partial(
  jax.jit,
  static_argnames=("static", "num_samples", "chunk_size", "memory_budget", "available", "mesh"),
)
def _mc_sample_jit(
  static: StaticPart,
  dynamic: list[Any],
  key: jax.Array,
  args: tuple,
  *,
  num_samples: int,
  chunk_size: int | None,
  memory_budget: int,
  available: int | None,
  mesh: Mesh | None,
) -> PyTree:
  # One trace of the model serves the shape checks, the chunk size and the
  # batched program (which replays it under vmap).
  traced = trace_once(combine(static, dynamic), key, args)
  fn = traced.fn
  num_devices = sample_shards(mesh)
  per_device = -(-num_samples // num_devices)
  sample_bytes = jaxpr_sample_bytes(traced.jaxpr)
  # Decided while tracing (shapes only), so jit's cache remembers them.
  if chunk_size is None:
    chunk_size = chunk_from_bytes(sample_bytes, per_device, memory_budget)
  # Samples not a multiple of the sample shards come back whole on every device (the
  # padded axis sliced inside jit is replicated): the check counts what is then held.
  held = per_device if num_samples % num_devices == 0 else num_samples
  check_samples_fit(
    traced.out_shape,
    key,
    sample_bytes,
    num_samples=num_samples,
    per_device=held,
    chunk=chunk_size,
    available=available,
  )
  keys = jax.random.split(key, num_samples)
  if mesh is None:
    return _map_chunks(fn, keys, args, chunk_size)
  args = shard_batch(args, mesh)
  padded = per_device * num_devices
  if padded != num_samples:  # extra keys only fill the devices; dropped below
    keys = keys[jnp.arange(padded) % num_samples]
  # A leading device axis, sharded over the mesh: GSPMD gives each sample
  # shard its own row, and each device runs its keys chunk by chunk.
  keys = shard_keys(keys.reshape(num_devices, per_device), mesh)
  out = shard_samples(jax.vmap(lambda k: _map_chunks(fn, k, args, chunk_size))(keys), mesh)
  return jax.tree.map(lambda y: y.reshape((padded,) + y.shape[2:])[:num_samples], out)


def auto_chunk_size(
  fn: Callable[..., Any],
  key: jax.Array,
  *args: Any,
  num_samples: int,
  memory_budget: int | None = None,
  devices: Sequence[jax.Device] | None = None,
  data_shards: int = 1,
) -> int:
  """The chunk size ``mc_sample`` uses when ``chunk_size=None``.

  The memory budget over one sample's key-dependent memory: ``memory_budget``
  divided by twice the largest array of one sample that depends on the key
  (layers before the first dropout are computed once per chunk, not per
  sample), at least 1 and at most the number of samples each device runs.

  Args:
    fn: a predictive function ``fn(key, *args)``.
    key: a typed PRNG key.
    *args: the arrays ``fn`` takes (their shapes and dtypes are what count).
    num_samples: how many samples ``mc_sample`` would draw, a positive int.
    memory_budget: bytes for one chunk on each device; ``None`` takes 8 MiB on
      a CPU (cache-sized chunks were fastest there) and a quarter of an
      accelerator's memory.
    devices: the devices the samples would be split over (default all of
      ``jax.devices()``).
    data_shards: as in :func:`mc_sample`: the samples are split over
      ``len(devices) // data_shards`` sample shards.

  Returns:
    The number of samples vmapped at once on each device, a Python int.

  Raises:
    TypeError: ``key`` is not a typed key, or ``fn`` is not callable.
    ValueError: ``num_samples`` or ``memory_budget`` is not a positive int, or
      ``devices`` is empty.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxuq
    >>> f = lambda key, x: x * jax.random.bernoulli(key, 0.5, x.shape)
    >>> jaxuq.auto_chunk_size(f, jax.random.key(0), jnp.ones(1024), num_samples=100,
    ...                       memory_budget=2**16, devices=jax.devices()[:1])
    8
  """
  _check_fn(fn)
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  devices = check_devices(devices)
  if memory_budget is None:
    budget = default_memory_budget(devices)
  else:
    budget = check_positive_int(memory_budget, "memory_budget")
  per_device = -(-num_samples // sample_shards(sample_mesh(devices, data_shards)))
  return chunk_for_budget(fn, key, as_arrays(args), per_device, budget)


def mc_sample(
  fn: Callable[..., PyTree],
  key: jax.Array,
  *args: Any,
  num_samples: int,
  chunk_size: int | None = None,
  memory_budget: int | None = None,
  devices: Sequence[jax.Device] | None = None,
  data_shards: int = 1,
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
    *args: arrays passed to every call of ``fn`` (not split over samples);
      nested Python lists of numbers are converted with ``jnp.asarray``.
    num_samples: how many passes, a positive int.
    chunk_size: how many samples are vmapped at once on each device (the rest
      run one chunk after another, bounding memory). ``None`` picks
      :func:`auto_chunk_size`: the memory budget divided by an estimate of one
      sample's memory. A chunk larger than the samples means one chunk.
    memory_budget: bytes per chunk and device for ``chunk_size=None``; default
      ``default_memory_budget()``.
    devices: devices to shard over; default all of ``jax.devices()``. One
      device: no sharding. Several: a mesh ``(len(devices) // data_shards,
      data_shards)`` with axes ``'samples'`` and ``'data'``.
    data_shards: how many ways to split the batch (the leading axis of every
      argument, which must be a multiple of it) over the devices; the sample
      axis is split over the rest. Default 1: samples only. The masks are the
      same for every mesh.

  Returns:
    ``fn``'s output pytree with a leading axis of ``num_samples``.

  Raises:
    TypeError: ``key`` is not a typed key, or ``fn`` is not callable.
    ValueError: ``num_samples``, ``chunk_size`` or ``memory_budget`` is not a
      positive int, ``devices`` is empty, ``key`` is an ``rbg`` key,
      ``data_shards`` does not divide the device count or the batch, or the
      samples' outputs (or one chunk) cannot fit one device's memory
      (checked from shapes alone, before anything is allocated).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxuq
    >>> f = lambda key, x: x * jax.random.bernoulli(key, 0.5, x.shape)
    >>> key = jax.random.key(0)
    >>> s = jaxuq.mc_sample(f, key, jnp.ones(3), num_samples=8)
    >>> s.shape
    (8, 3)
    >>> loop = jaxuq.sequential_sample(f, key, jnp.ones(3), num_samples=8)
    >>> bool((s == loop).all())  # the same keys, the same masks
    True
  """
  _check_fn(fn)
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  if memory_budget is not None:
    memory_budget = check_positive_int(memory_budget, "memory_budget")
  if chunk_size is not None:
    chunk_size = check_positive_int(chunk_size, "chunk_size")
  devices = check_devices(devices)
  if memory_budget is None:
    memory_budget = default_memory_budget(devices)
  mesh = sample_mesh(devices, data_shards)
  args = as_arrays(args)
  check_batch_divides(args, mesh)
  check_key_for_devices(key, len(devices))
  static, dynamic = partition(fn)
  dynamic, key = place((dynamic, key), devices, mesh)
  args = place(args, devices, mesh, batch=True)
  return _mc_sample_jit(
    static,
    dynamic,
    key,
    args,
    num_samples=num_samples,
    chunk_size=chunk_size,
    memory_budget=memory_budget,
    available=device_memory(devices),
    mesh=mesh,
  )


@functools.partial(jax.jit, static_argnames=("static",))
def _single_jit(static: StaticPart, dynamic: list[Any], key: jax.Array, args: tuple) -> PyTree:
  return combine(static, dynamic)(key, *args)


def sequential_sample(
  fn: Callable[..., PyTree], key: jax.Array, *args: Any, num_samples: int
) -> PyTree:
  """The baseline: a Python loop of jitted single-key calls, outputs stacked.

  Uses the same keys as :func:`mc_sample` (``jax.random.split(key,
  num_samples)``), so the two return the same samples up to rounding.

  Args:
    fn: a pure predictive function ``fn(key, *args)``.
    key: a typed PRNG key.
    *args: arrays passed to every call (nested lists of numbers are converted).
    num_samples: how many passes, a positive int.

  Returns:
    ``fn``'s output pytree with a leading axis of ``num_samples``.

  Raises:
    TypeError: ``key`` is not a typed key, or ``fn`` is not callable.
    ValueError: ``num_samples`` is not a positive int, ``key`` is an ``rbg``
      key, or the stacked outputs cannot fit the default device's memory.
  """
  _check_fn(fn)
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  args = as_arrays(args)
  static, dynamic = partition(fn)
  _check_outputs_fit(static, dynamic, key, args, num_samples)
  keys = jax.random.split(key, num_samples)
  outs = [_single_jit(static, dynamic, keys[i], args) for i in range(num_samples)]
  return jax.tree.map(lambda *ys: jnp.stack(ys), *outs)


def _check_outputs_fit(
  static: StaticPart, dynamic: list[Any], key: jax.Array, args: tuple, num_samples: int
) -> None:
  """Raises if ``num_samples`` outputs and keys cannot fit the default device."""
  available = device_memory(jax.devices()[:1])
  if available is None:
    return
  out = _single_jit.eval_shape(static, dynamic, key, args)  # cached by jit
  need = num_samples * (tree_bytes(out) + tree_bytes(key))
  check_fits(need, available, num_samples, "the stacked outputs and keys", FEWER_SAMPLES)
