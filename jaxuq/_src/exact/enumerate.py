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
exactly that rate when it is a multiple of ``2**-k`` (``k <= 16``), else with
drop and keep probabilities within ``2**-17`` of ``rate`` and ``1 - rate`` and
within ``2**-13`` of ``min(rate, 1 - rate)`` relatively, for ``min(rate, 1 -
rate) >= 2**-20`` (0.7 keeps 0.3000031; 1e-5 drops 1.0000076e-5); below
``2**-20``, within ``2**-33`` absolutely. A relative bias of ``2**-13``
(1.2e-4) in a drop frequency takes about ``7e7 / min(rate, 1 - rate)`` draws of
a unit to reach one standard error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq._src.exact import engine
from jaxuq._src.exact.linen import check_linen, check_rows_independent, discover, masked
from jaxuq._src.exact.moments import Moments
from jaxuq._src.filtering import as_arrays
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
  args = as_arrays(args)  # nested lists of numbers, as mc_sample takes them
  layout, paths = discover(predictive, args)
  # Every layer found must take an explicit mask (not so inside nn.vmap, whose copies
  # the trace counts once): checked abstractly, nothing runs.
  g = masked(predictive, paths)
  jax.eval_shape(lambda g, *a: g(*a), g, jax.random.key(0), engine.one_mask(layout), *args)
  return layout


def _prepare(
  fn: Any,
  args: tuple,
  max_units: int,
  chunk_size: int | None,
  memory_budget: int | None,
  covariance: bool = False,
):
  """Discovers the masks, refuses too many, checks the model.

  Returns:
    ``(g, layout, chunk, out, args)``: the masked model, the mask layout, masks
    per chunk, the output's abstract value and the inputs as arrays.
  """
  predictive = check_linen(fn)
  max_units = engine.check_max_units(max_units)
  args = as_arrays(args)  # nested lists of numbers, as mc_sample takes them
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
  if covariance and out.ndim < 2:
    raise ValueError(
      f"covariance=True needs outputs with an axis after the batch axis to take the "
      f"covariance across, got outputs of shape {tuple(out.shape)} (batch only); the "
      "examples of a batch have independent masks, so their covariance is 0. Return "
      "outputs of shape (batch, k) (e.g. y[:, None]) or pass covariance=False"
    )
  engine.check_key_unused(g, layout, args)
  check_rows_independent(g, layout.shapes, args)
  if chunk_size is None:
    budget = default_memory_budget() if memory_budget is None else memory_budget
    chunk_size = engine.auto_enum_chunk(g, layout, args, budget)
  return g, layout, chunk_size, out, args


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
      them, such as a graph layer or a batch mean, is refused, and so is an
      output without a leading batch axis when the batch holds two or more).
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
      (other randomness, dropout inside lifted transforms, examples mixed, an
      output without a leading batch axis).

  Examples:
    >>> import jaxuq, jaxuq.exact
    >>> e = jaxuq.exact.enumerate_outputs(jaxuq.exact.tiny_predictive(), jaxuq.exact.tiny_input())
    >>> e.probs.round(4).tolist(), e.outputs[:, 0, 0].astype(float).round(2).tolist()
    ([0.49, 0.21, 0.21, 0.09], [11.0, -355.67, 511.0, 144.33])
  """
  g, layout, chunk, out, args = _prepare(fn, args, max_units, chunk_size, memory_budget)
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
  ``chunk_size`` beyond the rounding of the model's dtype (each chunk size
  compiles its own batched program, whose float32 outputs may differ in the
  last bits: by up to ``3.8e-6`` on outputs up to 32 in one measured case)
  plus float64 rounding of the sums.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs, with a leading batch axis.
    covariance: also return the covariance across the last output axis;
      the outputs need an axis after the batch axis (``(batch, ..., k)``).
    max_units: see :func:`enumerate_outputs`.
    chunk_size: see :func:`enumerate_outputs`.
    memory_budget: see :func:`enumerate_outputs`.

  Returns:
    :class:`jaxuq.exact.Moments` of float64 NumPy arrays, the type
    :func:`jaxuq.exact.closed_form_moments` returns.

  Raises:
    ValueError: as :func:`enumerate_outputs`, or ``covariance`` with outputs
      that have the batch axis only.

  Examples:
    >>> import jaxuq.exact as ex
    >>> m = ex.exact_moments(ex.tiny_predictive(), ex.tiny_input())  # 4 masks
    >>> round(float(m.mean[0, 0]), 3), round(float(m.var[0, 0]), 1), type(m).__name__
    (51.0, 80733.3, 'Moments')
  """
  g, layout, chunk, _, args = _prepare(
    fn, args, max_units, chunk_size, memory_budget, covariance=bool(covariance)
  )
  acc = engine.Moments(bool(covariance))
  for _, y, p in engine.iter_chunks(g, layout, args, chunk):
    acc.update(y, p)
  assert acc.mean is not None and acc.m2 is not None
  cov = acc.c2 / acc.weight if acc.c2 is not None else None
  return Moments(acc.mean, acc.m2 / acc.weight, cov)


def _check_atol(atol: object) -> None:
  ok = atol is None or (
    isinstance(atol, (int, float, np.integer, np.floating))
    and not isinstance(atol, (bool, np.bool_))
    and np.isfinite(atol)
    and atol >= 0
  )
  if not ok:
    raise ValueError(
      f"atol must be a non-negative float or None (a few ulps of each value), got {atol!r}"
    )


DEFAULT_ULPS = 4  # atol=None: values within 4 machine epsilons of their magnitude merge


