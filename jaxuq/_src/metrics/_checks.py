"""Eager validation shared by the metrics.

Shapes and static settings are checked always, before any work. Values
(probabilities on the simplex, labels in range, binary OOD labels with both
classes present) are checked when the inputs are concrete arrays; under
``jax.jit`` they are tracers whose values are unknown, so only the shapes are
checked and invalid values give undefined results (typically ``nan``).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def is_concrete(x: object) -> bool:
  """Whether ``x``'s values are known now (not a tracer under jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def as_jax(x: ArrayLike, name: str) -> jax.Array:
  """``jnp.asarray(x)``, refusing host integers that JAX's integer type would wrap around.

  Without ``jax_enable_x64`` JAX stores NumPy's int64 (and uint64) as 32 bits,
  silently: ``2**32 + 1`` becomes 1, an out-of-range label a valid one. Host
  arrays (NumPy, lists, scalars) are checked here, before the conversion.

  Raises:
    ValueError: an integer value that JAX's dtype for it cannot hold.
  """
  if isinstance(x, jax.Array):  # tracers too: nothing on the host to check
    return jnp.asarray(x)
  host = np.asarray(x)
  if host.dtype.kind in "iu" and host.size:
    target = np.dtype(jax.dtypes.canonicalize_dtype(host.dtype))
    info = np.iinfo(target)
    lo, hi = host.min(), host.max()
    if target != host.dtype and (lo < info.min or hi > info.max):
      raise ValueError(
        f"{name} holds {host.dtype} values in [{lo}, {hi}], which JAX stores as {target} "
        f"(range [{info.min}, {info.max}]) without jax_enable_x64: they would wrap around "
        f"to other values. Pass {name} with values in that range (class indices or 0/1 "
        "outcomes are small), or enable x64 first"
      )
  return jnp.asarray(host)


def as_float(x: ArrayLike, name: str) -> jax.Array:
  """``x`` as a floating JAX array (integers and booleans become float32).

  Integers beyond ``2**24`` in magnitude are refused when their values are known.
  """
  dtype = getattr(x, "dtype", None)
  if dtype is not None and not (
    jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)
  ):
    raise TypeError(f"{name} must be a real array, got dtype {dtype}")
  if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
    raise TypeError(f"{name} must be real, got dtype {dtype}")
  x = as_jax(x, name)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    if jnp.issubdtype(x.dtype, jnp.integer) and is_concrete(x) and x.size:
      lo, hi = (int(v) for v in jax.device_get(range_of(x)))
      if max(-lo, hi) > 2**24:
        raise ValueError(
          f"{name} holds integers up to {max(-lo, hi)} in magnitude, beyond 2**24, where "
          "float32 (the dtype integers are summarised in) stops being exact, so sums and "
          "spreads would be rounded; subtract an offset first, or pass float64 values "
          "under x64"
        )
    x = x.astype(jnp.float32)
  return x


def compute_dtype(dtype) -> np.dtype:
  """The dtype sums are accumulated in: float64 under x64, else float32 (wider input kept).

  Sums, means and cumulative sums over many examples saturate in float16 and
  bfloat16 (``256 + 1 == 256`` in bfloat16), so every metric widens its
  inputs to this dtype before reducing.
  """
  return np.dtype(jnp.promote_types(dtype, jax.dtypes.canonicalize_dtype(np.float64)))


def result_dtype(dtype) -> np.dtype:
  """The dtype of a metric's result: the input's, at least float32."""
  return np.dtype(jnp.promote_types(dtype, np.float32))


def widen(x: jax.Array) -> jax.Array:
  """``x`` in :func:`compute_dtype` (floating inputs only)."""
  return x.astype(compute_dtype(x.dtype))


def rate(count: jax.Array, total: jax.Array) -> jax.Array:
  """``count / total``, correctly rounded also under ``jit``.

  XLA's CPU backend rewrites a division by a broadcast value as a product
  with its reciprocal, which is off by an ulp: 20/25 gave 0.79999995 (not
  float32's 0.8, so a target TPR of 0.8 was missed) and 41/41 gave 0.99999994.
  The barrier keeps the division a division.
  """
  total = jax.lax.optimization_barrier(jnp.broadcast_to(total, jnp.shape(count)))
  return count / total


