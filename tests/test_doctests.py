"""Every docstring example of the package runs, module by module.

Each module of ``jaxuq`` is imported (found with ``pkgutil.walk_packages``) and
its examples run with ``doctest`` in the module's namespace plus ``jax``,
``jnp``, ``np`` and ``jaxuq``. A module is skipped only when an optional
dependency it imports is missing, and the skip names it.
"""

import doctest
import importlib
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq

# Optional dependencies (the package's extras); a module importing a missing one is skipped.
OPTIONAL = {"matplotlib", "PIL", "sklearn", "tensorflow_datasets", "torch", "keras", "fontTools"}
# ``python -m jaxuq`` runs the command line on import: nothing to collect there.
NOT_IMPORTABLE = {"jaxuq.__main__": "runs the jaxuq command on import"}
MODULES = sorted(["jaxuq"] + [m.name for m in pkgutil.walk_packages(jaxuq.__path__, "jaxuq.")])


def test_every_module_is_listed():
  assert {"jaxuq._src.sampling", "jaxuq.cli", "jaxuq.plot", "jaxuq._src.data.loaders"} <= set(
    MODULES
  )


def test_the_examples_are_found():
  from jaxuq._src import adapters, sampling

  for module in (sampling, adapters):
    tests = doctest.DocTestFinder().find(module, module.__name__)
    assert sum(len(t.examples) for t in tests) > 0, module.__name__


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
  if name in NOT_IMPORTABLE:
    pytest.skip(NOT_IMPORTABLE[name])
  try:
    module = importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name is None or e.name.split(".")[0] not in OPTIONAL:
      raise
    pytest.skip(f"{name} needs the optional dependency {e.name}")
  globs = {"jax": jax, "jnp": jnp, "np": np, "jaxuq": jaxuq} | vars(module)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for test in doctest.DocTestFinder(exclude_empty=True).find(module, name, globs=globs):
    runner.run(test)
  failed, attempted = runner.summarize(verbose=False)
  assert failed == 0, f"{failed} of {attempted} examples failed in {name} (see the output above)"


def test_every_public_example_is_collected():
  # Each example of a public name lives in a module that the test above runs.
  import inspect
  import sys

  sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent.parent / "docs" / "_ext"))
  import jaxuq_api

  runnable = set(MODULES) - set(NOT_IMPORTABLE)
  escaped, checked = [], 0
  for module_name in jaxuq_api.public_modules():
    module = importlib.import_module(module_name)
    for name in module.__all__:
      obj = getattr(module, name)
      if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        continue  # a constant's docstring is its type's
      if ">>>" in (obj.__doc__ or ""):
        checked += 1
        if obj.__module__ not in runnable:
          escaped.append(f"{module_name}.{name} ({obj.__module__})")
  assert not escaped
  assert checked > 40, checked
