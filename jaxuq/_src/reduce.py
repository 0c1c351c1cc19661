"""Streamed Monte Carlo: the sample axis reduced chunk by chunk, never stored.

``mc_reduce`` draws the samples of :func:`jaxuq.mc_sample` (sample ``i`` is
``fn(jax.random.split(key, num_samples)[i], *args)``) and folds them into a
reducer's state one chunk at a time inside one jitted computation, so no more
than one chunk of samples is alive. With several devices each device reduces
its own share of the keys and the states are merged at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh

from jaxuq._src.filtering import StaticPart, as_arrays, combine, partition
from jaxuq._src.keys import check_devices, check_key, check_key_for_devices, check_positive_int
from jaxuq._src.memory import chunk_from_bytes, default_memory_budget, jaxpr_sample_bytes
from jaxuq._src.mesh import (
  check_batch_divides,
  place,
  sample_mesh,
  sample_shards,
  shard_batch,
  shard_keys,
)
from jaxuq._src.metrics._checks import is_concrete
from jaxuq._src.sampling import balanced_chunk
from jaxuq._src.traced import trace_once

PyTree = Any


class Reducer(NamedTuple):
  """A streamed reduction of the sample axis: four pure functions.

  ``init(example)`` builds the empty state from one sample's output structure
  (a pytree of ``jax.ShapeDtypeStruct``); ``update(state, chunk)`` folds in a
  chunk of samples (``fn``'s output with a leading axis of any size);
  ``merge(a, b)`` combines two states of disjoint sample sets (associative);
  ``finalize(state)`` returns the result. ``update`` and ``merge`` must keep
  the state's shapes and dtypes. The optional ``check(result)`` runs on the
  host after the reduction, whenever the result's values are known (not when
  ``mc_reduce`` is itself traced under ``jit``), and raises for samples the
  reducer cannot summarise (:func:`jaxuq.classification_reducer` refuses
  logits passed as probabilities). Build a reducer once and reuse it: a new one
  (new functions) compiles ``mc_reduce`` again.
  """

  init: Callable[[PyTree], PyTree]
  update: Callable[[PyTree, PyTree], PyTree]
  merge: Callable[[PyTree, PyTree], PyTree]
  finalize: Callable[[PyTree], PyTree]
  check: Callable[[PyTree], None] | None = None


def _check_reducer(reducer: object) -> Reducer:
  if not isinstance(reducer, Reducer):
    raise TypeError(
      "reducer must be a jaxuq.Reducer(init, update, merge, finalize), such as "
      f"jaxuq.moments_reducer(); got {type(reducer).__name__}"
    )
  return reducer


def _check_state(before: PyTree, after: PyTree, step: str) -> None:
  """Raises unless ``after`` has the tree, shapes and dtypes of ``before``."""
  sig = lambda t: jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), t)  # noqa: E731
  same_tree: bool = jax.tree.structure(before) == jax.tree.structure(after)  # type: ignore[operator]
  if not same_tree or sig(before) != sig(after):
    raise ValueError(
      f"the reducer's {step} changed the state's structure, shapes or dtypes: "
      f"{sig(before)} became {sig(after)}. A state must keep its shapes and dtypes "
      "(cast sums to the initial dtype, and keep counts as arrays of fixed shape)."
    )


def _reduce_keys(fn, keys, args, reducer: Reducer, chunk: int, init_state):
  """Folds ``fn(keys[i], *args)`` into ``init_state``, ``chunk`` samples at a time."""
  num = keys.shape[0]
  chunk = balanced_chunk(num, chunk)
  full, rest = divmod(num, chunk)
  one = lambda k: fn(k, *args)  # noqa: E731
  state = init_state
  if full:
    blocks = keys[: full * chunk].reshape(full, chunk)
    state, _ = jax.lax.scan(
      lambda s, ks: (reducer.update(s, jax.vmap(one)(ks)), None), state, blocks
    )
  if rest:
    state = reducer.update(state, jax.vmap(one)(keys[full * chunk :]))
  return state


@functools.partial(
  jax.jit, static_argnames=("static", "reducer", "num_samples", "chunk", "memory_budget", "mesh")
)
def _mc_reduce_jit(
  static: StaticPart,
  dynamic: list[Any],
  key: jax.Array,
  args: tuple,
  *,
  reducer: Reducer,
  num_samples: int,
  chunk: int | None,
  memory_budget: int,
  mesh: Mesh | None,
) -> PyTree:
  # One trace of the model: its shapes, its memory and (replayed) the program.
  traced = trace_once(combine(static, dynamic), key, args)
  fn = traced.fn
  # Decided and checked while tracing (shapes only): once per compilation.
  if chunk is None:
    per_device = -(-num_samples // sample_shards(mesh))
    chunk = chunk_from_bytes(jaxpr_sample_bytes(traced.jaxpr), per_device, memory_budget)
  chunk = min(chunk, num_samples)
  _validate(traced.out_shape, reducer, chunk)
  empty = reducer.init(traced.out_shape)
  keys = jax.random.split(key, num_samples)
  if mesh is None:
    return reducer.finalize(_reduce_keys(fn, keys, args, reducer, chunk, empty))
  args = shard_batch(args, mesh)
  devices = sample_shards(mesh)
  per_device = num_samples // devices
  state = empty
  if per_device:
    # Each sample shard reduces its own contiguous block of keys (GSPMD splits
    # the leading axis over the mesh); the per-shard states are merged in order.
    blocks = shard_keys(keys[: per_device * devices].reshape(devices, per_device), mesh)
    states = jax.vmap(lambda ks: _reduce_keys(fn, ks, args, reducer, chunk, empty))(blocks)
    for d in range(devices):
      state = reducer.merge(state, jax.tree.map(lambda s, d=d: s[d], states))
  if per_device * devices < num_samples:  # fewer than one key per device remains
    rest = _reduce_keys(fn, keys[per_device * devices :], args, reducer, chunk, empty)
    state = reducer.merge(state, rest)
  return reducer.finalize(state)


def mc_reduce(
  fn: Callable[..., PyTree],
  key: jax.Array,
  *args: Any,
  num_samples: int,
  reducer: Reducer,
  chunk_size: int | None = None,
  devices: Sequence[jax.Device] | None = None,
  data_shards: int = 1,
) -> PyTree:
  """Reduces ``num_samples`` stochastic passes chunk by chunk, never storing them all.

  The samples are those of :func:`jaxuq.mc_sample` with the same key: sample
  ``i`` is ``fn(keys[i], *args)`` with ``keys = jax.random.split(key,
  num_samples)``; every chunk of ``chunk_size`` samples is folded into the
  reducer's state as soon as it is computed, inside one jitted computation, so
  memory holds one chunk of samples and the state. The result equals the same
  summary computed from ``mc_sample``'s output up to floating-point rounding
  (the order of the sums differs), for every chunk size and device count.

  Args:
    fn: a pure predictive function ``fn(key, *args)``.
    key: a typed PRNG key.
    *args: arrays passed to every call of ``fn``.
    num_samples: how many passes, a positive int.
    reducer: a :class:`Reducer`, e.g. :func:`jaxuq.moments_reducer` or
      :func:`jaxuq.classification_reducer`.
    chunk_size: samples vmapped at once on each device; ``None`` picks
      :func:`jaxuq.auto_chunk_size` as :func:`jaxuq.mc_sample` does (a memory
      budget over one sample's key-dependent memory).
    devices: devices to split the samples over; default all of
      ``jax.devices()``. The samples are split over ``shards =
      len(devices) // data_shards`` sample shards; each reduces
      ``num_samples // shards`` samples; the few left over are reduced after them.
    data_shards: split the batch over this many devices too (a mesh
      ``(len(devices) // data_shards, data_shards)``, see
      :func:`jaxuq.mc_sample`).

  Returns:
    ``reducer.finalize`` of the state over all the samples.

  Raises:
    TypeError: ``fn`` is not callable, ``key`` is not a typed key, or
      ``reducer`` is not a :class:`Reducer`.
    ValueError: ``num_samples`` or ``chunk_size`` is not a positive int,
      ``devices`` is empty, or the reducer changes its state's shapes (found
      while tracing, before anything runs); or the reducer's ``check`` refuses
      the samples (after the reduction).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxuq
    >>> f = lambda key, x: x * jax.random.bernoulli(key, 0.5, x.shape)
    >>> r = jaxuq.mc_reduce(f, jax.random.key(0), jnp.ones(3), num_samples=1000,
    ...                     reducer=jaxuq.moments_reducer())
    >>> sorted(r), r["mean"].shape
    (['count', 'mean', 'var'], (3,))
  """
  if not callable(fn):
    raise TypeError(f"fn must be callable as fn(key, *args), got {type(fn).__name__}")
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  if chunk_size is not None:
    chunk_size = check_positive_int(chunk_size, "chunk_size")
  reducer = _check_reducer(reducer)
  devices = check_devices(devices)
  mesh = sample_mesh(devices, data_shards)
  check_key_for_devices(key, len(devices))
  args = as_arrays(args)
  check_batch_divides(args, mesh)
  static, dynamic = partition(fn)
  dynamic, key = place((dynamic, key), devices, mesh)
  args = place(args, devices, mesh, batch=True)
  result = _mc_reduce_jit(
    static,
    dynamic,
    key,
    args,
    reducer=reducer,
    num_samples=num_samples,
    chunk=chunk_size,
    memory_budget=default_memory_budget(devices),
    mesh=mesh,
  )
  if reducer.check is not None and all(map(is_concrete, jax.tree.leaves(result))):
    reducer.check(result)
  return result


def _validate(example: PyTree, reducer: Reducer, chunk: int) -> None:
  """Traces one update and one merge (no computation) to check the state keeps its shapes.

  ``example`` is one sample's output as shape structs.
  """
  empty = jax.eval_shape(lambda: reducer.init(example))
  chunk_struct = jax.tree.map(lambda a: jax.ShapeDtypeStruct((chunk, *a.shape), a.dtype), example)
  _check_state(empty, jax.eval_shape(reducer.update, empty, chunk_struct), "update")
  _check_state(empty, jax.eval_shape(reducer.merge, empty, empty), "merge")
