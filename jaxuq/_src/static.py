"""Structural fingerprints of Python objects, so that equal settings share one compilation.

optax transformations are NamedTuples of fresh closures: two ``optax.adam(1e-3)``
objects are different objects with the same behaviour. As static fields of a
train state, compared by identity, each would trace and compile the training
step anew. :class:`Static` wraps such an object and compares it by what it
does: function code objects, the values in their closure cells and their
defaults, recursively; arrays by dtype, shape and bytes. A value that is
neither fingerprintable nor hashable is compared by identity, which is never
wrong (at worst a recompilation).

:func:`digest` renders the same walk as a short portable string (functions by
their qualified name, not their bytecode) for checkpoint fingerprints, which
must agree across processes.
"""

from __future__ import annotations

import functools
import hashlib
import numbers
import types
from typing import Any

import jax
import numpy as np

_MAX_DEPTH = 32


class _Identity:
  """Compares and hashes by the identity of the wrapped object (which it keeps alive)."""

  __slots__ = ("obj",)

  def __init__(self, obj: Any) -> None:
    self.obj = obj

  def __eq__(self, other: object) -> bool:
    return isinstance(other, _Identity) and other.obj is self.obj

  def __hash__(self) -> int:
    return id(self.obj)


def _walk(obj: Any, depth: int, seen: frozenset[int], portable: bool) -> Any:
  """A hashable structure equal for objects that behave alike (see the module docstring)."""
  if depth > _MAX_DEPTH or id(obj) in seen:
    return ("cycle", type(obj).__qualname__) if portable else _Identity(obj)
  if obj is None or isinstance(obj, bool | str | bytes):
    return (type(obj).__name__, obj)
  if isinstance(obj, numbers.Number) and not isinstance(obj, np.ndarray | jax.Array):
    return (type(obj).__name__, repr(obj))  # repr: 0.0 and -0.0, nan, int vs float stay distinct
  inner = seen | {id(obj)}

  def walk(value: Any) -> Any:
    return _walk(value, depth + 1, inner, portable)

  if isinstance(obj, np.ndarray | jax.Array | np.generic):
    try:
      if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
        obj = jax.random.key_data(obj)
      a = np.asarray(obj)
    except (
      TypeError,
      ValueError,
      RuntimeError,
    ):  # a tracer, or an array that cannot come to the host: identity
      return ("array", id(obj)) if portable else _Identity(obj)
    data = hashlib.sha256(a.tobytes()).hexdigest()
    return ("array", str(a.dtype), a.shape, data)
  if isinstance(obj, types.FunctionType):
    code: Any = f"{obj.__module__}.{obj.__qualname__}" if portable else obj.__code__
    cells = tuple(walk(c.cell_contents) for c in obj.__closure__ or () if _filled(c))
    globals_ = obj.__module__ if portable else _Identity(obj.__globals__)
    kwdefaults = sorted((obj.__kwdefaults__ or {}).items())
    return ("function", code, globals_, walk(obj.__defaults__ or ()), walk(kwdefaults), cells)
  if isinstance(obj, functools.partial):
    return ("partial", walk(obj.func), walk(obj.args), walk(sorted(obj.keywords.items())))
  if isinstance(obj, types.MethodType):
    return ("method", walk(obj.__func__), walk(obj.__self__))
  if isinstance(obj, tuple | list):
    return (type(obj).__qualname__, tuple(walk(v) for v in obj))
  if isinstance(obj, dict):
    try:
      items = sorted(obj.items())
    except TypeError:
      items = list(obj.items())
    return ("dict", tuple((walk(k), walk(v)) for k, v in items))
  if isinstance(obj, type | types.ModuleType | types.BuiltinFunctionType):
    return ("named", getattr(obj, "__module__", ""), getattr(obj, "__qualname__", obj.__name__))
  if portable:
    return ("object", type(obj).__module__, type(obj).__qualname__)
  try:
    hash(obj)
  except TypeError:
    return _Identity(obj)
  return ("hashable", type(obj), obj)  # objects without __eq__ compare by identity anyway


def _filled(cell: Any) -> bool:
  try:
    cell.cell_contents  # noqa: B018
  except ValueError:  # an empty cell (a variable assigned after the closure was made)
    return False
  return True


def fingerprint(obj: Any) -> Any:
  """A hashable value equal for two objects that compute the same thing (in this process)."""
  return _walk(obj, 0, frozenset(), portable=False)


def digest(obj: Any) -> str:
  """A short portable fingerprint (hex) of ``obj``'s settings, stable across processes."""
  return hashlib.sha256(repr(_walk(obj, 0, frozenset(), portable=True)).encode()).hexdigest()[:16]


class Static:
  """A static (non-pytree) field that compares and hashes by :func:`fingerprint`.

  Attributes:
    value: the wrapped object (an optax transformation, a loss function).
  """

  __slots__ = ("_hash", "_key", "value")
  value: Any

  def __init__(self, value: Any) -> None:
    if isinstance(value, Static):
      value = value.value
    self.value = value
    self._key = fingerprint(value)
    self._hash = hash(self._key)

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Static):
      return NotImplemented
    return self.value is other.value or (self._hash == other._hash and self._key == other._key)

  def __hash__(self) -> int:
    return self._hash

  def __repr__(self) -> str:
    return f"Static({self.value!r})"
