"""JAX's persistent compilation cache for the ``jaxuq`` command.

Compilation, not arithmetic, dominates short experiments on a GPU (issue 13:
each setting of ``jaxuq regression --sweep`` compiled for ~10 s and then
trained for ~1 s). JAX can keep compiled programs on disk; the command turns
that on in a user cache folder so that a second run of an experiment loads
every program instead of compiling it. The library itself never touches
global configuration: only the command line does, through this module.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax

ENV_DIR = "JAXUQ_CACHE_DIR"
ENV_OFF = "JAXUQ_NO_COMPILE_CACHE"


def default_cache_dir() -> pathlib.Path:
  """``$JAXUQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxuq/jax``, else ``~/.cache/jaxuq/jax``."""
  explicit = os.environ.get(ENV_DIR)
  if explicit:
    return pathlib.Path(explicit)
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "jaxuq" / "jax"


def cache_disabled_by_env() -> bool:
  """True when ``$JAXUQ_NO_COMPILE_CACHE`` is set to anything but ``''`` or ``'0'``."""
  return os.environ.get(ENV_OFF, "") not in ("", "0")


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path:
  """Turns on JAX's persistent compilation cache in ``path`` (default: jaxuq's cache folder).

  Every compiled program is kept, however quick its compilation (JAX's
  defaults skip programs compiled in under a second, which on a 2-core CPU
  are most of an experiment's programs).

  Args:
    path: the cache folder; created if missing. Default ``$JAXUQ_CACHE_DIR``,
      else ``$XDG_CACHE_HOME/jaxuq/jax``, else ``~/.cache/jaxuq/jax``.

  Returns:
    The folder in use.

  Raises:
    ValueError: ``path`` exists and is not a folder.
  """
  folder = pathlib.Path(path) if path is not None else default_cache_dir()
  if folder.exists() and not folder.is_dir():
    raise ValueError(
      f"the compilation cache folder {str(folder)!r} exists and is not a folder; "
      f"set ${ENV_DIR} to a folder, or pass --no-compile-cache"
    )
  folder.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  _decide_again()
  return folder


# The settings that decide whether and where compiled programs are kept.
SETTINGS = (
  "jax_enable_compilation_cache",
  "jax_compilation_cache_dir",
  "jax_persistent_cache_min_compile_time_secs",
  "jax_persistent_cache_min_entry_size_bytes",
)


def cache_settings() -> dict[str, Any]:
  """This process's persistent-cache settings, to give back to :func:`apply_cache_settings`."""
  return {name: jax.config.values[name] for name in SETTINGS}


def apply_cache_settings(settings: dict[str, Any]) -> None:
  """Sets the persistent-cache settings and makes JAX decide again at its next compilation.

  JAX decides once per process, at its first compilation, whether it uses the
  cache (``jax._src.compilation_cache.is_cache_used`` keeps the answer), so
  switching the setting after any compilation changed nothing: a bench that
  turned the cache off after an import had compiled a key still read every
  first call from a folder named in ``$JAX_COMPILATION_CACHE_DIR``.
  """
  for name, value in settings.items():
    jax.config.update(name, value)
  _decide_again()


def _decide_again() -> None:
  """Forgets JAX's once-per-process decision to use the cache (JAX internals: here only)."""
  from jax._src import compilation_cache  # noqa: PLC0415

  compilation_cache.reset_cache()


def disable_compilation_cache() -> dict[str, Any]:
  """Turns the persistent cache off (no folder either) from now on; returns the old settings."""
  old = cache_settings()
  apply_cache_settings(
    old | {"jax_enable_compilation_cache": False, "jax_compilation_cache_dir": None}
  )
  return old
