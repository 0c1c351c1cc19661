"""Summaries of Monte Carlo samples over the leading sample axis, leaf by leaf.

The samples are whatever :func:`jaxuq.mc_sample` returns: an array or any
pytree of arrays (a tuple of heads, a dict, nested), each leaf with the sample
axis first. Every summary is computed per leaf and has the structure of the
samples. Sums run in float32 at least (float64 under x64), so bfloat16 and
float16 samples do not saturate; results are float32 at least.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq._src.metrics import _checks


class Summary(NamedTuple):
  """Per-input summary of samples.

  Attributes:
    mean: the sample mean, the structure of the samples, each leaf ``batch...``.
    std: the sample standard deviation (``ddof`` as requested), like ``mean``.
    quantiles: the requested quantiles, each leaf ``(len(levels), batch...)``.
    levels: the quantile levels, shape ``(len(levels),)``.
  """

  mean: Any
  std: Any
  quantiles: Any
  levels: jax.Array


def _leaves(samples: Any, name: str = "samples") -> tuple[list[jax.Array], Any]:
  """The leaves as floating arrays sharing a leading sample axis, and the tree structure."""
  leaves, treedef = jax.tree.flatten(samples)
  if not leaves:
    raise ValueError(f"{name} must be an array or a pytree of arrays, got {samples!r}")
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(samples)[0]]
  arrays = []
  for path, leaf in zip(paths, leaves, strict=True):
    where = f"{name}{path}"
    if not hasattr(leaf, "shape"):  # a Python number of a nested list, a string
      raise TypeError(
        f"{where} must be an array (samples are an array or a pytree of arrays), got "
        f"{type(leaf).__name__} {leaf!r}; pass jnp.asarray(...) for nested lists"
      )
    x = _checks.as_float(leaf, where)
    if x.ndim < 1 or x.shape[0] < 1:
      raise ValueError(
        f"{where} must have a leading sample axis with at least one sample, got shape {x.shape}"
      )
    arrays.append(x)
  counts = {x.shape[0] for x in arrays}
  if len(counts) > 1:
    found = ", ".join(f"{name}{p}: {x.shape[0]}" for p, x in zip(paths, arrays, strict=True))
    raise ValueError(f"every leaf of {name} must have the same number of samples, got {found}")
  return arrays, treedef


def _mean(x: jax.Array) -> jax.Array:
  return _checks.narrow(_checks.widen(x).mean(axis=0), x.dtype)


def _std(x: jax.Array, ddof: int) -> jax.Array:
  # Shifted by the first sample (the std does not change): samples far from 0 compared with
  # their spread (1e7 + 0..3 in float32) no longer lose it to the rounding of their mean.
  w = _checks.widen(x)
  return _checks.narrow((w - w[:1]).std(axis=0, ddof=ddof), x.dtype)


def _check_ddof(ddof: object, num_samples: int) -> int:
  if isinstance(ddof, bool) or ddof not in (0, 1) or (ddof == 1 and num_samples < 2):
    raise ValueError(
      f"ddof must be 0, or 1 with at least 2 samples; got ddof={ddof!r} with {num_samples} samples"
    )
  return int(ddof)  # type: ignore[call-overload]


def predictive_mean(samples: Any) -> Any:
  """The mean over the leading sample axis of every leaf.

  Args:
    samples: an array of shape ``(num_samples, ...)`` or a pytree of them.

  Returns:
    The structure of ``samples``, each leaf of shape ``(...)``.

  Raises:
    ValueError: a leaf without a sample axis, or leaves with different
      numbers of samples.
    TypeError: a non-numeric leaf.

  Examples:
    >>> import jax.numpy as jnp, jaxuq
    >>> out = jaxuq.predictive_mean({"a": jnp.array([1.0, 3.0]), "b": jnp.array([[0.0], [1.0]])})
    >>> float(out["a"]), out["b"].tolist()
    (2.0, [0.5])
  """
  arrays, treedef = _leaves(samples)
  return treedef.unflatten([_mean(x) for x in arrays])


def predictive_std(samples: Any, ddof: int = 0) -> Any:
  """The standard deviation over the leading sample axis of every leaf.

  Args:
    samples: an array of shape ``(num_samples, ...)`` or a pytree of them.
    ddof: delta degrees of freedom: 0 (default, as NumPy and the seeds' Keras
      code) divides by ``num_samples``, 1 gives the unbiased variance's root.

  Returns:
    The structure of ``samples``, each leaf of shape ``(...)``.

  Raises:
    ValueError: as :func:`predictive_mean`, or a bad ``ddof``.
    TypeError: as :func:`predictive_mean`.

  Examples:
    >>> import jax.numpy as jnp, jaxuq
    >>> heads = (jnp.array([[0.0], [2.0]]), jnp.array([[5.0], [5.0]]))  # two heads, 2 samples
    >>> [h.tolist() for h in jaxuq.predictive_std(heads)]
    [[1.0], [0.0]]
  """
  arrays, treedef = _leaves(samples)
  ddof = _check_ddof(ddof, arrays[0].shape[0])
  return treedef.unflatten([_std(x, ddof) for x in arrays])


def summarize(samples: Any, levels: Sequence[float] = (0.05, 0.5, 0.95), ddof: int = 0) -> Summary:
  """Mean, standard deviation and quantiles over the leading sample axis of every leaf.

  Args:
    samples: an array of shape ``(num_samples, ...)`` or a pytree of them.
    levels: quantile levels in ``[0, 1]`` (linear interpolation, as NumPy).
    ddof: see :func:`predictive_std`.

  Returns:
    A :class:`~jaxuq.Summary` whose ``mean``, ``std`` and ``quantiles`` have the
    structure of ``samples``.

  Raises:
    ValueError: as :func:`predictive_std`, or levels outside ``[0, 1]``.
    TypeError: as :func:`predictive_mean`.

  Examples:
    >>> import jax.numpy as jnp, jaxuq
    >>> s = jaxuq.summarize(jnp.array([[0.0], [1.0], [2.0], [3.0]]), levels=(0.5,))
    >>> float(s.mean[0]), float(s.quantiles[0, 0])
    (1.5, 1.5)
  """
  arrays, treedef = _leaves(samples)
  ddof = _check_ddof(ddof, arrays[0].shape[0])
  levels_np = np.asarray(levels, dtype=np.float64)
  if levels_np.ndim != 1 or levels_np.size == 0 or not np.all((levels_np >= 0) & (levels_np <= 1)):
    raise ValueError(f"levels must be a non-empty sequence of floats in [0, 1], got {levels!r}")
  wide = _checks.compute_dtype(jnp.result_type(*arrays))
  levels_wide = jnp.asarray(levels_np, dtype=wide)

  def quantiles(x: jax.Array) -> jax.Array:
    return _checks.narrow(jnp.quantile(_checks.widen(x), levels_wide, axis=0), x.dtype)

  return Summary(
    mean=treedef.unflatten([_mean(x) for x in arrays]),
    std=treedef.unflatten([_std(x, ddof) for x in arrays]),
    quantiles=treedef.unflatten([quantiles(x) for x in arrays]),
    levels=_checks.narrow(levels_wide, jnp.result_type(*arrays)),
  )
