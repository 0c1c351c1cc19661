"""``jaxuq bench``'s options, checked as they are parsed, and the grids of cases.

Every numeric option must be positive; argparse refuses anything else with a
message naming the option (``argument --masks: must be a comma list of
positive ints, got '0'``) before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib

HELP = "benchmark mc_sample against sequential sampling and PyTorch/Keras loops"
MODEL_NAMES = ("mlp", "mlp-last", "cnn")

# Settings of a run before its grid and options: a grid is models x batches
# x masks, or a list of cases ``(model, batch, masks)``.
DEFAULTS: dict = {
  "models": MODEL_NAMES,
  "batches": (256, 5000),
  "masks": (10, 100, 1000),
  "cases": None,
  "width": 1024,
  "variants": None,
  "repeats": 3,
  "budget": 20.0,
  "loop_cap": None,
  "in_process": False,
}

GRIDS: dict[str, dict] = {
  "full": {},
  # CI: a small grid in one process (checks the samples, not the speed).
  # The eager loop and fixed chunks are left out: the first is slow, both are
  # checked by the tests of jaxuq.sampling.
  "quick": {
    "batches": (64,),
    "masks": (10,),
    "width": 128,
    "in_process": True,
    "variants": "sequential,loop_flax_default,mc_auto,mc_shared,closed_form,apply_flax,"
    "apply_jaxuq,torch_loop,torch_loop_tf32,torch_repeat,torch_repeat_tf32,keras_loop",
  },
  # The cases of issue 13 on one GPU, first calls included; in one process
  # (worker start-ups would cost more than the runs), loops capped.
  "gpu": {
    "cases": (
      ("mlp", 256, 100),
      ("mlp", 256, 1000),
      ("mlp", 5000, 100),
      ("mlp", 5000, 1000),
      ("mlp-last", 256, 100),
      ("cnn", 1000, 100),
    ),  # in this order: a time limit cuts the last ones
    "loop_cap": 100,
    "budget": 5.0,
    "in_process": True,
    "variants": (
      "sequential,loop_flax_default,mc_auto,closed_form,apply_flax,apply_jaxuq,"
      "torch_loop,torch_loop_tf32,torch_repeat,torch_repeat_tf32,keras_loop"
    ),
  },
  # The GPU grid's shape at toy sizes: the GPU script end to end on a CPU (CI).
  "tiny": {
    "cases": (("mlp", 8, 4),),
    "width": 16,
    "repeats": 2,
    "in_process": True,
    "variants": "sequential,mc_auto,apply_flax,apply_jaxuq,torch_loop,torch_repeat_tf32",
  },
}


def _positive(kind: type, value: str) -> int | float:
  try:
    number = kind(value)
  except ValueError:
    number = 0
  if not 0 < number < math.inf:
    raise argparse.ArgumentTypeError(f"must be a finite positive {kind.__name__}, got {value!r}")
  return number


def positive_int(value: str) -> int:
  """argparse type: an int > 0 (argparse names the option in its message)."""
  return int(_positive(int, value))


def positive_float(value: str) -> float:
  """argparse type: a float > 0."""
  return float(_positive(float, value))


def positive_int_list(value: str) -> tuple[int, ...]:
  """argparse type: a comma list of ints > 0, e.g. ``10,100,1000``."""
  try:
    return tuple(positive_int(v) for v in value.split(","))
  except argparse.ArgumentTypeError:
    raise argparse.ArgumentTypeError(
      f"must be a comma list of positive ints, got {value!r}"
    ) from None


def model_list(value: str) -> tuple[str, ...]:
  """argparse type: a comma list of ``MODEL_NAMES``."""
  models = tuple(value.split(","))
  bad = [m for m in models if m not in MODEL_NAMES]
  if bad:
    raise argparse.ArgumentTypeError(
      f"unknown model(s) {', '.join(map(repr, bad))}: choose from {', '.join(MODEL_NAMES)}"
    )
  return models


def variant_list(text: str) -> str:
  """``--variants``: comma-separated variant names, each one some case can run."""
  from jaxuq.experiments.bench.cases import Case, variant_names  # noqa: PLC0415
  from jaxuq.experiments.bench.peers import PEERS  # noqa: PLC0415

  # every variant some case runs: a CNN case (closed form) with T > 100 on two devices
  known = (*variant_names(Case("cnn", 1, 1000), num_devices=2), *PEERS)
  names = [v.strip() for v in text.split(",") if v.strip()]
  bad = [v for v in names if v not in known]
  if not names or bad:
    raise argparse.ArgumentTypeError(
      f"unknown variant(s) {', '.join(map(repr, bad)) or '(none given)'}: choose from "
      f"{', '.join(known)}"
    )
  return ",".join(names)


def check_conflicts(args: argparse.Namespace) -> None:
  """Refuses options that contradict each other (one would be silently ignored)."""
  if args.quick and args.grid not in (None, "quick"):
    raise SystemExit(
      f"jaxuq bench: error: --quick is --grid quick; it cannot go with --grid {args.grid}"
    )
  if args.in_process and args.isolate:
    raise SystemExit("jaxuq bench: error: --in-process and --isolate contradict each other")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--grid",
    choices=tuple(GRIDS),
    help="full (default), quick (CI, in this process, about a minute on 2 CPU cores), gpu (the "
    "cases of issue 13 on one GPU, loops capped at 100 masks) or tiny (the GPU script's CI run)",
  )
  parser.add_argument("--quick", action="store_true", help="the same as --grid quick")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/bench"))
  parser.add_argument("--models", type=model_list, help="comma list of mlp, mlp-last, cnn")
  parser.add_argument(
    "--batches", type=positive_int_list, help="comma list of batch sizes (default 256,5000)"
  )
  parser.add_argument(
    "--masks", type=positive_int_list, help="comma list of mask counts T (default 10,100,1000)"
  )
  parser.add_argument("--width", type=positive_int, help="MLP hidden width (default 1024)")
  parser.add_argument("--variants", type=variant_list, help="comma list restricting the variants")
  parser.add_argument("--repeats", type=positive_int, help="timed repeats (default 3)")
  parser.add_argument(
    "--budget", type=positive_float, help="seconds of repeats per variant (default 20)"
  )
  parser.add_argument("--no-peers", action="store_true", help="skip PyTorch and Keras")
  parser.add_argument(
    "--in-process",
    action="store_true",
    help="run variants in this process (first calls after jax.clear_caches(); no peak memory)",
  )
  parser.add_argument(
    "--isolate",
    action="store_true",
    help="each variant in a fresh process of its own (the full grid's default)",
  )
  parser.add_argument(
    "--loop-cap",
    type=positive_int,
    help="loops (sequential, Flax, PyTorch, Keras) run at most this many masks; time scaled to T",
  )
  parser.add_argument(
    "--time-limit",
    type=positive_float,
    help="seconds since the run started (floors and HLO sizes included): start no new case "
    "after this long (what ran is written)",
  )
  parser.add_argument(
    "--compilation-cache",
    action="store_true",
    help="keep JAX's persistent compilation cache on (off by default: first calls compile)",
  )
  parser.add_argument(
    "--render", action="store_true", help="only rewrite --out's bench.md and plot from bench.json"
  )
  parser.add_argument(
    "--append",
    action="store_true",
    help="merge the rows into --out's bench.json (same case and variant replaced)",
  )
  parser.add_argument("--worker", help=argparse.SUPPRESS)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a bench run does: its grid, cases and settings (defaults < grid < options)."""

  grid: str
  cases: tuple  # of cases.Case
  variants: tuple[str, ...] | None  # None: every variant of each case
  repeats: int
  budget: float
  loop_cap: int | None
  isolate: bool  # each variant in a worker process of its own

  def summary(self) -> dict:
    return {**dataclasses.asdict(self), "cases": [c.name for c in self.cases]}


def plan(args: argparse.Namespace) -> Plan:
  """The cases and settings of a run: the grid's, overridden by the options given."""
  from jaxuq.experiments.bench.cases import Case  # noqa: PLC0415

  check_conflicts(args)
  name = args.grid or ("quick" if args.quick else "full")
  s = {**DEFAULTS, **GRIDS[name]}
  given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) not in (None, False)}
  if given.keys() & {"models", "batches", "masks"}:
    s["cases"] = None  # a grid of the options instead of the preset's cases
  s.update(given)
  cases = s["cases"] or [(m, b, t) for m in s["models"] for b in s["batches"] for t in s["masks"]]
  variants = s["variants"]
  return Plan(
    grid=name,
    cases=tuple(Case(m, b, t, width=s["width"]) for m, b, t in cases),
    variants=None if variants is None else tuple(variants.split(",")),
    repeats=s["repeats"],
    budget=s["budget"],
    loop_cap=s["loop_cap"],
    isolate=not s["in_process"] or args.isolate,
  )
