"""Metrics of conformal predictions: coverage, size, and coverage per set size and per class.

Sets are boolean masks ``(n, classes)`` and intervals ``(lower, upper)`` of
shape ``(n,)``, as the methods of :mod:`jaxuq.conformal` return them. Means
run in float32 at least (float64 under x64).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks

_LAYOUT = "(n, classes)"


class GroupCoverage(NamedTuple):
  """Coverage within groups of examples.

  Attributes:
    coverage: the fraction of each group's examples whose set holds the
      label, shape ``(groups,)``; ``nan`` for an empty group.
    counts: the number of examples in each group (int32), shape ``(groups,)``.
  """

  coverage: jax.Array
  counts: jax.Array


def _check_sets(sets: ArrayLike) -> jax.Array:
  m = jnp.asarray(sets)
  if m.dtype != jnp.bool_:
    raise TypeError(
      f"sets must be a boolean mask {_LAYOUT} (a predict_set output), got dtype {m.dtype}"
    )
  _checks.check_ndim(m, 2, "sets", _LAYOUT)
  _checks.check_nonempty(m, "sets", _LAYOUT)
  return m


def _check(sets: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
  m = _check_sets(sets)
  return m, _checks.check_labels(labels, m.shape[:1], m.shape[1])


def _mean(x: jax.Array) -> jax.Array:
  return x.astype(_checks.compute_dtype(jnp.float32)).mean()


@jax.jit
def _hits(m: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.take_along_axis(m, y[:, None], axis=1)[:, 0]


def set_coverage(sets: ArrayLike, labels: ArrayLike) -> jax.Array:
  """The empirical coverage: the fraction of examples whose set holds the label.

  Args:
    sets: boolean masks, shape ``(n, classes)``.
    labels: integer classes, shape ``(n,)``.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: bad shapes, labels out of range (when concrete).
    TypeError: ``sets`` not boolean or ``labels`` not integer.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> sets = jnp.array([[True, False], [True, True], [False, False]])
    >>> round(float(conformal.set_coverage(sets, jnp.array([1, 1, 0]))), 4)  # only the second
    0.3333
  """
  return _mean(_hits(*_check(sets, labels)))


def mean_set_size(sets: ArrayLike) -> jax.Array:
  """The mean number of classes per set.

  Args:
    sets: boolean masks, shape ``(n, classes)``.

  Returns:
    A scalar in ``[0, classes]``.

  Raises:
    ValueError: ``sets`` not 2-D or empty.
    TypeError: ``sets`` not boolean.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> float(conformal.mean_set_size(jnp.array([[True, False], [True, True]])))
    1.5
  """
  m = _check_sets(sets)
  return _mean(m.sum(axis=1))


@functools.partial(jax.jit, static_argnames="groups")
def _by_group(hit: jax.Array, group: jax.Array, *, groups: int) -> GroupCoverage:
  dtype = _checks.compute_dtype(jnp.float32)
  counts = jax.ops.segment_sum(jnp.ones(group.shape, jnp.int32), group, groups)
  covered = jax.ops.segment_sum(hit.astype(dtype), group, groups)
  return GroupCoverage(jnp.where(counts > 0, covered / jnp.maximum(counts, 1), jnp.nan), counts)


def coverage_by_set_size(sets: ArrayLike, labels: ArrayLike) -> GroupCoverage:
  """Coverage among the examples of each set size ``0, 1, ..., classes``.

  Marginal coverage can hide sets that fail where they are small; a method
  that adapts well covers about ``1 - alpha`` at every size (size-stratified
  coverage, Angelopoulos et al. 2021).

  Args:
    sets: boolean masks, shape ``(n, classes)``.
    labels: integer classes, shape ``(n,)``.

  Returns:
    A :class:`GroupCoverage` with ``classes + 1`` groups; group ``s`` holds
    the examples whose set has ``s`` classes.

  Raises:
    ValueError: as :func:`set_coverage`.
    TypeError: as :func:`set_coverage`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> sets = jnp.array([[True, False], [False, True], [True, True]])
    >>> by_size = conformal.coverage_by_set_size(sets, jnp.array([0, 0, 1]))
    >>> by_size.coverage.tolist(), by_size.counts.tolist()  # size 1: one of two; size 2: one
    ([nan, 0.5, 1.0], [0, 2, 1])

  References:
    Angelopoulos, A. N., Bates, S., Malik, J., Jordan, M. I. (2021).
    Uncertainty Sets for Image Classifiers using Conformal Prediction. ICLR.
  """
  m, y = _check(sets, labels)
  return _by_group(_hits(m, y), m.sum(axis=1), groups=m.shape[1] + 1)


def coverage_by_class(sets: ArrayLike, labels: ArrayLike) -> GroupCoverage:
  """Coverage among the examples of each true class (class-conditional coverage).

  Split conformal guarantees coverage on average over classes, not per
  class; this shows which classes pay for the others.

  Args:
    sets: boolean masks, shape ``(n, classes)``.
    labels: integer classes, shape ``(n,)``.

  Returns:
    A :class:`GroupCoverage` with ``classes`` groups.

  Raises:
    ValueError: as :func:`set_coverage`.
    TypeError: as :func:`set_coverage`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> sets = jnp.array([[True, False], [False, True], [True, True]])
    >>> conformal.coverage_by_class(sets, jnp.array([0, 0, 1])).coverage.tolist()
    [0.5, 1.0]

  References:
    Vovk, V. (2012). Conditional Validity of Inductive Conformal Predictors.
    ACML.
  """
  m, y = _check(sets, labels)
  return _by_group(_hits(m, y), y, groups=m.shape[1])


def _check_bounds(lower: ArrayLike, upper: ArrayLike) -> tuple[jax.Array, jax.Array]:
  lo = _checks.as_float(lower, "lower")
  hi = _checks.as_float(upper, "upper")
  _checks.check_ndim(lo, 1, "lower", "(n,)")
  _checks.check_nonempty(lo, "lower", "(n,)")
  if hi.shape != lo.shape:
    raise ValueError(f"upper must have the shape of lower {lo.shape}, got {hi.shape}")
  _checks.check_not_nan(lo, "lower")
  _checks.check_not_nan(hi, "upper")
  return lo, hi


def regression_coverage(lower: ArrayLike, upper: ArrayLike, y: ArrayLike) -> jax.Array:
  """The fraction of targets inside their interval, ``lower <= y <= upper``.

  :func:`jaxuq.metrics.interval_coverage` does the same for the central
  interval of MC samples; this takes the bounds of a conformal interval.

  Args:
    lower: lower bounds, shape ``(n,)``.
    upper: upper bounds, shape ``(n,)``.
    y: targets, shape ``(n,)``.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: shapes differ or are not ``(n,)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> lower, upper = jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0])
    >>> float(conformal.regression_coverage(lower, upper, jnp.array([1.0, 2.0])))
    0.5
  """
  lo, hi = _check_bounds(lower, upper)
  t = _checks.as_float(y, "y")
  if t.shape != lo.shape:
    raise ValueError(f"y must have the shape of lower {lo.shape}, got {t.shape}")
  _checks.check_finite(t, "y")
  return _mean((lo <= t) & (t <= hi))


def mean_width(lower: ArrayLike, upper: ArrayLike) -> jax.Array:
  """The mean interval width ``upper - lower`` (an empty interval counts as width 0).

  Args:
    lower: lower bounds, shape ``(n,)``.
    upper: upper bounds, shape ``(n,)``.

  Returns:
    A scalar, in the units of the bounds.

  Raises:
    ValueError: shapes differ or are not ``(n,)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> float(conformal.mean_width(jnp.array([0.0, 1.0]), jnp.array([2.0, 0.0])))
    1.0
  """
  lo, hi = _check_bounds(lower, upper)
  return _checks.narrow(jnp.maximum(_checks.widen(hi) - _checks.widen(lo), 0).mean(), lo.dtype)
