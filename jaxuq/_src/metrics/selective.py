"""Selective prediction: accuracy when the most uncertain inputs are rejected first.

Every function takes ``(uncertainty, correct)``: the score first, the outcome
second, as every metric of :mod:`jaxuq.metrics`. Sums run in float32 at least
(float64 under x64).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks
from jaxuq._src.metrics._sorting import cumulative, sort_by, tie_bounds


class CoverageCurve(NamedTuple):
  """Accuracy of the ``k`` most certain predictions, for ``k = 1..n``.

  Attributes:
    coverage: ``k / n``, shape ``(n,)``, increasing to 1.
    accuracy: mean correctness of the ``k`` kept inputs, shape ``(n,)``.
  """

  coverage: jax.Array
  accuracy: jax.Array


def _check(uncertainty: ArrayLike, correct: ArrayLike) -> tuple[jax.Array, jax.Array]:
  c = _checks.as_float(correct, "correct")
  u = _checks.as_float(uncertainty, "uncertainty")
  if c.ndim != 1 or u.shape != c.shape or c.size == 0:
    raise ValueError(
      f"uncertainty and correct must be non-empty 1-D arrays of the same length, got "
      f"shapes {u.shape} and {c.shape}"
    )
  _checks.check_finite(c, "correct")
  if _checks.is_concrete(c):
    lo, hi = jax.device_get(_checks.range_of(c))
    if not 0 <= lo <= hi <= 1:
      raise ValueError(f"correct must be 0/1 (or a score in [0, 1]) per input, got [{lo}, {hi}]")
  _checks.check_finite(u, "uncertainty")
  return u, c


def accuracy_coverage_curve(uncertainty: ArrayLike, correct: ArrayLike) -> CoverageCurve:
  """Accuracy against coverage when rejecting the most uncertain inputs first.

  Inputs are kept in order of increasing uncertainty; at coverage ``k/n`` the
  accuracy is the mean of ``correct`` over the ``k`` kept. Inputs with equal
  uncertainty cannot be ordered, so within a tie group the curve is the
  expectation over a uniformly random order: ``(C_<g + (k - n_<g) c̄_g) / k``
  with ``C_<g``, ``n_<g`` the correct count and size of the groups before and
  ``c̄_g`` the group's accuracy. It is exact at the end of every group and does
  not depend on the input order.

  Args:
    uncertainty: higher = rejected earlier, shape ``(n,)``.
    correct: 1 where the prediction is right, 0 where wrong (any score in
      ``[0, 1]`` works, e.g. a per-input accuracy), shape ``(n,)``.

  Returns:
    A :class:`CoverageCurve` of ``n`` points.

  Raises:
    ValueError: shapes differ, are empty or not 1-D; ``correct`` outside
      ``[0, 1]`` or non-finite ``uncertainty`` (when the values are known).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import accuracy_coverage_curve
    >>> curve = accuracy_coverage_curve(jnp.array([0.1, 0.9, 0.2]), jnp.array([1, 0, 1]))
    >>> [round(a, 4) for a in curve.accuracy.tolist()]
    [1.0, 1.0, 0.6667]

  References:
    El-Yaniv, R., Wiener, Y. (2010). On the Foundations of Noise-free Selective
    Classification. JMLR 11, 1605-1641.
    Geifman, Y., El-Yaniv, R. (2017). Selective Classification for Deep Neural
    Networks. NeurIPS.
  """
  curve, dtype = _wide_curve(uncertainty, correct)
  return _checks.narrow(curve, dtype)


def _wide_curve(uncertainty: ArrayLike, correct: ArrayLike) -> tuple[CoverageCurve, jnp.dtype]:
  """The curve in the accumulation dtype, and the inputs' common dtype."""
  u, c = _check(uncertainty, correct)
  dtype = jnp.result_type(u, c)
  wide = _checks.compute_dtype(dtype)
  return _accuracy_coverage_curve(u.astype(wide), c.astype(wide)), dtype


@jax.jit
def _accuracy_coverage_curve(u: jax.Array, c: jax.Array) -> CoverageCurve:
  n = c.shape[0]
  u, c = sort_by(u, c)
  cum = cumulative(c, c.dtype)
  start, end = tie_bounds(u)
  k = jnp.arange(1, n + 1)
  group_mean = (cum[end] - cum[start]) / (end - start).astype(c.dtype)
  kept = cum[start] + (k - start).astype(c.dtype) * group_mean
  kf = k.astype(c.dtype)
  return CoverageCurve(coverage=_checks.rate(kf, jnp.asarray(n, c.dtype)), accuracy=kept / kf)


def aurc(uncertainty: ArrayLike, correct: ArrayLike) -> jax.Array:
  """The area under the risk-coverage curve (lower is better).

  ``AURC = (1/n) Σ_{k=1..n} (1 - acc_k)`` with ``acc_k`` the accuracy of the
  ``k`` most certain inputs (see :func:`accuracy_coverage_curve` for ties):
  the mean selective risk over all coverages.

  Args:
    uncertainty: higher = rejected earlier, shape ``(n,)``.
    correct: 1 where the prediction is right, 0 where wrong, shape ``(n,)``.

  Returns:
    A scalar in ``[0, 1]``.

  Raises:
    ValueError: as :func:`accuracy_coverage_curve`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import aurc
    >>> round(float(aurc(jnp.array([0.1, 0.9, 0.2]), jnp.array([1, 0, 1]))), 4)  # (0+0+1/3)/3
    0.1111

  References:
    Geifman, Y., Uziel, G., El-Yaniv, R. (2019). Bias-Reduced Uncertainty
    Estimation for Deep Neural Classifiers. ICLR.
  """
  curve, dtype = _wide_curve(uncertainty, correct)
  return _checks.narrow(1.0 - curve.accuracy.mean(), dtype)
