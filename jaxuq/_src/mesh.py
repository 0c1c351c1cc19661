"""The device mesh of the samplers: samples x data.

The sample axis is split over the mesh axis ``'samples'``; with
``data_shards > 1`` the batch (the leading axis of every argument) is split
over ``'data'`` too. Parameters are left to XLA's partitioner (replicated
unless the user's arrays carry a sharding of their own). The computation is
the same program as on one device, so the masks are the same bit for bit.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from jaxuq._src.keys import check_positive_int

SAMPLE_AXIS = "samples"
DATA_AXIS = "data"


def sample_mesh(devices: list[jax.Device], data_shards: int = 1) -> Mesh | None:
  """A ``(len(devices) // data_shards, data_shards)`` mesh, or ``None`` for one device.

  Raises:
    ValueError: ``data_shards`` is not a positive int dividing the device count.
  """
  data_shards = check_positive_int(data_shards, "data_shards")
  if len(devices) % data_shards:
    raise ValueError(
      f"data_shards must divide the number of devices ({len(devices)}), got {data_shards}; "
      f"the mesh is (devices // data_shards) sample shards x data_shards batch shards"
    )
  if len(devices) == 1:
    return None
  grid = np.array(devices).reshape(len(devices) // data_shards, data_shards)
  return Mesh(grid, (SAMPLE_AXIS, DATA_AXIS))


def place(tree: Any, devices: list[jax.Device], mesh: Mesh | None, batch: bool = False) -> Any:
  """``tree``'s arrays on the devices the sampler runs on: ``devices[0]``, or over the mesh
  (replicated; with ``batch``, a leading axis split over ``'data'``).

  Without it, ``devices=[jax.devices()[3]]`` ran on the default device, and inputs
  committed to other devices than the mesh's failed with JAX's "incompatible devices".
  An array already sharded over the mesh's devices, in its order, keeps its layout (the
  user's choice; an ``Explicit`` mesh, ``jax.make_mesh``'s default, is retyped ``Auto``, as
  the samplers' program cannot mix the two). Tracers (a sampler under an outer ``jit``)
  are left to that ``jit``, and so are the values of a mesh spanning several processes.
  """
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree)):
    return tree
  if mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat):
    return tree  # several processes: each passes its own values, jit assembles them
  if mesh is None:
    target: Any = SingleDeviceSharding(devices[0])  # a bare Device kept an Explicit mesh type
  elif batch and int(mesh.shape[DATA_AXIS]) > 1:
    target = NamedSharding(mesh, P(DATA_AXIS))
  else:
    target = NamedSharding(mesh, P())
  order = (devices[0],) if mesh is None else tuple(mesh.devices.flat)

  def put(leaf: Any) -> Any:
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding) and tuple(sharding.mesh.devices.flat) == order:
      return jax.device_put(leaf, _auto(sharding)) if _explicit(sharding) else leaf
    if (
      mesh is None
      and isinstance(sharding, SingleDeviceSharding)
      and order[0] in sharding.device_set
    ):
      return leaf
    return jax.device_put(leaf, target)

  return jax.tree.map(put, tree)


def _explicit(sharding: NamedSharding) -> bool:
  return any(t == AxisType.Explicit for t in getattr(sharding.mesh, "axis_types", ()))


def _auto(sharding: NamedSharding) -> NamedSharding:
  """The same layout on an ``Auto`` mesh of the same devices and axes."""
  m = sharding.mesh
  auto = Mesh(m.devices, m.axis_names, axis_types=(AxisType.Auto,) * len(m.axis_names))
  return NamedSharding(auto, sharding.spec)


def sample_shards(mesh: Mesh | None) -> int:
  """How many ways the sample axis is split."""
  return 1 if mesh is None else int(mesh.shape[SAMPLE_AXIS])


def check_batch_divides(args: tuple, mesh: Mesh | None) -> None:
  """Raises unless every argument's leading axis divides over the data shards."""
  shards = 1 if mesh is None else int(mesh.shape[DATA_AXIS])
  if shards == 1:
    return
  for i, leaf in enumerate(jax.tree.leaves(args)):
    shape = np.shape(leaf)
    if not shape or shape[0] % shards:
      raise ValueError(
        f"with data_shards={shards} the leading axis of every argument after the key is "
        f"split over {shards} devices (the batch), so each must be a multiple of {shards}; "
        f"argument leaf {i} has shape {shape}. Pad the batch, choose data_shards dividing it, "
        "or keep weights inside fn (a from_linen / from_nnx predictive, or a closure) "
        "instead of passing them as arguments"
      )


def shard_batch(args: tuple, mesh: Mesh | None) -> tuple:
  """Constrains the arguments' leading axis to the data shards (inside jit)."""
  if mesh is None or int(mesh.shape[DATA_AXIS]) == 1:
    return args
  spec = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, spec), args)


def shard_keys(keys: jax.Array, mesh: Mesh) -> jax.Array:
  """Keys ``(sample shards, per shard)``, the first axis over ``'samples'``."""
  return jax.lax.with_sharding_constraint(keys, NamedSharding(mesh, P(SAMPLE_AXIS)))


def shard_samples(tree: Any, mesh: Mesh) -> Any:
  """Outputs ``(sample shards, per shard, batch, ...)`` sharded over samples and data."""

  def one(y):
    shards = int(mesh.shape[DATA_AXIS])
    if y.ndim >= 3 and shards > 1 and y.shape[2] % shards == 0:
      return jax.lax.with_sharding_constraint(
        y, NamedSharding(mesh, P(SAMPLE_AXIS, None, DATA_AXIS))
      )
    return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, P(SAMPLE_AXIS)))

  return jax.tree.map(one, tree)
