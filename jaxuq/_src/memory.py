"""Memory: what one sample needs, what a device holds, and refusing what cannot fit.

Every estimate traces the predictive function abstractly (``jax.eval_shape``,
``jax.make_jaxpr``): nothing is computed or allocated.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq._src.keys import check_devices, check_key_type

# Default memory budget for one chunk of samples on CPU (see
# default_memory_budget); on accelerators a quarter of the device's memory.
DEFAULT_CPU_BUDGET = 8 * 2**20
FEWER_SAMPLES = "Ask for fewer samples, or draw them in several calls and summarise each."


def default_memory_budget(devices: Sequence[jax.Device] | None = None) -> int:
  """Bytes one chunk of samples may use on each device.

  8 MiB on CPU: chunks that stay in cache were fastest there (measured on 2
  cores, seed MLP 1 -> 4x1024 -> 1 with dropout after every layer, 1000 masks
  at batch 256: chunks of 4 (this budget) ran 1.19x faster than the jitted
  loop, chunks of 10 1.16x, chunks of 100 0.93x, XLA's matmul slowing on very
  tall matrices; at batch 5000 one sample per chunk was best). On an
  accelerator, a quarter of the memory limit the runtime reports, else 1 GiB.
  """
  device = check_devices(devices)[0]
  if device.platform == "cpu":
    return DEFAULT_CPU_BUDGET
  limit = _bytes_limit(device)
  return limit // 4 if limit else 2**30


def _bytes_limit(device: jax.Device) -> int | None:
  try:
    stats = device.memory_stats() or {}
  except Exception:  # noqa: BLE001 - a backend without memory statistics
    return None
  limit = stats.get("bytes_limit")
  return int(limit) if limit else None


def device_memory(devices: Sequence[jax.Device] | None = None) -> int | None:
  """Bytes one device of ``devices`` can hold at most, ``None`` if unknown.

  An accelerator's ``bytes_limit`` as its runtime reports it; on CPU the
  machine's physical memory, shared by the CPU devices among ``devices``.
  """
  devices = check_devices(devices)
  if devices[0].platform != "cpu":
    return _bytes_limit(devices[0])
  physical = _physical_memory()
  return None if physical is None else physical // sum(d.platform == "cpu" for d in devices)


@functools.cache
def _physical_memory() -> int | None:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (AttributeError, ValueError, OSError):  # not a POSIX system
    return None


def tree_bytes(tree: Any) -> int:
  """Bytes of the arrays (or shape structs) of a pytree; a PRNG key counts its key data."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.eval_shape(jax.random.key_data, leaf)
    total += math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
  return total


def check_samples_fit(
  out_shape: Any,
  key: Any,
  sample_bytes: int,
  *,
  num_samples: int,
  per_device: int,
  chunk: int,
  available: int | None,
) -> None:
  """Raises unless ``per_device`` samples' outputs and keys, and one chunk, fit a device.

  ``out_shape`` is one sample's output (shape structs), ``sample_bytes`` the
  estimate of :func:`per_sample_bytes`, ``available`` what one device holds
  (:func:`device_memory`; ``None`` skips the check). The outputs and keys are
  certain to be held; a chunk holds at least ``chunk`` times the largest
  key-dependent array of one sample (half of ``sample_bytes``).

  Raises:
    ValueError: naming ``num_samples``, the bytes needed and those available.
  """
  if available is None:
    return
  sample = tree_bytes(out_shape) + tree_bytes(key)
  fix = FEWER_SAMPLES
  check_fits(per_device * sample, available, num_samples, "the samples and their keys", fix)
  fix = "Pass a smaller chunk_size, or a smaller batch of inputs."
  need = min(chunk, per_device) * (sample_bytes // 2)
  check_fits(need, available, num_samples, f"a chunk of {chunk}", fix)


def check_fits(need: int, available: int | None, num_samples: int, what: str, fix: str) -> None:
  """Raises if ``need`` bytes exceed ``available`` (``None``: unknown, no check)."""
  if available is not None and need > available:
    raise ValueError(
      f"num_samples={num_samples} cannot fit in memory: {what} need at least {need:,} "
      f"bytes on one device, which holds {available:,} bytes. {fix}"
    )


def _structs(tree: Any) -> Any:
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def per_sample_bytes(fn: Callable[..., Any], key: Any, *args: Any) -> int:
  """Estimates the memory one more sample needs: twice its largest key-dependent array.

  The estimate traces ``fn`` once (no compilation, no computation). Arrays that
  do not depend on the key (the layers before the first dropout) are computed
  once for all the samples of a chunk, so only arrays downstream of the key
  count; a layer's input and output are alive together, and XLA fuses the
  element-wise work around them, so twice the largest such array bounds what
  one sample adds.

  Raises:
    TypeError: ``key`` is not a typed key (array or shape struct).
  """
  check_key_type(key)
  return jaxpr_sample_bytes(jax.make_jaxpr(fn)(key, *args).jaxpr)


def jaxpr_sample_bytes(jaxpr: Any) -> int:
  """:func:`per_sample_bytes` of a traced function: ``jaxpr.invars[0]`` is its key."""
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


def chunk_for_budget(
  fn: Callable[..., Any], key: jax.Array, args: tuple, per_device: int, budget: int
) -> int:
  """Samples per chunk: ``budget // per_sample_bytes``, at least 1, at most ``per_device``."""
  key_struct = jax.ShapeDtypeStruct(key.shape, key.dtype)
  return chunk_from_bytes(per_sample_bytes(fn, key_struct, *_structs(args)), per_device, budget)


def chunk_from_bytes(sample_bytes: int, per_device: int, budget: int) -> int:
  """``budget // sample_bytes`` samples per chunk, at least 1, at most ``per_device``."""
  return int(max(1, min(per_device, budget // sample_bytes)))
