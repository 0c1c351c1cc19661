"""Summaries of Monte Carlo samples over the leading sample axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


class Summary(NamedTuple):
  """Per-input summary of samples.

  Attributes:
    mean: the sample mean, shape ``batch...``.
    std: the sample standard deviation (``ddof`` as requested), ``batch...``.
    quantiles: the requested quantiles, shape ``(len(levels), batch...)``.
    levels: the quantile levels, shape ``(len(levels),)``.
  """

  mean: jax.Array
  std: jax.Array
  quantiles: jax.Array
  levels: jax.Array


def _check_samples(samples: ArrayLike, name: str = "samples") -> jax.Array:
  samples = jnp.asarray(samples)
  if samples.ndim < 1 or samples.shape[0] < 1:
    raise ValueError(
      f"{name} must have a leading sample axis with at least one sample, got shape {samples.shape}"
    )
  return samples


def predictive_mean(samples: ArrayLike) -> jax.Array:
  """The mean over the leading sample axis: ``samples.mean(0)``.

  Args:
    samples: shape ``(num_samples, ...)``.

  Returns:
    Shape ``(...)``.
  """
  return _check_samples(samples).mean(axis=0)


def predictive_std(samples: ArrayLike, ddof: int = 0) -> jax.Array:
  """The standard deviation over the leading sample axis.

  Args:
    samples: shape ``(num_samples, ...)``.
    ddof: delta degrees of freedom: 0 (default, as NumPy and the seeds' Keras
      code) divides by ``num_samples``, 1 gives the unbiased variance's root.

  Returns:
    Shape ``(...)``.
  """
  samples = _check_samples(samples)
  if ddof not in (0, 1) or (ddof == 1 and samples.shape[0] < 2):
    raise ValueError(
      f"ddof must be 0, or 1 with at least 2 samples; got ddof={ddof!r} with "
      f"{samples.shape[0]} samples"
    )
  return samples.std(axis=0, ddof=ddof)


def summarize(
  samples: ArrayLike, levels: Sequence[float] = (0.05, 0.5, 0.95), ddof: int = 0
) -> Summary:
  """Mean, standard deviation and quantiles over the leading sample axis.

  Args:
    samples: shape ``(num_samples, ...)``.
    levels: quantile levels in ``[0, 1]`` (linear interpolation, as NumPy).
    ddof: see :func:`predictive_std`.

  Returns:
    A :class:`Summary`.

  Examples:
    >>> import jax.numpy as jnp, jaxuq
    >>> s = jaxuq.summarize(jnp.array([[0.0], [1.0], [2.0], [3.0]]), levels=(0.5,))
    >>> float(s.mean[0]), float(s.quantiles[0, 0])
    (1.5, 1.5)
  """
  samples = _check_samples(samples)
  levels_np = np.asarray(levels, dtype=np.float64)
  if levels_np.ndim != 1 or np.any((levels_np < 0) | (levels_np > 1)):
    raise ValueError(f"levels must be a sequence of floats in [0, 1], got {levels!r}")
  dtype = samples.dtype if jnp.issubdtype(samples.dtype, jnp.floating) else jnp.float32
  levels_arr = jnp.asarray(levels_np, dtype=dtype)
  return Summary(
    mean=predictive_mean(samples),
    std=predictive_std(samples, ddof),
    quantiles=jnp.quantile(samples, levels_arr, axis=0),
    levels=levels_arr,
  )
