"""Eager checks of the calibration functions' inputs (shapes always; values when concrete)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks

LOGITS_LAYOUT = "(batch, classes) or (samples, batch, classes)"


@jax.jit
def _looks_like_probs(z: jax.Array) -> jax.Array:
  in_unit = (z.min() >= 0) & (z.max() <= 1)
  sums = jnp.abs(z.astype(jnp.float32).sum(axis=-1) - 1).max()
  return in_unit & (sums <= 1e-3)


def check_logits(logits: ArrayLike, name: str = "logits") -> jax.Array:
  """Real logits of shape ``(batch, classes)`` or ``(samples, batch, classes)``, at least 2 classes.

  Raises when the values are known and not finite, or when every row lies in
  ``[0, 1]`` and sums to 1: probabilities, not logits.
  """
  z = _checks.as_float(logits, name)
  if z.ndim not in (2, 3):
    raise ValueError(
      f"{name} must have shape {LOGITS_LAYOUT} (2 or 3 axes, sample axis first), got shape "
      f"{z.shape}"
    )
  if z.shape[-1] < 2:
    raise ValueError(f"{name} must have at least 2 classes (last axis), got shape {z.shape}")
  if z.size == 0:
    raise ValueError(
      f"{name} must not be empty (the calibration set needs at least one example and one "
      f"sample), got shape {z.shape}"
    )
  _checks.check_finite(z, name)
  if _checks.is_concrete(z) and bool(_looks_like_probs(z)):
    raise ValueError(
      f"{name} look like probabilities (every entry in [0, 1], every row summing to 1); pass "
      "logits (the network's pre-softmax outputs) or log-probabilities (jnp.log(probs))"
    )
  return z


def check_labels(labels: ArrayLike, logits: jax.Array) -> jax.Array:
  """Integer labels, one per example of ``logits``, in ``[0, classes)`` (values when concrete)."""
  y = _checks.as_jax(labels, "labels")
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class indices, got dtype {y.dtype}")
  batch = logits.shape[-2]
  if y.shape != (batch,):
    raise ValueError(
      f"labels must have shape ({batch},), one class index per example of logits of shape "
      f"{logits.shape} (batch axis {logits.ndim - 2}), got shape {y.shape}"
    )
  num_classes = logits.shape[-1]
  if _checks.is_concrete(y) and y.size:
    lo, hi = (int(v) for v in jax.device_get(_checks.range_of(y)))
    if lo < 0 or hi >= num_classes:
      raise ValueError(
        f"labels must be class indices in [0, {num_classes}) for logits with {num_classes} "
        f"classes, got values in [{lo}, {hi}]"
      )
  return y


def check_positive(x: jax.Array, name: str, fix: str | None = None) -> None:
  """Raises when the values of ``x`` are known and one is not positive (or not finite).

  ``fix`` ends the message; by default it speaks of a standard deviation.
  """
  _checks.check_finite(x, name)
  if _checks.is_concrete(x) and x.size:
    lo = float(_checks.range_of(x)[0])
    if not lo > 0:
      fix = fix or "drop or floor the examples with zero spread before calibrating"
      raise ValueError(f"{name} must be positive everywhere, got a minimum of {lo}; {fix}")


def check_same_shape(arrays: dict[str, jax.Array]) -> tuple[int, ...]:
  """The common shape of named arrays, non-empty; raises naming every shape otherwise."""
  shapes = {name: a.shape for name, a in arrays.items()}
  if len(set(shapes.values())) != 1:
    listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
    raise ValueError(f"{', '.join(shapes)} must have the same shape, got {listed}")
  shape = next(iter(shapes.values()))
  if int(np.prod(shape)) == 0:
    raise ValueError(f"the calibration set is empty: {', '.join(shapes)} have shape {shape}")
  return shape


def check_samples(samples: ArrayLike, y: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
  """Regression samples ``(samples, batch...)`` with at least 2 samples, and ``y`` of ``batch...``.

  With ``y=None`` only the samples are checked (and returned twice).
  """
  s = _checks.as_float(samples, "samples")
  if s.ndim < 1 or s.shape[0] < 2:
    raise ValueError(
      "samples must have shape (samples, batch...) with at least 2 samples (a CDF needs two "
      f"order statistics), got shape {s.shape}"
    )
  if s.size == 0:
    raise ValueError(
      f"samples must not be empty (a calibration set needs at least one example), got {s.shape}"
    )
  _checks.check_finite(s, "samples")
  if y is None:
    return s, s
  t = _checks.as_float(y, "y")
  if s.shape[1:] != t.shape:
    raise ValueError(
      f"samples must have shape (samples, *y.shape); got samples {s.shape} and y {t.shape}"
    )
  _checks.check_finite(t, "y")
  dtype = jnp.result_type(s, t)
  return s.astype(dtype), t.astype(dtype)
