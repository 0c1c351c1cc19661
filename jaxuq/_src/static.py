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
their qualified name, constants and the names they read, not their bytecode)
for checkpoint fingerprints, which must agree across processes. Both walks
include the values of the module-level names a function reads, so a lambda
that reads a global learning rate or loss weight differs when that value does.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import numbers
import re
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


def _walk(obj: Any, depth: int, seen: frozenset[int], portable: bool, deep: bool = True) -> Any:
  """A hashable structure equal for objects that behave alike (see the module docstring).

  ``deep=False`` is the portable walk of checkpoints written before functions were
  read by their constants and the globals they read (kept so that those still resume).
  """
  if depth > _MAX_DEPTH or id(obj) in seen:
    return ("cycle", type(obj).__qualname__) if portable else _Identity(obj)
  if obj is None or isinstance(obj, bool | str | bytes):
    return (type(obj).__name__, obj)
  if isinstance(obj, numbers.Number) and not isinstance(obj, np.ndarray | jax.Array):
    return (type(obj).__name__, repr(obj))  # repr: 0.0 and -0.0, nan, int vs float stay distinct
  inner = seen | {id(obj)}

  def walk(value: Any) -> Any:
    return _walk(value, depth + 1, inner, portable, deep)

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
    cells = tuple(walk(c.cell_contents) for c in obj.__closure__ or () if _filled(c))
    globals_ = obj.__module__ if portable else _Identity(obj.__globals__)
    kwdefaults = sorted((obj.__kwdefaults__ or {}).items())
    if not deep:
      name = f"{obj.__module__}.{obj.__qualname__}"
      return ("function", name, globals_, walk(obj.__defaults__ or ()), walk(kwdefaults), cells)
    code: Any = _portable_code(obj) if portable else obj.__code__
    # The values of the module-level names it reads: `lambda o, t: w * mse(o, t)` with
    # another `w` is another function, though its code, cells and globals dict are the same.
    read = tuple(
      (name, walk(obj.__globals__[name]))
      for name in sorted(_global_names(obj.__code__))
      if name in obj.__globals__
    )
    return ("function", code, globals_, walk(obj.__defaults__ or ()), walk(kwdefaults), cells, read)
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
    if not deep:
      return ("object", type(obj).__module__, type(obj).__qualname__)
    fields = vars(obj) if callable(obj) and hasattr(obj, "__dict__") else {}
    return ("object", type(obj).__module__, type(obj).__qualname__, walk(fields))
  try:
    hash(obj)
  except TypeError:
    return _Identity(obj)
  return ("hashable", type(obj), obj)  # objects without __eq__ compare by identity anyway


def _global_names(code: types.CodeType) -> set[str]:
  """The names ``code`` (and the functions defined in it) may read from its module."""
  names = set(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      names |= _global_names(const)
  return names


def _portable_code(fn: types.FunctionType) -> tuple:
  """A function's code without its bytecode (which changes between Python versions).

  Its qualified name, the constants it holds (its docstring left out) and the
  names it reads, recursively through the functions defined in it.
  """

  def const(c: Any) -> Any:
    if isinstance(c, types.CodeType):
      return code(c, None)
    if isinstance(c, frozenset):  # a set's order follows string hashing, which varies
      return ("frozenset", tuple(sorted(map(repr, c))))
    return repr(c)

  def code(co: types.CodeType, doc: str | None) -> tuple:
    return (tuple(const(c) for c in co.co_consts if doc is None or c is not doc), co.co_names)

  return (f"{fn.__module__}.{fn.__qualname__}", code(fn.__code__, fn.__doc__))


def _filled(cell: Any) -> bool:
  try:
    cell.cell_contents  # noqa: B018
  except ValueError:  # an empty cell (a variable assigned after the closure was made)
    return False
  return True


def fingerprint(obj: Any) -> Any:
  """A hashable value equal for two objects that compute the same thing (in this process)."""
  return _walk(obj, 0, frozenset(), portable=False)


def digest(obj: Any, *, deep: bool = False) -> str:
  """A short portable fingerprint (hex) of ``obj``'s settings, stable across processes.

  ``deep=False`` names functions and objects by their qualified names (what
  checkpoints have always held); ``deep=True`` also reads functions' constants
  and the names and global values they read, and callable objects' attributes,
  so that ``optax.adam(lambda step: 1e-2)`` and ``optax.adam(lambda step: 10.0)``
  differ. Checkpoints hold both.
  """
  walked = _walk(obj, 0, frozenset(), portable=True, deep=deep)
  return hashlib.sha256(repr(walked).encode()).hexdigest()[:16]


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
    # Not `self.value is other.value`: one function reading a changed global is another.
    return self._hash == other._hash and self._key == other._key

  def __hash__(self) -> int:
    return self._hash

  def __repr__(self) -> str:
    return f"Static({self.value!r})"


# Fingerprint entries added after checkpoints were first written: a checkpoint without one
# is checked on the rest (it was written by a jaxuq that did not record it).
LATER_KEYS = ("optimizer_deep", "loss_deep", "model_callables", "run_keys")


def without_later_keys(found: Any, expected: dict[str, Any]) -> dict[str, Any]:
  """``expected`` less the :data:`LATER_KEYS` that the checkpoint's ``found`` lacks."""
  if not isinstance(found, dict):
    return expected
  return {k: v for k, v in expected.items() if k in found or k not in LATER_KEYS}


def model_entries(model: Any) -> dict[str, str]:
  """A model's fingerprint entries: its repr (memory addresses left out) and its callables.

  ``repr`` shows a function field as ``<function f at 0x7f...>``: the address differs in
  every process, and two lambdas print alike. ``model_callables`` digests those fields
  deeply (code constants, the globals they read).
  """
  text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model))
  fields: dict[str, Any] = {}
  if dataclasses.is_dataclass(model):
    for f in dataclasses.fields(model):
      value = getattr(model, f.name, None)
      if f.name not in ("parent", "name") and callable(value) and not isinstance(value, type):
        fields[f.name] = value
  return {"model": text, "model_callables": digest(fields, deep=True)}