def narrow(tree, dtype):
  """Casts every floating leaf of ``tree`` to :func:`result_dtype` of ``dtype``."""
  out = result_dtype(dtype)
  return jax.tree.map(lambda a: a.astype(out) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def check_ndim(x: jax.Array, ndim: int, name: str, layout: str) -> None:
  if x.ndim != ndim:
    raise ValueError(f"{name} must have shape {layout} ({ndim} axes), got shape {x.shape}")


def check_nonempty(x: jax.Array, name: str, layout: str) -> None:
  if x.size == 0:
    raise ValueError(f"{name} must not be empty, got shape {x.shape} ({layout})")


@jax.jit
def _simplex_stats(p: jax.Array):
  sums = p.sum(axis=-1)
  worst = jnp.argmax(jnp.abs(sums - 1).ravel())
  return jnp.isfinite(p).all(), p.min(), p.max(), sums.ravel()[worst]


def check_simplex(probs: jax.Array, name: str) -> None:
  """Raises unless every row (last axis) is a probability vector.

  Entries must lie in ``[0, 1]`` and each row must sum to 1 within
  ``max(2 eps, sqrt(eps_float32))``: 3.5e-4 in float32 and float64 (float32
  softmax outputs cast to float64 pass), 2.0e-3 in float16 and 1.6e-2 in
  bfloat16: four times the most a correct row can be off once its entries
  are rounded to the dtype (each by ``eps / 2`` of itself: ``eps / 2`` in
  all). Nothing is renormalised.

  The reductions run on the array's device; only four scalars come back.
  """
  if not is_concrete(probs) or probs.size == 0:
    return
  finite, lo, hi, worst = jax.device_get(_simplex_stats(probs))
  tol = max(2 * float(jnp.finfo(probs.dtype).eps), float(np.sqrt(jnp.finfo(np.float32).eps)))
  if not finite:
    raise ValueError(f"{name} must be finite, got nan or inf")
  if lo < 0 or hi > 1 + tol:
    raise ValueError(f"{name} must be probabilities in [0, 1], got values in [{lo:.6g}, {hi:.6g}]")
  if abs(float(worst) - 1.0) > tol:
    raise ValueError(
      f"{name} must sum to 1 over its last (class) axis within {tol:.2g}, but a row "
      f"sums to {float(worst):.9g} (off by {abs(float(worst) - 1.0):.3g}); pass softmax "
      "outputs (jax.nn.softmax(logits)), not "
      "logits or unnormalised scores"
    )


@jax.jit
def range_of(x: jax.Array):
  return x.min(), x.max()


def check_labels(labels: ArrayLike, batch_shape: tuple[int, ...], num_classes: int) -> jax.Array:
  """Integer class labels of shape ``batch_shape`` with values in ``[0, num_classes)``."""
  labels = as_jax(labels, "labels")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
  if labels.shape != batch_shape:
    raise ValueError(
      f"labels must have shape {batch_shape} (one class index per row of probs), got {labels.shape}"
    )
  if is_concrete(labels) and labels.size:
    lo, hi = (int(v) for v in jax.device_get(range_of(labels)))
    if lo < 0 or hi >= num_classes:
      raise ValueError(
        f"labels must be class indices in [0, {num_classes}), got values in [{lo}, {hi}]"
      )
  return labels


def check_binary_labels(labels: ArrayLike, length: int | None = None) -> jax.Array:
  """1-D labels, 1 = out of distribution (positive), 0 = in distribution, both present."""
  labels = as_jax(labels, "labels")
  if labels.ndim != 1 or (length is not None and labels.shape[0] != length):
    want = "(n,)" if length is None else f"({length},)"
    raise ValueError(f"labels must have shape {want}, got {labels.shape}")
  if not (jnp.issubdtype(labels.dtype, jnp.integer) or jnp.issubdtype(labels.dtype, jnp.bool_)):
    raise TypeError(
      f"labels must be integers or booleans (1 = out of distribution), got dtype {labels.dtype}; "
      "the arguments are (scores, labels), scores first"
    )
  if is_concrete(labels):  # the range of the labels as given, before the cast can wrap them
    lo, hi = (int(v) for v in jax.device_get(range_of(labels))) if labels.size else (0, 0)
    if lo < 0 or hi > 1:
      raise ValueError(
        f"labels must be 0 (in distribution) or 1 (out of distribution), got values in [{lo}, {hi}]"
      )
    if labels.size == 0 or lo == hi:
      raise ValueError(
        "labels must contain both classes (0 = in distribution, 1 = out of distribution); "
        f"got {labels.size} labels, all {lo if labels.size else '-'}: the metric is undefined"
      )
  return labels.astype(jnp.int32)


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
  return jnp.isfinite(x).all()


@jax.jit
def _any_nan(x: jax.Array) -> jax.Array:
  return jnp.isnan(x).any()


def check_not_nan(x: jax.Array, name: str) -> None:
  """Raises if ``x`` is concrete and holds a nan (infinities pass: an unbounded interval end)."""
  if is_concrete(x) and x.size and bool(_any_nan(x)):
    raise ValueError(f"{name} must not be nan, got nan")


def check_finite(x: jax.Array, name: str) -> None:
  if is_concrete(x) and x.size and not bool(_all_finite(x)):
    raise ValueError(f"{name} must be finite, got nan or inf")


def check_binary(scores: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Float scores and binary labels (1 = positive = out of distribution), same 1-D shape."""
  scores = as_float(scores, "scores")
  if scores.ndim != 1:
    raise ValueError(f"scores must be 1-D, shape (n,), got {scores.shape}")
  labels = check_binary_labels(labels, scores.shape[0])
  check_finite(scores, "scores")
  return scores, labels


def check_level(level: object, name: str = "level") -> float:
  """A probability strictly between 0 and 1, as a Python float."""
  if isinstance(level, bool) or not isinstance(level, numbers.Real):
    raise TypeError(f"{name} must be a float in (0, 1), got {level!r}")
  if not 0.0 < float(level) < 1.0:
    raise ValueError(f"{name} must be in (0, 1), got {level!r}")
  return float(level)


def check_reduction(reduction: str) -> None:
  if reduction not in ("mean", "none"):
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def reduce(values: jax.Array, reduction: str) -> jax.Array:
  return values.mean() if reduction == "mean" else values
