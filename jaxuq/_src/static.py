"""Structural fingerprints of Python objects, so that equal settings share one compilation.

optax transformations are NamedTuples of fresh closures: two ``optax.adam(1e-3)``
objects are different objects with the same behaviour. As static fields of a
train state, compared by identity, each would trace and compile the training
step anew. :class:`Static` wraps such an object and compares it by what it
does: function code objects, the values in their closure cells and their
defaults, recursively; arrays by dtype, shape and bytes.

A function's settings also live in what it reads: the values of the
module-level names it reads (``lambda o, t: w * mse(o, t)``), and the
attributes it reads of the objects, classes and modules it reaches through
its globals and closure (``lambda step: cfg.lr``, ``HP.lr``, ``config.LR``):
for each such value the walk reads every attribute named in the function's
code (``co_names``, nested functions included) that the value holds (data
only: the functions and classes of a class or module are named, not read; the
modules and classes of installed libraries are not read at all). Plain objects
(instances of Python classes) are walked by their state: dataclass fields,
else ``vars(obj)`` and ``__slots__``, bounded in size; a callable object also
by the attributes its ``__call__`` reads. Such an object is compared by its
identity (or its own ``__eq__`` when hashable) AND that state, so a mutated
configuration object is another setting; an unhashable dataclass (a Flax
module with a list field) compares by its type and fields.

What the walk cannot read (a C object without state, a walk past its depth
or size bound) is compared by identity or its own hash. That is never wrong
for an object left unchanged, only a recompilation for an equal copy; it is
wrong only for an object mutated in place in a way the walk cannot see (a
property computed from hidden state, a callable attribute of a module or
class replaced at run time, an object past the bounds): give such settings to
the function as values instead.

:func:`digest` renders the same walk as a short portable string (functions by
their qualified name, constants and the names they read, not their bytecode)
for checkpoint fingerprints, which must agree across processes. ``deep`` adds
functions' constants and the values of the globals they read; ``values`` adds
the attributes read and the state of plain objects (as above); ``bytecode``
adds each function's bytecode, which is specific to the Python version (so
checkpoints record the version with it, see :func:`comparable`).
Portably, sets and the mappings of libraries (a ``FrozenDict``) are read by
their items, and dicts whose keys do not sort by their entries' digests, so
that neither string hashing nor insertion order enters a digest.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import numbers
import os
import re
import sys
import sysconfig
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

_MAX_DEPTH = 32
_MAX_FIELDS = 256  # a plain object with more attributes is compared by identity only
_MAX_NODES = 20_000  # values walked per fingerprint; past it, identity (or a type name)


class _Identity:
  """Compares and hashes by the identity of the wrapped object (which it keeps alive)."""

  __slots__ = ("obj",)

  def __init__(self, obj: Any) -> None:
    self.obj = obj

  def __eq__(self, other: object) -> bool:
    return isinstance(other, _Identity) and other.obj is self.obj

  def __hash__(self) -> int:
    return id(self.obj)


@functools.cache
def _library_paths() -> tuple[str, ...]:
  # Folders, each ending in a separator (``/usr/lib/python3.11`` must not hold
  # ``/usr/lib/python3.11-app``). Not ``sys.prefix`` as a whole: a project under
  # ``/usr/src/app`` with a system Python would count as a library and its
  # configuration objects would go unread.
  paths = sysconfig.get_paths()
  folders = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
  return tuple(os.path.join(os.path.realpath(f), "") for f in folders)


def _is_library_module(module: Any) -> bool:
  """Whether ``module`` is part of Python or an installed package (code, not configuration)."""
  if not isinstance(module, types.ModuleType):
    return False
  if module.__name__ in sys.builtin_module_names:
    return True
  file = getattr(module, "__file__", None)
  return isinstance(file, str) and _real_path(file).startswith(_library_paths())


@functools.lru_cache(maxsize=4096)
def _real_path(file: str) -> str:
  return os.path.realpath(file)


def _is_library_class(cls: type) -> bool:
  return _is_library_module(sys.modules.get(getattr(cls, "__module__", ""), None))


def _is_code(value: Any) -> bool:
  """A value that a class or module holds as code, not as a setting: named, not read."""
  return callable(value) or isinstance(
    value, types.ModuleType | type | staticmethod | classmethod | property
  )


class _Walker:
  """One walk (see the module docstring); carries its options and the node budget."""

  def __init__(
    self, portable: bool, deep: bool = True, values: bool = False, bytecode: bool = False
  ):
    self.portable, self.deep, self.values, self.bytecode = portable, deep, values, bytecode
    self.nodes = 0

  def walk(self, obj: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """A hashable structure equal for objects that behave alike."""
    portable, deep = self.portable, self.deep
    if depth > _MAX_DEPTH or id(obj) in seen:
      return ("cycle", type(obj).__qualname__) if portable else _Identity(obj)
    if obj is None or isinstance(obj, bool | str | bytes):
      return (type(obj).__name__, obj)
    if isinstance(obj, numbers.Number) and not isinstance(obj, np.ndarray | jax.Array):
      return (type(obj).__name__, repr(obj))  # repr: 0.0 and -0.0, nan, int vs float stay distinct
    if self.values:
      self.nodes += 1
      if self.nodes > _MAX_NODES:
        return ("truncated", type(obj).__qualname__) if portable else _Identity(obj)
    inner = seen | {id(obj)}

    def walk(value: Any) -> Any:
      return self.walk(value, depth + 1, inner)

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
      if a.dtype.kind == "O":  # its bytes are pointers: different in every process
        return ("array", "object", a.shape, walk(a.tolist()))
      data = hashlib.sha256(a.tobytes()).hexdigest()
      return ("array", str(a.dtype), a.shape, data)
    if isinstance(obj, types.FunctionType):
      names = _global_names(obj.__code__)
      if self.values:
        cells = tuple(
          self.read(c.cell_contents, names, depth + 1, inner)
          for c in obj.__closure__ or ()
          if _filled(c)
        )
      else:
        cells = tuple(walk(c.cell_contents) for c in obj.__closure__ or () if _filled(c))
      globals_ = obj.__module__ if portable else _Identity(obj.__globals__)
      kwdefaults = sorted((obj.__kwdefaults__ or {}).items())
      if not deep:
        name = f"{obj.__module__}.{obj.__qualname__}"
        return ("function", name, globals_, walk(obj.__defaults__ or ()), walk(kwdefaults), cells)
      code: Any = _portable_code(obj, self.bytecode) if portable else obj.__code__
      # The values of the module-level names it reads: `lambda o, t: w * mse(o, t)` with
      # another `w` is another function, though its code, cells and globals dict are the same.
      read = tuple(
        (name, self.read(obj.__globals__[name], names, depth + 1, inner))
        if self.values
        else (name, walk(obj.__globals__[name]))
        for name in sorted(names)
        if name in obj.__globals__
      )
      return (
        "function",
        code,
        globals_,
        walk(obj.__defaults__ or ()),
        walk(kwdefaults),
        cells,
        read,
      )
    if isinstance(obj, functools.partial):
      return ("partial", walk(obj.func), walk(obj.args), walk(sorted(obj.keywords.items())))
    if isinstance(obj, types.MethodType):
      if self.values and isinstance(obj.__func__, types.FunctionType):
        names = _global_names(obj.__func__.__code__)
        attrs = self.attributes(obj.__self__, names, depth + 1, inner)
        return ("method", walk(obj.__func__), walk(obj.__self__), attrs)
      return ("method", walk(obj.__func__), walk(obj.__self__))
    if isinstance(obj, tuple | list):
      return (type(obj).__qualname__, tuple(walk(v) for v in obj))
    if portable and isinstance(obj, set | frozenset):  # its order follows string hashing
      return (type(obj).__qualname__, tuple(sorted((walk(v) for v in obj), key=repr)))
    if portable and isinstance(obj, Mapping) and not isinstance(obj, dict):
      # A FrozenDict: no state to walk, its items are it. Hashable ones only: a mutable
      # library mapping may be process state (``os.environ``), not a setting.
      if _is_library_class(type(obj)) and type(obj).__hash__ is not None:
        inner_items = tuple(sorted(((walk(k), walk(v)) for k, v in obj.items()), key=repr))
        return ("mapping", type(obj).__module__, type(obj).__qualname__, inner_items)
    if isinstance(obj, dict):
      try:
        items = sorted(obj.items())
      except TypeError:  # keys that do not compare (types, mixed kinds)
        pairs = [(walk(k), walk(v)) for k, v in obj.items()]
        if portable:  # insertion order follows import order in the library's dicts of types
          pairs.sort(key=repr)  # keys that walk alike (two local classes K) ordered by value
        return ("dict", tuple(pairs))
      return ("dict", tuple((walk(k), walk(v)) for k, v in items))
    if isinstance(obj, type | types.ModuleType | types.BuiltinFunctionType):
      return ("named", getattr(obj, "__module__", ""), getattr(obj, "__qualname__", obj.__name__))
    if self.values:
      return self.plain(obj, depth, inner)
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

  def read(self, value: Any, names: set[str], depth: int, seen: frozenset[int]) -> Any:
    """``value`` (a global or closure value of a function) with the attributes it reads of it."""
    walked = self.walk(value, depth, seen)
    attrs = self.attributes(value, names, depth, seen)
    return ("read", walked, attrs) if attrs else walked

  def attributes(self, value: Any, names: set[str], depth: int, seen: frozenset[int]) -> tuple:
    """The data attributes named in ``names`` that ``value`` holds (an object, class, module)."""
    if id(value) in seen or depth > _MAX_DEPTH:
      return ()
    if isinstance(value, types.ModuleType):
      if _is_library_module(value):
        return ()
    elif isinstance(value, type):
      if _is_library_class(value):
        return ()
    elif not _is_plain(value) or _is_library_class(type(value)):
      return ()
    inner = seen | {id(value)}
    out = []
    for name in sorted(names):
      try:
        attr = inspect.getattr_static(value, name)
      except AttributeError:
        continue
      if _is_code(attr):
        continue
      out.append((name, self.read(attr, names, depth + 1, inner)))
    return tuple(out)

  def plain(self, obj: Any, depth: int, seen: frozenset[int]) -> Any:
    """A plain object: its identity (or its own equality) and its state, walked."""
    cls = type(obj)
    if isinstance(obj, enum.Enum):
      return ("enum", cls.__module__, cls.__qualname__, obj.name)
    state = _state(obj, self.portable)
    call: Any = ()
    callable_ = inspect.getattr_static(cls, "__call__", None)
    if isinstance(callable_, types.FunctionType) and not _is_library_class(cls):
      names = _global_names(callable_.__code__)
      attrs = self.attributes(obj, names, depth, seen - {id(obj)})
      call = (self.walk(callable_, depth + 1, seen), attrs) if self.portable else attrs
    walked = None  # the items walked one by one: a fresh dict at the depth bound is no identity
    if state is not None:
      walked = tuple((k, self.walk(v, depth + 1, seen)) for k, v in sorted(state.items()))
    if self.portable:
      return ("object", cls.__module__, cls.__qualname__, walked, call)
    try:
      hash(obj)
      base: Any = ("hashable", cls, obj)
    except TypeError:
      params = getattr(cls, "__dataclass_params__", None)
      if walked is not None and params is not None and params.eq:
        base = ("dataclass", cls)  # compared by its fields, as its own __eq__ does
      else:
        base = _Identity(obj)
    return ("plain", base, walked, call)


def _is_plain(obj: Any) -> bool:
  """An instance of a class (not a function, class, module or a value the walk knows)."""
  return (
    not isinstance(
      obj,
      type
      | types.ModuleType
      | types.FunctionType
      | types.BuiltinFunctionType
      | types.MethodType
      | functools.partial
      | numbers.Number
      | str
      | bytes
      | tuple
      | list
      | dict
      | np.ndarray
      | np.generic
      | jax.Array,
    )
    and obj is not None
  )


def _state(obj: Any, portable: bool) -> dict[str, Any] | None:
  """A plain object's state: dataclass fields, else ``vars`` and ``__slots__``; ``None`` if too big.

  Instances of library classes other than dataclasses are compared by their
  identity or their own equality in a process (``None``), and portably, if
  callable, by ``vars`` (a ``jax.custom_jvp`` activation by its function).
  """
  if dataclasses.is_dataclass(obj):
    state = {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
  elif _is_library_class(type(obj)):
    if not (portable and callable(obj) and hasattr(obj, "__dict__")):
      return None
    state = dict(vars(obj))
  else:
    state = {}
    try:
      state.update(vars(obj))
    except TypeError:  # no __dict__
      pass
    for cls in type(obj).__mro__:
      slots = cls.__dict__.get("__slots__", ())
      for name in (slots,) if isinstance(slots, str) else slots:
        if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
          state[name] = getattr(obj, name)
  if len(state) > _MAX_FIELDS:
    return None
  return {str(k): v for k, v in state.items()}


def _walk(obj: Any, depth: int, seen: frozenset[int], portable: bool, deep: bool = True) -> Any:
  """The walk of checkpoints written before attribute reads were walked (``values=False``).

  ``deep=False`` is the portable walk of checkpoints written before functions were
  read by their constants and the globals they read (kept so that those still resume).
  """
  return _Walker(portable, deep).walk(obj, depth, seen)


def _global_names(code: types.CodeType) -> set[str]:
  """The names ``code`` (and the functions defined in it) may read from its module."""
  names = set(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      names |= _global_names(const)
  return names


def _portable_code(fn: types.FunctionType, bytecode: bool = False) -> tuple:
  """A function's code without its bytecode (which changes between Python versions).

  Its qualified name, the constants it holds (its docstring left out) and the
  names it reads, recursively through the functions defined in it; with
  ``bytecode``, also a hash of each code object's bytecode (``s / 2`` and
  ``s // 2`` differ only there), valid within one Python version.
  """

  def const(c: Any) -> Any:
    if isinstance(c, types.CodeType):
      return code(c, None)
    if isinstance(c, frozenset):  # a set's order follows string hashing, which varies
      return ("frozenset", tuple(sorted(map(repr, c))))
    return repr(c)

  def code(co: types.CodeType, doc: str | None) -> tuple:
    parts: tuple = (
      tuple(const(c) for c in co.co_consts if doc is None or c is not doc),
      co.co_names,
    )
    if bytecode:
      parts += (hashlib.sha256(co.co_code).hexdigest()[:16],)
    return parts

  return (f"{fn.__module__}.{fn.__qualname__}", code(fn.__code__, fn.__doc__))


def _filled(cell: Any) -> bool:
  try:
    cell.cell_contents  # noqa: B018
  except ValueError:  # an empty cell (a variable assigned after the closure was made)
    return False
  return True


def fingerprint(obj: Any) -> Any:
  """A hashable value equal for two objects that compute the same thing (in this process)."""
  return _Walker(portable=False, values=True).walk(obj)


def digest(obj: Any, *, deep: bool = False, values: bool = False, bytecode: bool = False) -> str:
  """A short portable fingerprint (hex) of ``obj``'s settings, stable across processes.

  ``deep=False`` names functions and objects by their qualified names (what
  checkpoints have always held); ``deep=True`` also reads functions' constants
  and the names and global values they read, and callable objects' attributes,
  so that ``optax.adam(lambda step: 1e-2)`` and ``optax.adam(lambda step: 10.0)``
  differ. ``values=True`` (implies ``deep``) also reads the attributes that
  functions read of the objects, classes and modules they reach and the state
  of plain objects (``lambda s: hp.lr`` with another ``hp``), ``bytecode=True``
  each function's bytecode (comparable within one Python version only).
  Checkpoints hold all of them.
  """
  if values or bytecode:
    walker = _Walker(portable=True, deep=True, values=True, bytecode=bytecode)
  else:
    walker = _Walker(portable=True, deep=deep)
  return hashlib.sha256(repr(walker.walk(obj)).encode()).hexdigest()[:16]


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
LATER_KEYS = (
  "optimizer_deep",
  "loss_deep",
  "model_callables",
  "run_keys",
  "optimizer_values",
  "loss_values",
  "model_values",
  "python_code",
)
PYTHON = "{}.{}".format(*sys.version_info[:2])


def without_later_keys(found: Any, expected: dict[str, Any]) -> dict[str, Any]:
  """``expected`` less what the checkpoint's ``found`` cannot be compared on.

  The :data:`LATER_KEYS` that ``found`` lacks, and ``python_code`` when ``found``'s
  was recorded under another Python version (bytecode differs between versions).
  """
  if not isinstance(found, dict):
    return expected
  kept = {k: v for k, v in expected.items() if k in found or k not in LATER_KEYS}
  was, now = found.get("python_code"), kept.get("python_code")
  if isinstance(was, dict) and isinstance(now, dict) and was.get("python") != now.get("python"):
    kept["python_code"] = was  # another Python's bytecode: not compared
  return kept


def model_fields(model: Any) -> dict[str, Any]:
  """A dataclass model's fields but ``parent`` and ``name`` (its settings)."""
  if not dataclasses.is_dataclass(model):
    return {}
  return {
    f.name: getattr(model, f.name, None)
    for f in dataclasses.fields(model)
    if f.name not in ("parent", "name")
  }


