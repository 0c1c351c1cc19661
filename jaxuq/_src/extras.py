"""Optional dependencies: which extra provides each, and one eager check that names it."""

from __future__ import annotations

import importlib.util
import sys

# Top-level module -> the smallest extra of pyproject.toml that installs it.
EXTRAS = {
  "matplotlib": "plot",
  "PIL": "plot",
  "fontTools": "plot",
  "sklearn": "experiments",
  "tensorflow_datasets": "data",
}
# Module -> the name to install, where it differs.
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "fontTools": "fonttools",
                 "tensorflow_datasets": "tensorflow-datasets"}  # fmt: skip


class MissingDependencyError(ImportError):
  """An optional dependency is not installed; the message names the extra to install."""


MissingDependencyError.__module__ = "jaxuq"  # public as jaxuq.MissingDependencyError


def is_installed(module: str) -> bool:
  """True if the top-level ``module`` can be imported (checked without importing it)."""
  if module in sys.modules:
    return sys.modules[module] is not None
  return importlib.util.find_spec(module) is not None


def require(module: str, extra: str | None = None, *, who: str = "jaxuq") -> None:
  """Raises unless the top-level ``module`` is installed, naming the extra that installs it.

  Args:
    module: a top-level module name, e.g. ``'matplotlib'``.
    extra: the extra of ``jaxuq`` that installs it; default from :data:`EXTRAS`.
    who: what needs it, for the message (e.g. ``'jaxuq regression'``).

  Raises:
    MissingDependencyError: ``module`` is not installed.

  Examples:
    >>> require("numpy")
    >>> require("no_such_module", "plot", who="jaxuq regression")
    Traceback (most recent call last):
    ...
    jaxuq.MissingDependencyError: jaxuq regression needs no_such_module: pip install 'jaxuq[plot]'
  """
  if is_installed(module):
    return
  extra = extra or EXTRAS.get(module)
  fix = f"pip install 'jaxuq[{extra}]'" if extra else f"pip install {module}"
  raise MissingDependencyError(
    f"{who} needs {DISTRIBUTIONS.get(module, module)}: {fix}", name=module
  )
