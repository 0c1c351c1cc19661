"""Validation of PRNG keys and of the static settings shared by the samplers."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Key implementations whose batching rule draws every vmapped key's bits from
# the first key: under vmap, sample t would not be fn(keys[t]).
_UNBATCHABLE_IMPLS = ("rbg", "unsafe_rbg")


def key_impl_name(key: jax.Array) -> str:
  """The name of a typed key's implementation, e.g. ``'threefry2x32'``."""
  impl = jax.random.key_impl(key)
  return str(getattr(impl, "name", impl))


def check_key_type(key: object, name: str = "key") -> None:
  """Raises unless ``key`` is a scalar typed PRNG key (an array, tracer or shape struct).

  Args:
    key: the object to check.
    name: the argument's name, used in the error message.

  Raises:
    TypeError: ``key`` is an integer, a legacy ``uint32`` key or not an array.
    ValueError: ``key`` is not a scalar.
  """
  if isinstance(key, numbers.Integral):
    raise TypeError(
      f"{name} must be a typed PRNG key, got the integer {key!r}. "
      f"Make one with jax.random.key({key!r})."
    )
  dtype = getattr(key, "dtype", None)
  shape = getattr(key, "shape", None)
  if dtype is None or not jnp.issubdtype(dtype, jax.dtypes.prng_key):
    raise TypeError(
      f"{name} must be a typed PRNG key made with jax.random.key(seed), got "
      f"{type(key).__name__} of dtype {dtype} and shape {shape}. A legacy "
      "uint32 key from jax.random.PRNGKey converts with "
      "jax.random.wrap_key_data(key, impl='threefry2x32')."
    )
  if shape != ():
    raise ValueError(
      f"{name} must be a single (scalar) PRNG key, got a key array of shape "
      f"{shape}; pass one key and let jaxuq split it."
    )


def check_key(key: object, name: str = "key") -> None:
  """Raises unless ``key`` is a scalar typed PRNG key that vmaps per key.

  Args:
    key: the object to check.
    name: the argument's name, used in the error message.

  Raises:
    TypeError: ``key`` is an integer, a legacy ``uint32`` key or not an array.
    ValueError: ``key`` is not a scalar, or its implementation (``rbg``,
      ``unsafe_rbg``) would give every vmapped sample the first key's bits.
  """
  check_key_type(key, name)
  assert isinstance(key, jax.Array)
  impl = key_impl_name(key)
  if impl in _UNBATCHABLE_IMPLS:
    raise ValueError(
      f"{name} uses the {impl!r} PRNG implementation, whose batching rule draws "
      "every vmapped key's bits from the first key, so the samples would not be "
      "fn(keys[i]). Use jax.random.key(seed, impl='threefry2x32') (the default unless "
      "jax_default_prng_impl is set)."
    )


def check_positive_int(value: object, name: str) -> int:
  """Returns ``value`` as an int, or raises if it is not a positive integer."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


MIN_KEEP = 2.0**-20  # the smallest keep probability 1 - rate a dropout layer accepts


def traced_rate_error(name: str) -> TypeError:
  """The error for a dropout rate that JAX traces (``name``: which rate, of which layer)."""
  return TypeError(
    f"{name} is a traced value (it depends on an argument of a jitted or vmapped function): "
    "MC dropout needs every rate as a number while the model is traced. Build the model "
    "outside the transformation, or make the rate a static argument "
    "(jax.jit(f, static_argnums=...))"
  )


def check_rate(rate: object, name: str = "rate") -> float:
  """Returns ``rate`` as a float, or raises unless ``0 <= rate <= 1 - 2**-20``.

  Rates closer to 1 (keeping fewer than one unit in a million) are refused:
  their masks would keep nothing in practice and the inverted scaling
  ``1 / (1 - rate)`` would blow the few kept units up by over a million.
  """
  if isinstance(rate, jax.core.Tracer):
    raise traced_rate_error(name)
  if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
    raise TypeError(f"{name} must be a float in [0, 1), got {rate!r}")
  if not 0.0 <= float(rate) < 1.0:
    raise ValueError(f"{name} must be in [0, 1) (the probability to drop a unit), got {rate!r}")
  if 1.0 - float(rate) < MIN_KEEP:
    raise ValueError(
      f"{name} must leave a keep probability 1 - rate of at least 2**-20 (about 1e-6), got "
      f"rate {rate!r}; such a layer drops nearly everything and scales the rest by "
      f"{1 / (1 - float(rate)):.3g}"
    )
  return float(rate)


def check_process_span(devices: Sequence[object], process_index: int, process_count: int) -> None:
  """Raises unless ``devices`` can run one computation from this process.

  In a multi-process run (``jax.distributed``) a computation runs on devices of
  this process only, or on devices of every process (each calls the same code).
  A device list spanning some processes but not all would wait forever for the
  missing ones; one held by other processes only cannot run here at all.

  Args:
    devices: the devices (anything with a ``process_index``).
    process_index: this process's index (``jax.process_index()``).
    process_count: the number of processes (``jax.process_count()``).

  Raises:
    ValueError: the devices' processes do not match.
  """
  held = sorted({int(getattr(d, "process_index", 0)) for d in devices})
  if held == [process_index] or held == list(range(process_count)):
    return
  raise ValueError(
    f"devices must belong to this process ({process_index}) only or to all "
    f"{process_count} processes, got devices of process(es) {held}. Pass "
    "devices=None (every process's devices; call the same code in each process) or "
    "devices=jax.local_devices()."
  )


def check_devices(devices: Sequence[jax.Device] | None) -> list[jax.Device]:
  """``devices`` as a non-empty list (``jax.devices()`` for ``None``), or raises.

  Raises:
    TypeError: one device instead of a sequence.
    ValueError: an empty list, a device named twice, or devices whose processes
      do not match (see :func:`check_process_span`).
  """
  if devices is None:
    return list(jax.devices())
  if isinstance(devices, jax.Device):
    raise TypeError(
      f"devices must be a sequence of devices, got one device {devices}; use [device]"
    )
  if isinstance(devices, jax.sharding.Mesh) or getattr(devices, "ndim", 1) != 1:
    raise TypeError(
      f"devices must be a flat list of devices, got {type(devices).__name__}; the sampler "
      "builds its mesh itself: pass e.g. list(mesh.devices.flat) or jax.devices()[:4]"
    )
  devices = list(devices)
  if not devices:
    raise ValueError(
      "devices must name at least one device, got an empty list; pass None for all of "
      "jax.devices(), or e.g. devices=jax.devices()[:1]"
    )
  repeated = sorted({str(d) for d in devices if devices.count(d) > 1})
  if repeated:
    raise ValueError(
      f"devices must name each device once, got {', '.join(repeated)} more than once; "
      "pass distinct devices, e.g. jax.devices()[:2]"
    )
  check_process_span(devices, jax.process_index(), jax.process_count())
  return devices


def check_key_for_devices(key: jax.Array, num_devices: int) -> None:
  """Raises if ``key`` cannot be used on ``num_devices`` devices (philox4x32 on several)."""
  if num_devices > 1 and key_impl_name(key) == "philox4x32":
    raise ValueError(
      "key is a philox4x32 key, which JAX cannot compile for several devices (its "
      "mulhi fails to lower). Use the default jax.random.key(seed), or pass "
      "devices=[one device]."
    )
