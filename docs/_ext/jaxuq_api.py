"""The API reference of jaxuq, generated from each public module's ``__all__``.

A public module is any ``jaxuq.NAME`` module without a leading underscore, except
the command line (:data:`NOT_API`). Each gets a page ``api/jaxuq.NAME.rst`` with
its docstring and one autosummary entry, hence one page, per name in its
``__all__``; submodules named in ``__all__`` link to their own page. Adding a
public module to the package adds its pages: nothing to list here.

References to the private paths where the objects are defined
(``jaxuq._src.sampling.mc_sample``, as autodoc writes type hints) are resolved to
the public page of the same object (``jaxuq.mc_sample``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import pkgutil
import types
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Sphinx is needed to build the site, not to list the API (tests do).
  from docutils import nodes
  from sphinx.addnodes import pending_xref
  from sphinx.application import Sphinx
  from sphinx.environment import BuildEnvironment

# The command line and its experiments: documented on their pages, not as an API.
NOT_API = {"jaxuq.cli", "jaxuq.experiments", "jaxuq.__main__"}


def public_modules() -> list[str]:
  """``jaxuq`` and every ``jaxuq.NAME`` that is part of the API, sorted."""
  import jaxuq

  names = [
    f"jaxuq.{m.name}"
    for m in pkgutil.iter_modules(jaxuq.__path__)
    if not m.name.startswith("_") and f"jaxuq.{m.name}" not in NOT_API
  ]
  return ["jaxuq", *sorted(names)]


def public_names(module_name: str) -> tuple[list[str], list[str]]:
  """The names of a module's ``__all__``: (objects, submodules)."""
  module = importlib.import_module(module_name)
  if not hasattr(module, "__all__"):
    raise RuntimeError(f"{module_name} is public but has no __all__: add one (the API lists it)")
  objects, submodules = [], []
  for name in module.__all__:
    value = getattr(module, name)
    (submodules if isinstance(value, types.ModuleType) else objects).append(name)
  return objects, submodules


def module_page(module_name: str) -> str:
  objects, submodules = public_names(module_name)
  lines = [module_name, "=" * len(module_name), "", f".. automodule:: {module_name}", ""]
  lines += [f".. currentmodule:: {module_name}", ""]
  if submodules:
    lines += ["Submodules: " + ", ".join(f":mod:`{module_name}.{s}`" for s in submodules), ""]
  lines += [".. autosummary::", "   :toctree: _autosummary", "", *(f"   {n}" for n in objects)]
  return "\n".join(lines) + "\n"


def index_page(modules: list[str]) -> str:
  lines = [
    "API reference",
    "=============",
    "",
    "Every public name of jaxuq, module by module, generated from each module's",
    "``__all__``. Import from these modules, never from ``jaxuq._src``.",
    "",
    ".. toctree::",
    "   :maxdepth: 1",
    "",
    *(f"   {m}" for m in modules),
  ]
  return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
  """Write only a changed page, so that Sphinx does not reread unchanged ones."""
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def write_api_pages(docs_dir: Path) -> list[str]:
  """Write ``api/index.rst`` and one page per public module; returns the modules."""
  api = docs_dir / "api"
  api.mkdir(exist_ok=True)
  modules = public_modules()
  for m in modules:
    _write(api / f"{m}.rst", module_page(m))
  _write(api / "index.rst", index_page(modules))
  for stale in api.glob("jaxuq*.rst"):
    if stale.stem not in modules:
      stale.unlink()
  return modules


@functools.cache
def public_name_map() -> dict[int, str]:
  """id(object) -> its public name (the first public module listing it)."""
  found: dict[int, str] = {}
  for m in public_modules():
    module = importlib.import_module(m)
    for name in module.__all__:
      value = getattr(module, name)
      if not isinstance(value, types.ModuleType):
        found.setdefault(id(value), f"{m}.{name}")
  return found


def _resolve(target: str) -> object | None:
  parts = target.split(".")
  for i in range(len(parts) - 1, 0, -1):
    try:
      obj: object = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    try:
      for attr in parts[i:]:
        obj = getattr(obj, attr)
    except AttributeError:
      return None
    return obj
  return None


def resolve_private(
  app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
  """A reference to ``jaxuq._src.X.name`` resolved to the public page of the same object."""
  target = node.get("reftarget", "")
  if node.get("refdomain") != "py" or not target.startswith("jaxuq._src."):
    return None
  obj = _resolve(target)
  public = public_name_map().get(id(obj)) if obj is not None else None
  if public is None:
    return None
  domain = env.get_domain("py")
  new = node.deepcopy()
  new["reftarget"] = public
  return domain.resolve_xref(
    env, node["refdoc"], app.builder, node["reftype"], public, new, contnode
  )


def skip_fields(
  app: Sphinx, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
  """Leave out a class's data members: its docstring's Attributes section lists them.

  (NamedTuple fields and dataclass defaults would otherwise be described twice.)
  Methods and documented properties stay.
  """
  if what != "class":
    return None
  if isinstance(obj, property):
    return None if (obj.__doc__ or "").strip() and "Alias for field" not in obj.__doc__ else True
  return True if not callable(obj) or type(obj).__name__ == "_tuplegetter" else None


def drop_type_docstring(
  app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
  """A constant (a dict, a str) has no docstring of its own: not its type's either."""
  if what in ("data", "attribute") and not callable(obj):
    own = inspect.getdoc(type(obj)) or ""
    if "\n".join(lines).strip() == own.strip():
      lines[:] = []


class _PrivateAliasFilter(logging.Filter):
  """Drops "duplicate object description of jaxuq._src.X" only.

  autodoc registers each class also under the private path where it is defined
  (its canonical name), so a class listed by two public modules (``TinyNet`` in
  ``jaxuq.exact`` and ``jaxuq.models``) registers that private alias twice. Both
  public names keep their pages; every other duplicate still fails the build.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not (
      msg.startswith("duplicate object description of")
      and record.args
      and str(record.args[0]).startswith("jaxuq._src.")
    )


class _OptionalGlobFilter(logging.Filter):
  """Drops "toctree glob pattern 'P' didn't match" for the globs of ``jaxuq_optional_globs``."""

  def __init__(self, patterns: set[str]) -> None:
    super().__init__()
    self.patterns = patterns

  def filter(self, record: logging.LogRecord) -> bool:
    return not (
      "toctree glob pattern" in str(record.msg)
      and record.args
      and str(record.args[0]) in self.patterns
    )


def _add_glob_filter(app: Sphinx, config: object) -> None:
  patterns = set(app.config.jaxuq_optional_globs)
  logging.getLogger("sphinx.sphinx.directives.other").addFilter(_OptionalGlobFilter(patterns))


def setup(app: Sphinx) -> dict[str, object]:
  app.add_config_value("jaxuq_optional_globs", [], "env")
  app.connect("config-inited", _add_glob_filter)
  logging.getLogger("sphinx.sphinx.domains.python").addFilter(_PrivateAliasFilter())
  app.connect("missing-reference", resolve_private)
  app.connect("autodoc-skip-member", skip_fields)
  app.connect("autodoc-process-docstring", drop_type_docstring)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
