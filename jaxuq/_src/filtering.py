"""Filtering: a pytree callable split into its static part and its array leaves.

Samplers and exact methods pass a predictive function's arrays (its weights) to
``jax.jit`` as arguments, and its static part as a hashable static argument, so
weights are never baked into a compiled program as constants and two functions
of one structure share one compilation.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class StaticPart:
  """The non-array part of a pytree callable, hashable for jit's cache."""

  treedef: Any
  leaves: tuple[Any, ...]

  def __hash__(self) -> int:
    return hash((self.treedef, tuple(_hash_or_id(x) for x in self.leaves)))

  def __eq__(self, other: object) -> bool:
    # The treedef holds static fields (a linen module's): a module with an array field
    # compares arrays there, which raised inside jit's cache lookup; unequal then (a
    # recompilation for an equal copy, never a wrong program).
    if not isinstance(other, StaticPart) or not _safe_eq(self.treedef, other.treedef):
      return False
    return all(a is b or _safe_eq(a, b) for a, b in zip(self.leaves, other.leaves, strict=False))


def _hash_or_id(x: Any) -> int:
  try:
    return hash(x)
  except TypeError:
    return id(x)


def _safe_eq(a: Any, b: Any) -> bool:
  try:
    return bool(a == b)
  except Exception:  # noqa: BLE001 - unequal if equality is not a plain bool
    return False


def is_array(x: Any) -> bool:
  """Whether ``x`` is an array leaf (a JAX or NumPy array or NumPy scalar)."""
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def partition(fn: Callable[..., Any]) -> tuple[StaticPart, list[Any]]:
  """Splits a (pytree) callable into its static part and its array leaves.

  A plain function is all static; a pytree callable (such as the adapters'
  predictive functions) passes its arrays to jit as arguments rather than
  baking them into the compiled program as constants.
  """
  leaves, treedef = jax.tree.flatten(fn)
  static = tuple(None if is_array(x) else x for x in leaves)
  dynamic = [x for x in leaves if is_array(x)]
  return StaticPart(treedef, static), dynamic


def combine(static: StaticPart, dynamic: Sequence[Any]) -> Callable[..., Any]:
  """The inverse of :func:`partition`."""
  it = iter(dynamic)
  leaves = [next(it) if x is None else x for x in static.leaves]
  return jax.tree.unflatten(static.treedef, leaves)


def _is_number_list(x: Any) -> bool:
  if not isinstance(x, list):
    return False
  return all(isinstance(v, numbers.Number) or _is_number_list(v) for v in x)


def as_arrays(args: Any) -> Any:
  """``args`` with every (nested) Python list of numbers made a ``jnp`` array.

  Other leaves and containers (tuples, dicts, lists of arrays) are kept, so a
  model may still take a pytree of inputs; ``[[1.0], [2.0]]`` becomes an array
  of shape ``(2, 1)``.

  Raises:
    ValueError: a list of numbers is ragged (not rectangular).
  """

  if isinstance(args, tuple) and all(map(is_array, args)):  # the common case, fast
    return args

  def convert(x: Any) -> Any:
    if not _is_number_list(x):
      return x
    try:
      return jnp.asarray(x)
    except (TypeError, ValueError) as err:
      raise ValueError(
        f"an input is a Python list that is not a rectangular array of numbers ({err}); "
        "pass a jax or numpy array"
      ) from None

  return jax.tree.map(convert, args, is_leaf=_is_number_list)
