"""Streamed Monte Carlo over a dataset: per-example summaries, batch after batch.

``mc_reduce_dataset`` runs :func:`jaxuq.mc_reduce` on every batch of an
iterable (NumPy arrays, a memory-mapped file cut into slices, any iterator of
batches) and returns, or hands to a sink, the per-example summaries in input
order. The next batch is sent to the device while the current one computes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from tqdm.auto import tqdm

from jaxuq._src.keys import check_devices, check_key, check_positive_int
from jaxuq._src.mesh import place, sample_mesh
from jaxuq._src.reduce import Reducer, _check_reducer, mc_reduce

PyTree = Any


@struct.dataclass
class _PerExample:
  """``fn`` with each example's draws from ``fold_in(key, global index)``."""

  fn: Any

  def __call__(self, key: jax.Array, index: jax.Array, *batch: Any) -> Any:
    def one(i, *example):
      out = self.fn(jax.random.fold_in(key, i), *(a[None] for a in example))
      if any(jnp.ndim(y) == 0 for y in jax.tree.leaves(out)):
        raise ValueError(
          "with per_example_keys=True fn runs on a batch of one example and every output "
          f"leaf needs that leading example axis; fn returned shapes "
          f"{[jnp.shape(y) for y in jax.tree.leaves(out)]}. Return per-example outputs "
          "(reduce over examples after mc_reduce_dataset), or pass per_example_keys=False"
        )
      return jax.tree.map(lambda y: y[0], out)

    return jax.vmap(one)(index, *batch)


def batches_from_array(x: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
  """Consecutive slices of ``x`` (an array or a ``np.memmap``) of ``batch_size`` rows."""
  batch_size = check_positive_int(batch_size, "batch_size")
  for start in range(0, len(x), batch_size):
    yield x[start : start + batch_size]


def _as_args(batch: Any) -> tuple:
  """A batch as ``fn``'s arguments: an array, or a tuple or list of arrays (positional)."""
  args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
  for i, a in enumerate(args):
    if isinstance(a, Mapping) or not hasattr(a, "shape") or not np.shape(a):
      raise TypeError(
        "each batch must be an array or a tuple of arrays with a leading example axis, "
        f"passed to fn as its arguments; got {type(a).__name__} as argument {i}. For a "
        "dataset of dicts or (x, y) pairs, map it to the model's inputs first, e.g. "
        "(b['image'] for b in dataset) or (x for x, _ in dataset)"
      )
  return args


def _signature(args: tuple) -> tuple:
  """Trailing shapes and dtypes as on the device (NumPy float64 is float32 without x64)."""
  return tuple(
    (tuple(np.shape(a)[1:]), str(jax.dtypes.canonicalize_dtype(np.asarray(a[:0]).dtype)))
    for a in args
  )


def _pad(args: tuple, size: int) -> tuple:
  """Pads every array to ``size`` rows by repeating its last row (results trimmed later)."""
  n = len(args[0])
  if n == size:
    return args
  return tuple(np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)]) for a in args)


