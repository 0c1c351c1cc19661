"""Exact output distributions of a dropout network by enumerating every mask.

A model with ``m`` droppable units has ``2**m`` masks. Each is run through the
same ``module.apply`` forward pass that :func:`jaxuq.mc_sample` runs (masks are
given explicitly instead of drawn; see ``jaxuq/_src/exact/linen.py``), ``chunk``
masks vmapped at a time, and weighted by its probability
``prod(keep**kept * rate**dropped)``.

Precision: probabilities and every reduction (means, variances, sums of
probabilities) are float64 NumPy, so probabilities sum to 1 to float64
rounding in any mode. The network's outputs have the network's own dtype:
float32 by default, so a value such as ``11 - 110 / 0.3`` is exact to float32
rounding (about 1e-7 relative). For outputs exact to float64, run inside
``with jax.enable_x64(True):`` (scoped, not a global switch) with float64
variables and inputs.

Probabilities use each layer's nominal rate. ``jaxuq.Dropout`` samples with
exactly that rate when it is a multiple of ``2**-k`` (``k <= 16``), else with a
keep probability within ``2**-17`` of it and ``2**-13`` of it relatively (0.7:
0.3000031), far below what MC
frequencies can resolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxuq._src.exact import engine
from jaxuq._src.exact.linen import check_linen, check_rows_independent, discover, masked
from jaxuq._src.exact.moments import Moments
from jaxuq._src.keys import check_positive_int
from jaxuq._src.memory import default_memory_budget

DEFAULT_MAX_BYTES = 2 * 2**30


class Enumeration(NamedTuple):
  """Every mask's output and probability.

  Attributes:
    outputs: ``(2**m, batch, ...)``, the output of mask ``i`` (unit ``j`` kept
      when bit ``j`` of ``i`` is set), in the network's dtype.
    probs: float64 ``(2**m,)``, each mask's probability; they sum to 1.
    layout: the dropout layers (names, mask shapes, keep probabilities).
  """

  outputs: np.ndarray
  probs: np.ndarray
  layout: engine.MaskLayout

  def kept_units(self, index: int) -> list[str]:
    """Labels (``'layer[i]'``) of the units mask ``index`` keeps."""
    labels = self.layout.unit_labels()
    return [u for j, u in enumerate(labels) if (index >> j) & 1]


class Distribution(NamedTuple):
  """One input's exact output distribution: distinct values and probabilities.

  Attributes:
    values: ``(k, ...)`` distinct outputs (sorted, lexicographically for vectors).
    probs: float64 ``(k,)``, their probabilities; they sum to 1.
  """

  values: np.ndarray
  probs: np.ndarray


def mask_layout(fn: Any, *args: Any) -> engine.MaskLayout:
  """The dropout layers a linen model runs on ``args``, found without computing.

  Traces ``fn(key, *args)`` once under ``jax.eval_shape``; abstract inputs
  (``jax.ShapeDtypeStruct``) work. ``2 ** layout.num_units`` is the number of
  masks an enumeration would run.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs, with a leading batch axis.

  Returns:
    A :class:`MaskLayout`: per layer its name, mask shape (one example) and
    keep probability.

  Examples:
    >>> import jaxuq.exact
    >>> layout = jaxuq.exact.mask_layout(jaxuq.exact.tiny_predictive(), jaxuq.exact.tiny_input())
    >>> layout.names, layout.shapes, layout.num_units
    (('dropout',), ((1, 2),), 2)
  """
  predictive = check_linen(fn)
  layout, paths = discover(predictive, args)
  # Every layer found must take an explicit mask (not so inside nn.vmap, whose copies
  # the trace counts once): checked abstractly, nothing runs.
  g = masked(predictive, paths)
  jax.eval_shape(lambda g, *a: g(*a), g, jax.random.key(0), engine.one_mask(layout), *args)
  return layout


def _prepare(
  fn: Any, args: tuple, max_units: int, chunk_size: int | None, memory_budget: int | None
):
  """Discovers the masks, refuses too many, checks the model; returns ``(g, layout, chunk, out)``."""
  predictive = check_linen(fn)
  if chunk_size is not None:
    chunk_size = check_positive_int(chunk_size, "chunk_size")
  if memory_budget is not None:
    memory_budget = check_positive_int(memory_budget, "memory_budget")
  layout, paths = discover(predictive, args)  # jax.eval_shape: nothing is computed
  if layout.num_units == 0:
    raise ValueError(
      f"{type(predictive.module).__name__} runs no dropout layer with a positive rate, "
      "so it has a single output: nothing to enumerate"
    )
  engine.check_enumerable(layout.num_units, max_units)
  g = masked(predictive, paths)
  out = jax.eval_shape(g, jax.random.key(0), engine.one_mask(layout), *args)
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise TypeError(f"exact enumeration needs a model that returns one array, got {out}")
  engine.check_key_unused(g, layout, args)
  check_rows_independent(g, layout.shapes, args)
  if chunk_size is None:
    budget = default_memory_budget() if memory_budget is None else memory_budget
    chunk_size = engine.auto_enum_chunk(g, layout, args, budget)
  return g, layout, chunk_size, out


def _check_bytes(layout: engine.MaskLayout, out: jax.ShapeDtypeStruct, max_bytes: int) -> None:
  need = 2**layout.num_units * max(1, int(np.prod(out.shape))) * 8
  if need > max_bytes:
    raise ValueError(
      f"holding all 2^{layout.num_units} outputs of shape {tuple(out.shape)} takes "
      f"{need / 2**30:.2f} GiB, more than max_bytes={max_bytes / 2**30:.2f} GiB; pass fewer "
      "inputs per call, raise max_bytes, or use exact_moments (which streams)"
    )


def enumerate_outputs(
  fn: Any,
  *args: Any,
  max_units: int = engine.DEFAULT_MAX_UNITS,
  chunk_size: int | None = None,
  memory_budget: int | None = None,
  max_bytes: int = DEFAULT_MAX_BYTES,
) -> Enumeration:
  """Runs every dropout mask of a linen model and returns each output and probability.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`; its dropout layers
      (``jaxuq.Dropout``, ``flax.linen.Dropout``) get explicit masks, shared by
      the batch (each input's distribution is that of per-example masks, for
      models that treat the examples of a batch separately; a model that mixes
      them, such as a graph layer or a batch mean, is refused).
    *args: the inputs, with a leading batch axis.
    max_units: refuse models with more droppable units (``2**max_units`` masks),
      before anything is computed or allocated.
    chunk_size: masks vmapped at once; ``None`` fits ``memory_budget``.
    memory_budget: bytes for one chunk (default as :func:`jaxuq.mc_sample`).
    max_bytes: refuse when all outputs (as float64) would take more.

  Returns:
    An :class:`Enumeration`.

  Raises:
    TypeError: ``fn`` is not from ``from_linen`` or does not return one array.
    ValueError: too many units, no dropout, or a model enumeration cannot cover
      (other randomness, dropout inside lifted transforms, examples mixed).

  Examples:
    >>> import jaxuq, jaxuq.exact
    >>> e = jaxuq.exact.enumerate_outputs(jaxuq.exact.tiny_predictive(), jaxuq.exact.tiny_input())
    >>> e.probs.round(4).tolist(), e.outputs[:, 0, 0].astype(float).round(2).tolist()
    ([0.49, 0.21, 0.21, 0.09], [11.0, -355.67, 511.0, 144.33])
  """
  g, layout, chunk, out = _prepare(fn, args, max_units, chunk_size, memory_budget)
  _check_bytes(layout, out, max_bytes)
  outputs, probs = [], []
  for _, y, p in engine.iter_chunks(g, layout, args, chunk):
    outputs.append(y)
    probs.append(p)
  return Enumeration(np.concatenate(outputs), np.concatenate(probs), layout)


def exact_moments(
  fn: Any,
  *args: Any,
  covariance: bool = False,
  max_units: int = engine.DEFAULT_MAX_UNITS,
  chunk_size: int | None = None,
  memory_budget: int | None = None,
) -> Moments:
  """Exact predictive mean and variance per input (and output), by enumeration.

  Streams over chunks of masks (memory bounded by one chunk), accumulating in
  float64 with Chan's pairwise update; the result does not depend on
  ``chunk_size`` beyond float64 rounding.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs, with a leading batch axis.
    covariance: also return the covariance across the last output axis.
    max_units: see :func:`enumerate_outputs`.
    chunk_size: see :func:`enumerate_outputs`.
    memory_budget: see :func:`enumerate_outputs`.

  Returns:
    :class:`jaxuq.exact.Moments` of float64 NumPy arrays, the type
    :func:`jaxuq.exact.closed_form_moments` returns.

  Examples:
    >>> import jaxuq.exact as ex
    >>> m = ex.exact_moments(ex.tiny_predictive(), ex.tiny_input())  # 4 masks
    >>> round(float(m.mean[0, 0]), 3), round(float(m.var[0, 0]), 1), type(m).__name__
    (51.0, 80733.3, 'Moments')
  """
  g, layout, chunk, _ = _prepare(fn, args, max_units, chunk_size, memory_budget)
  acc = engine.Moments(bool(covariance))
  for _, y, p in engine.iter_chunks(g, layout, args, chunk):
    acc.update(y, p)
  assert acc.mean is not None and acc.m2 is not None
  cov = acc.c2 / acc.weight if acc.c2 is not None else None
  return Moments(acc.mean, acc.m2 / acc.weight, cov)


def _check_atol(atol: object) -> None:
  ok = atol is None or (
    isinstance(atol, (int, float))
    and not isinstance(atol, bool)
    and np.isfinite(atol)
    and atol >= 0
  )
  if not ok:
    raise ValueError(f"atol must be a non-negative float or None, got {atol!r}")


def merge_values(values: np.ndarray, probs: np.ndarray, atol: float | None) -> Distribution:
  """Sorts ``values`` (``(n, ...)``) and merges neighbours within ``atol``.

  Merged values are replaced by their probability-weighted mean.
  """
  flat = values.reshape(values.shape[0], -1).astype(np.float64)
  _check_atol(atol)
  if atol is None:
    eps = float(np.finfo(values.dtype).eps) if values.dtype.kind == "f" else 0.0
    atol = 64 * eps * max(1.0, float(np.abs(flat).max(initial=0.0)))
  order = np.lexsort(flat.T[::-1])
  flat, p = flat[order], probs[order]
  gap = np.abs(np.diff(flat, axis=0)).max(axis=1, initial=0.0) > atol
  starts = np.concatenate([[0], np.nonzero(gap)[0] + 1])
  merged_p = np.add.reduceat(p, starts)
  merged_v = np.add.reduceat(flat * p[:, None], starts) / merged_p[:, None]
  return Distribution(merged_v.reshape((-1, *values.shape[1:])), merged_p)


def exact_distribution(
  fn: Any,
  *args: Any,
  atol: float | None = None,
  max_units: int = engine.DEFAULT_MAX_UNITS,
  chunk_size: int | None = None,
  max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Distribution]:
  """The exact output distribution of each input: distinct values, probabilities.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs, with a leading batch axis.
    atol: outputs (of one input) closer than this merge into one value, chained
      over sorted values (for vector outputs: the largest difference of any
      element). ``None``: 64 machine epsilons of the output dtype times the
      largest output magnitude (at least 1). ``0`` merges only equal values.
    max_units: see :func:`enumerate_outputs`.
    chunk_size: see :func:`enumerate_outputs`.
    max_bytes: see :func:`enumerate_outputs`.

  Returns:
    One :class:`Distribution` per input.

  Examples:
    >>> import jaxuq.exact
    >>> d, = jaxuq.exact.exact_distribution(jaxuq.exact.tiny_predictive(), jaxuq.exact.tiny_input())
    >>> d.values[:, 0].round(2).tolist(), d.probs.round(4).tolist()
    ([-355.67, 11.0, 144.33, 511.0], [0.21, 0.49, 0.09, 0.21])
  """
  _check_atol(atol)
  e = enumerate_outputs(fn, *args, max_units=max_units, chunk_size=chunk_size, max_bytes=max_bytes)
  return [merge_values(e.outputs[:, b], e.probs, atol) for b in range(e.outputs.shape[1])]


def exact_quantiles(
  fn: Any,
  *args: Any,
  levels: Sequence[float],
  max_units: int = engine.DEFAULT_MAX_UNITS,
  chunk_size: int | None = None,
  max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
  """Exact quantiles of each output element: the least ``v`` with ``P(y <= v) >= level``.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs, with a leading batch axis.
    levels: quantile levels, probabilities in ``[0, 1]`` (as :func:`jaxuq.summarize`).
    max_units: see :func:`enumerate_outputs`.
    chunk_size: see :func:`enumerate_outputs`.
    max_bytes: see :func:`enumerate_outputs`.

  Returns:
    ``(len(levels), batch, ...)`` in the network's dtype. A level within ``1e-12``
    of a step of the distribution function counts as reaching it (float64
    sums of probabilities round).
  """
  qs = np.asarray(levels, np.float64).reshape(-1)
  if qs.size == 0 or np.any(~np.isfinite(qs)) or np.any((qs < 0) | (qs > 1)):
    raise ValueError(
      f"levels must be probabilities in [0, 1], got {list(np.asarray(levels).ravel())}"
    )
  e = enumerate_outputs(fn, *args, max_units=max_units, chunk_size=chunk_size, max_bytes=max_bytes)
  order = np.argsort(e.outputs, axis=0, kind="stable")
  values = np.take_along_axis(e.outputs, order, axis=0)
  cdf = np.cumsum(e.probs[order], axis=0)
  n = values.shape[0]
  idx = [np.minimum((cdf < t - 1e-12).sum(axis=0), n - 1) for t in qs]
  return np.stack([np.take_along_axis(values, i[None], axis=0)[0] for i in idx])
