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
  return folder