def mc_reduce_dataset(
  fn: Callable[..., PyTree],
  key: jax.Array,
  batches: Iterable[Any],
  *,
  num_samples: int,
  reducer: Reducer,
  chunk_size: int | None = None,
  per_example_keys: bool = True,
  sink: Callable[[int, PyTree], None] | None = None,
  progress: bool | None = None,
  total: int | None = None,
  devices: Sequence[jax.Device] | None = None,
  data_shards: int = 1,
) -> PyTree | None:
  """Monte Carlo summaries of every example of a dataset, streamed batch by batch.

  Each batch (an array, or a tuple of arrays passed as ``fn``'s arguments,
  with a leading example axis) is reduced over ``num_samples`` passes with
  :func:`jaxuq.mc_reduce`; the per-example results are concatenated in input
  order (or handed to ``sink``), so memory holds one batch, one chunk of
  samples and the summaries. A short last batch is padded to the first
  batch's size (results of the padding are dropped), so one compilation
  serves every batch.

  Keys: with ``per_example_keys=True`` (default), sample ``i`` of the example
  with global index ``g`` uses ``fold_in(split(key, num_samples)[i], g)`` and
  sees only its own inputs, so the result does not depend on the batch size or
  the batching. With ``False``, batch ``b`` is ``fn``'s ordinary batched call
  with ``fold_in(key, b)`` (one mask per example as in :func:`jaxuq.mc_sample`;
  results depend on the batching).

  Args:
    fn: a predictive function ``fn(key, *batch)``.
    key: a typed PRNG key.
    batches: an iterable of batches with the same trailing shapes.
    num_samples: passes per example, a positive int.
    reducer: a :class:`jaxuq.Reducer` whose result leaves have a leading
      example axis, except scalars (such as ``'count'``), kept once.
    chunk_size: samples vmapped at once (see :func:`jaxuq.mc_reduce`).
    per_example_keys: draw each example's masks from its global index.
    sink: if given, called as ``sink(start, result)`` for each batch (``start``
      is the batch's first global index, ``result`` NumPy arrays), and nothing
      is returned: write to a ``np.memmap`` or a file from there.
    progress: show a progress bar in examples per second (default: only when
      the output is a terminal).
    total: the number of examples, for the progress bar.
    devices, data_shards: see :func:`jaxuq.mc_reduce` (the batch size must be
      a multiple of ``data_shards``).

  Returns:
    The reducer's result over every example (NumPy arrays), or ``None`` with
    a ``sink``.

  Raises:
    ValueError: ``batches`` is empty, or a batch's trailing shape or dtype
      differs from the first batch's, or the arrays of one batch differ in
      length; and as :func:`jaxuq.mc_reduce`.
  """
  check_key(key)
  num_samples = check_positive_int(num_samples, "num_samples")
  predictive = _PerExample(fn) if per_example_keys else fn
  iterator = iter(batches)
  first = next(iterator, None)
  if first is None:
    raise ValueError("batches is empty: give at least one batch of examples")
  expected = _signature(_as_args(first))
  size = len(_as_args(first)[0])
  devs = check_devices(devices)
  mesh = sample_mesh(devs, data_shards)
  # The reducer's check (host-side) runs on each batch's result after the next batch is
  # sent: run inside mc_reduce it waited for the device before the next batch was read.
  quiet = _check_reducer(reducer)._replace(check=None)
  pieces: list[PyTree] = []
  start = 0
  current: tuple[tuple, int] | None = _prepare(first, 0, expected, size, devs, mesh)
  index = 0
  with tqdm(total=total, unit="ex", disable=None if progress is None else not progress) as bar:
    while current is not None:
      device_args, n = current
      if per_example_keys:
        rows = jnp.arange(start, start + size, dtype=jnp.uint32)
        call = (key, rows, *device_args)
      else:
        call = (jax.random.fold_in(key, index), *device_args)
      result = mc_reduce(
        predictive,
        *call,
        num_samples=num_samples,
        reducer=quiet,
        chunk_size=chunk_size,
        devices=devices,
        data_shards=data_shards,
      )
      # Read and send the next batch while the device computes this one.
      following = next(iterator, None)
      current = (
        None if following is None else _prepare(following, index + 1, expected, size, devs, mesh)
      )
      if reducer.check is not None:
        reducer.check(result)
      host = jax.tree.map(lambda y, n=n: _trim(np.asarray(y), n, size), result)
      if sink is not None:
        sink(start, host)
      else:
        pieces.append(host)
      start += n
      index += 1
      bar.update(n)
  if sink is not None:
    return None
  return jax.tree.map(lambda *ys: _join(ys), *pieces)


def _prepare(
  batch: Any, index: int, expected: tuple, size: int, devices: list, mesh: Any
) -> tuple[tuple, int]:
  """Checks a batch against the first one, pads it to ``size`` rows, sends it to the devices."""
  args = _as_args(batch)
  lengths = sorted({len(a) for a in args})
  if len(lengths) != 1:
    raise ValueError(f"the arrays of batch {index} differ in length: {lengths}")
  sig = _signature(args)
  if sig != expected or lengths[0] > size or lengths[0] == 0:
    raise ValueError(
      f"batch {index} has trailing shapes and dtypes {sig} and {lengths[0]} rows; the "
      f"first batch had {expected} and {size} rows. Every batch must have the first "
      "batch's trailing shapes and between 1 row and as many rows as the first."
    )
  return place(_pad(args, size), devices, mesh, batch=True), lengths[0]


def _trim(y: np.ndarray, n: int, size: int) -> np.ndarray:
  if y.ndim == 0:
    return y
  if y.shape[0] != size:
    raise ValueError(
      f"the reducer's result has a leaf of shape {y.shape}, whose leading axis is not the "
      f"batch's {size} examples; mc_reduce_dataset needs per-example results (or scalars)"
    )
  return y[:n]


def _join(ys: Sequence[np.ndarray]) -> np.ndarray:
  if ys[0].ndim == 0:
    return ys[0]
  return np.concatenate(ys)