def _upper_ends(v: np.ndarray, atol: float | None, eps: float) -> np.ndarray:
  """The largest value that joins a group anchored at each of ``v`` (float64)."""
  if atol is not None:
    return v + atol
  # |b - a| <= k eps max(|a|, |b|) with a <= b: b <= a / (1 - k eps) for a >= 0,
  # b <= a (1 - k eps) for a < 0 (never across zero, unless both are zero).
  rel = DEFAULT_ULPS * eps
  with np.errstate(invalid="ignore"):
    return np.where(v >= 0, v / (1.0 - rel), v * (1.0 - rel))


def _cluster(
  column: np.ndarray, atol: float | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Anchored clusters of a float64 column: ``(ids, smallest, largest)``.

  Sorted, each cluster starts at its smallest value ``a`` (the anchor) and
  takes every following value up to ``_upper_ends(a)``; the next value starts
  the next cluster. A cluster so spans at most ``atol`` (or ``DEFAULT_ULPS``
  epsilons of its values), however many values lie in it. NaNs form one
  cluster, the last. Returns each value's cluster id (increasing with the
  value) and each cluster's smallest and largest value.
  """
  n = column.shape[0]
  order = np.argsort(column, kind="stable")
  v = column[order]
  hi = _upper_ends(v, atol, eps)
  nan = np.isnan(v)
  start = np.ones(n, bool)
  # A gap wider than the tolerance of the previous value ends a cluster whatever its anchor.
  start[1:] = (v[1:] > hi[:-1]) | (nan[1:] & ~nan[:-1])
  seg = np.flatnonzero(start)
  seg_end = np.append(seg[1:], n)
  nxt = np.searchsorted(v, hi, side="right")  # past the cluster anchored at each value
  nxt[nan] = n
  # Runs of values each within tolerance of the previous one: anchor by anchor where a run
  # is wider than one cluster (chaining such runs merged 2,860 distinct outputs into one).
  wide = nxt[seg] < seg_end
  for s, e in zip(seg[wide], seg_end[wide], strict=True):
    i = int(nxt[s])
    while i < e:
      start[i] = True
      i = max(int(nxt[i]), i + 1)
  first = np.flatnonzero(start)
  ids = np.empty(n, np.int64)
  ids[order] = np.cumsum(start) - 1
  return ids, v[first], v[np.append(first[1:], n) - 1]


def merge_values(values: np.ndarray, probs: np.ndarray, atol: float | None) -> Distribution:
  """Merges outputs equal up to ``atol``; see :func:`exact_distribution` for the rule.

  Each output element (column of the flattened ``values``, ``(n, ...)``) is
  clustered on its own: sorted, a cluster starts at its smallest value and
  takes the values within ``atol`` of it (``None``: within ``DEFAULT_ULPS``
  machine epsilons of the dtype times the larger magnitude of the two), so a
  cluster spans at most that. Each element is replaced by the
  probability-weighted mean of its cluster; outputs whose every element falls
  in the same clusters are one value, their probabilities summed. Outputs of
  probability 0 (a mask that cannot occur) are left out. Values are sorted
  lexicographically.
  """
  _check_atol(atol)
  dtype = np.dtype(values.dtype)
  eps = float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.floating) else 0.0
  keep = probs > 0  # a rate below 1.1e-16 gives masks of probability 0: 0/0 values
  p = np.asarray(probs, np.float64)[keep]
  flat = values.reshape(values.shape[0], -1)[keep].astype(np.float64)
  if flat.shape[1] == 0:  # empty outputs: every mask gives the same (empty) value
    return Distribution(np.zeros((1, *values.shape[1:]), np.float64), np.array([p.sum()]))
  atol = None if atol is None else float(atol)
  ids = np.empty(flat.shape, np.int64)
  reps = []
  for j in range(flat.shape[1]):
    ids[:, j], lo, hi = _cluster(flat[:, j], atol, eps)
    weight = np.bincount(ids[:, j], weights=p, minlength=lo.size)
    with np.errstate(invalid="ignore"):
      mean = np.bincount(ids[:, j], weights=p * flat[:, j], minlength=lo.size) / weight
    reps.append(np.where(lo == hi, lo, mean))  # equal values (infinities too) stay exact
  counts = [r.size for r in reps]
  if flat.shape[1] == 1:  # the ids are the values' order already
    rows, inverse = np.arange(counts[0])[:, None], ids[:, 0]
  elif math.prod(counts) < 2**62:  # one int64 key per output (mixed radix): a fast 1-D unique
    strides = np.cumprod([1, *counts[:0:-1]])[::-1]
    keys, inverse = np.unique(ids @ strides, return_inverse=True)
    rows = (keys[:, None] // strides[None, :]) % np.asarray(counts)[None, :]
  else:
    rows, inverse = np.unique(ids, axis=0, return_inverse=True)
  merged_p = np.bincount(inverse.reshape(-1), weights=p, minlength=rows.shape[0])
  merged_v = np.stack([reps[j][rows[:, j]] for j in range(flat.shape[1])], axis=1)
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

  Outputs equal up to rounding are merged, element by element: each element's
  values (over the masks, for one input) are sorted and cut into clusters,
  each starting at its smallest value and taking the values within the
  tolerance of it, so a cluster spans at most the tolerance (merges do not
  chain). Two outputs are one value when every element falls into the same
  cluster; each element is reported as its cluster's probability-weighted
  mean, and the probabilities are summed. Masks of probability 0 are left out.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs, with a leading batch axis.
    atol: the absolute tolerance of a cluster. ``None``: relative to the
      values themselves, ``b`` joins the cluster of anchor ``a`` when
      ``|b - a| <= 4 * eps * max(|a|, |b|)`` (``eps`` the machine epsilon of
      the output dtype, bfloat16 and float16 included: 4 to 8 ulps; never
      across zero). Rounding errors larger than that, as in sums that cancel
      to near zero, leave values apart: pass an ``atol`` for them. ``0``
      merges only equal values.
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