def model_entries(model: Any) -> dict[str, str]:
  """A model's fingerprint entries: its repr (memory addresses left out) and its callables.

  ``repr`` shows a function field as ``<function f at 0x7f...>``: the address differs in
  every process, and two lambdas print alike. ``model_callables`` digests those fields
  deeply (code constants, the globals they read).
  """
  text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model))
  fields = {k: v for k, v in model_fields(model).items() if callable(v) and not isinstance(v, type)}
  return {"model": text, "model_callables": digest(fields, deep=True)}


def value_entries(optimizer: Any, loss: Any, model: Any) -> dict[str, Any]:
  """The fingerprint entries that read values and bytecode (see :func:`digest`).

  ``optimizer_values``, ``loss_values`` (``None`` for a named loss) and
  ``model_values`` read the attributes functions read and plain objects' state;
  ``python_code`` holds the bytecode digest of all three with the Python version
  it was computed under (compared only under the same version).
  """
  named = isinstance(loss, str)
  fields = model_fields(model)
  return {
    "optimizer_values": digest(optimizer, values=True),
    "loss_values": None if named else digest(loss, values=True),
    "model_values": digest(fields, values=True),
    "python_code": {
      "python": PYTHON,
      "digest": digest((optimizer, None if named else loss, fields), bytecode=True),
    },
  }
