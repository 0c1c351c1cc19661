"""glibc's malloc on transparent huge pages, for XLA's CPU backend.

XLA's CPU runtime and the Eigen kernels it calls allocate their large
temporaries (a convolution's gradient, a training step's activations) afresh
at every execution, from worker threads. glibc serves a large block from
``mmap`` and returns it with ``munmap`` when freed, so every step touches
brand-new memory and the kernel faults it in 4 KiB page by page: on the 2-core
machine of ``docs/benchmarks.md`` nearly half of a CNN training step's CPU time
was the kernel handling page faults. With the glibc tunable
``glibc.malloc.hugetlb=1`` (glibc 2.35 and newer) malloc asks for transparent
huge pages (``madvise(MADV_HUGEPAGE)``): a 2 MiB page per fault instead of
4 KiB (measured there: ~60x fewer faults per step, the step 1.9x faster). The
arithmetic is unchanged, bit for bit.

A tunable is read once, when the process starts, so a running Python cannot
turn it on for itself: the ``jaxuq`` command re-runs itself with it set
(:func:`rerun_with_huge_pages`). In your own scripts, set it in the shell:
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT_ENV = "JAXUQ_NO_HUGE_PAGES"
OPT_OUT_FLAG = "--no-huge-pages"


def is_glibc() -> bool:
  """Whether this Python runs on glibc (Linux's usual C library; not musl, macOS or Windows)."""
  return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def opted_out(environ: Mapping[str, str], argv: Sequence[str]) -> bool:
  """Whether ``argv`` has ``--no-huge-pages`` or ``$JAXUQ_NO_HUGE_PAGES`` is set (not ``0``)."""
  return environ.get(OPT_OUT_ENV, "") not in ("", "0") or OPT_OUT_FLAG in argv


def huge_pages_environ(
  environ: Mapping[str, str], argv: Sequence[str], glibc: bool
) -> dict[str, str] | None:
  """The environment to re-run a command in with huge pages, or ``None`` to run it as it is.

  ``None`` when the C library is not glibc, when the user opted out, or when
  ``GLIBC_TUNABLES`` already sets ``glibc.malloc.hugetlb`` (to any value: the
  user's choice stands, and a re-run command does not re-run again). Other
  tunables already set are kept.
  """
  if not glibc or opted_out(environ, argv):
    return None
  current = environ.get("GLIBC_TUNABLES", "")
  if any(part.split("=")[0] == "glibc.malloc.hugetlb" for part in current.split(":")):
    return None
  return {**environ, "GLIBC_TUNABLES": f"{current}:{TUNABLE}" if current else TUNABLE}


def rerun_with_huge_pages(argv: Sequence[str]) -> None:
  """Replaces this process by the same command with ``glibc.malloc.hugetlb=1``, if it applies.

  Call it first thing in a program's entry point, before anything is printed
  or started: the command line is ``sys.orig_argv`` (the interpreter's own
  options included) and the process is replaced by ``os.execve``. Returns
  without doing anything where :func:`huge_pages_environ` says so, where the
  interpreter's path or command line is unknown, or where the exec fails;
  ``argv`` (the program's arguments) is read only for ``--no-huge-pages``.
  """
  env = huge_pages_environ(os.environ, argv, is_glibc())
  if env is None or not sys.executable or not sys.orig_argv:  # embedded Pythons have neither
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, env)
  except OSError:  # e.g. the interpreter is gone or cannot be run again: carry on without
    return
