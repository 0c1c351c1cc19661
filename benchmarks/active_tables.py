"""Tables and figure of an active-learning grid run in parts, read from its checkpoints.

``jaxuq active`` writes its own table and figure for the functions of one
call. A grid finished in time-boxed parts, or split over output folders
(``--functions bald,random --out A``, ``--functions variation_ratios,... --out
B``), is read back here from every run's checkpoint (with
``jaxuq.active.checkpoint_history``, nothing recomputed): each function's test
error per round and repeat, its rounds run so far, the images it needed to
reach each test error, and one figure of every function, each curve as far as
all its repeats went.

    python benchmarks/active_tables.py --grid out/active_cpu:bald,random \\
      --grid out/active_cpu_more:variation_ratios,max_entropy,mean_std \\
      --json benchmarks/results/active/mnist_cpu_grid.json \\
      --figure docs/guide/img/active_mnist_five.png

A folder's checkpoints are ``checkpoints/active.msgpack.runN`` (runs one by
one, run ``N = f * repeats + r`` for the f-th function of that call) or one
``checkpoints/active.msgpack`` (side by side, the same order; with BatchBALD
beside other functions, ``.group1`` holds its runs and ``.group0`` the
others', each in the order of the call). Runs of a
repeat must share their seed set and key across folders (common random
numbers), else the script stops. ``--json`` keeps every round each run reached
(``--rounds`` cuts the tables and the figure only), from which
``benchmarks/active_rebuild.py`` continues the grid in a checkout without its
checkpoints.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from jaxuq import plot
from jaxuq.active import checkpoint_history
from jaxuq.experiments._active_report import LABELS, PAPER_TABLE, images_to_reach

PAPER = PAPER_TABLE  # Gal, Islam & Ghahramani (2017), Table 1: images to 10 % and 5 % error
THRESHOLDS = (0.20, 0.15, 0.12, 0.10, 0.05)


def _group_selects(ckpt: pathlib.Path, g: int) -> list[str]:
  """The functions of a side-by-side group file ``<ckpt>.group<g>``, in order (none if absent)."""
  meta = pathlib.Path(f"{ckpt}.group{g}.json")
  return json.loads(meta.read_text())["fingerprint"]["selects"] if meta.exists() else []


def read_grid(folder: pathlib.Path, entries: list[str], repeats: int) -> list[dict]:
  """Every run of one folder: function, repeat, its history and its fingerprint's seed set and key.

  ``entries`` are the folder's ``--functions`` in order, each ``name`` or
  ``name=label`` (a label tells apart runs of one function from two folders,
  e.g. ``bald=BALD (ensemble)``); a run's ``function`` is its label.
  """
  names = [e.partition("=")[0] for e in entries]
  functions = [e.partition("=")[2] or e for e in entries]
  ckpt = folder / "checkpoints" / "active.msgpack"
  # side by side with BatchBALD: its functions in .group1, the others in .group0; each group
  # file's fingerprint lists its functions (by name, or an Acquisition's label), in order
  groups = [_group_selects(ckpt, g) for g in (0, 1)]
  runs = []
  for i in range(len(functions) * repeats):
    f, r = divmod(i, repeats)
    # side by side: one file, run i its column i; one by one: file runI, one column
    if any(groups):
      g = next((g for g in (0, 1) if names[f] in groups[g]), None)
      if g is None:
        raise SystemExit(f"no group file of {ckpt} holds {names[f]!r} (they hold {groups})")
      path, column, selects = (f"{ckpt}.group{g}", groups[g].index(names[f]) * repeats + r,
                               groups[g])  # fmt: skip
    elif ckpt.exists():
      path, column, selects = ckpt, i, names
    else:
      path, column, selects = f"{ckpt}.run{i}", 0, [names[f]]
    if not pathlib.Path(path).exists():
      raise SystemExit(f"{path} is missing: is {functions} x {repeats} repeats this folder's grid?")
    fp = json.loads(pathlib.Path(f"{path}.json").read_text())["fingerprint"]
    if fp["selects"] != selects:
      raise SystemExit(
        f"{path} holds {fp['selects']}, not {selects}: list --grid's functions in order"
      )
    h = {k: v[:, column] for k, v in checkpoint_history(path).items()}
    runs.append({
      "function": functions[f], "repeat": r, "rounds": int(h["test_error"].shape[0]),
      "test_error": h["test_error"].tolist(), "num_labelled": h["num_labelled"].tolist(),
      "acquired": h["acquired"].tolist(), "seeds": fp["seeds"][column], "key": fp["key"],
    })  # fmt: skip
  return runs


def cut(runs: list[dict], rounds: int) -> list[dict]:
  """Every run's history up to ``rounds`` rounds, so that runs ahead of others compare alike."""
  out = []
  for run in runs:
    n = min(run["rounds"], rounds)
    out.append(run | {"rounds": n, "test_error": run["test_error"][:n],
                      "num_labelled": run["num_labelled"][:n],
                      "acquired": run["acquired"][: max(n - 1, 0)]})  # fmt: skip
  return out


def check_common_numbers(runs: list[dict]) -> None:
  """Stops unless every run of a repeat has the same seed set and key."""
  for r in {run["repeat"] for run in runs}:
    same = {
      (json.dumps(run["seeds"]), json.dumps(run["key"])) for run in runs if run["repeat"] == r
    }
    if len(same) != 1:
      raise SystemExit(f"repeat {r} has different seed sets or keys across the grids")


def error_array(
  runs: list[dict], functions: list[str], repeats: int
) -> tuple[np.ndarray, np.ndarray]:
  """``(rounds, functions, repeats)`` test errors, NaN where a run has not got yet, and the labelled counts."""
  rounds = max(run["rounds"] for run in runs)
  error = np.full((rounds, len(functions), repeats), np.nan)
  labelled = np.full(rounds, -1)
  for run in runs:
    n = run["rounds"]
    error[:n, functions.index(run["function"]), run["repeat"]] = run["test_error"]
    counts, known = np.asarray(run["num_labelled"]), labelled[:n] != -1
    if np.any(counts[known] != labelled[:n][known]):
      raise SystemExit(f"{run['function']} repeat {run['repeat']} labels other counts per round")
    labelled[:n] = run["num_labelled"]
  return error, labelled


def thresholds(acquired: np.ndarray, error: np.ndarray) -> dict[str, str]:
  """Per threshold, the acquired images at which the mean over repeats first reaches it.

  ``error`` is ``(rounds, repeats)``; only rounds every repeat ran count.
  """
  done = ~np.isnan(error).any(axis=1)
  mean, seen = error[done].mean(axis=1), acquired[done]
  reached = {f"{round(100 * t)}%": images_to_reach(seen, mean, t) for t in THRESHOLDS}
  return {k: f"not reached by {int(seen[-1])}" if v is None else str(v) for k, v in reached.items()}


def markdown(functions, error, acquired, columns, table) -> str:
  head = "| acquired images | " + " | ".join(str(c) for c in columns) + " |"
  lines = [head, "|---" * (len(columns) + 1) + "|"]
  for f, name in enumerate(functions):
    cells = []
    for c in columns:
      k = np.flatnonzero(acquired == c)
      e = 100 * error[k[0], f] if k.size else np.full(1, np.nan)
      spread = f" ({e.min():.1f}-{e.max():.1f})" if e.size > 1 else ""
      cells.append("" if np.isnan(e).any() else f"{e.mean():.1f}{spread}")
    lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
  lines += ["", "| function | rounds | " + " | ".join(f"{round(100 * t)} %" for t in THRESHOLDS) + " | paper 10 % / 5 % |",
            "|---" * (len(THRESHOLDS) + 3) + "|"]  # fmt: skip
  for f, name in enumerate(functions):
    reached = table[name]
    rounds = int((~np.isnan(error[:, f]).any(axis=1)).sum())
    paper = PAPER.get(name, ("-", "-"))
    lines.append(
      f"| {LABELS.get(name, name)} | {rounds} | "
      + " | ".join(reached.values())
      + f" | {paper[0]} / {paper[1]} |"
    )
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--grid", action="append", required=True, metavar="DIR:F1,F2,...",
                      help="an output folder of `jaxuq active` and its --functions, in order "
                      "(name=label to tell apart two folders' runs of one function)")  # fmt: skip
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seed-size", type=int, default=20, help="labelled images before acquiring")
  parser.add_argument("--columns", default="0,50,100,150,200,250,300,350,400,450,500")
  parser.add_argument(
    "--rounds", type=int, help="read every run up to this many rounds (default: all it ran)"
  )
  parser.add_argument("--json", type=pathlib.Path)
  parser.add_argument("--figure", type=pathlib.Path)
  parser.add_argument(
    "--what", default="", help="a sentence on how the runs were made, for the JSON"
  )
  args = parser.parse_args()
  runs, functions = [], []
  for spec in args.grid:
    folder, _, names = spec.rpartition(":")
    entries = names.split(",")
    runs += read_grid(pathlib.Path(folder), entries, args.repeats)
    functions += [e.partition("=")[2] or e for e in entries]
  if len(set(functions)) != len(functions):
    raise SystemExit(
      f"functions {functions} repeat a name: label one of them, e.g. bald=BALD-ensemble"
    )
  every = runs  # the JSON keeps every round each run reached: a later job resumes from it
  if args.rounds is not None:
    runs = cut(runs, args.rounds)
  check_common_numbers(runs)
  error, labelled = error_array(runs, functions, args.repeats)
  acquired = labelled - args.seed_size
  columns = [int(c) for c in args.columns.split(",")]
  table = {f: thresholds(acquired, error[:, i]) for i, f in enumerate(functions)}
  print(markdown(functions, error, acquired, columns, table))
  if args.figure is not None:
    names = [LABELS.get(f, f) for f in functions]
    plot.active_learning_curves(acquired, error, names, path=args.figure)
    print(f"wrote {args.figure}")
  if args.json is not None:
    out = {"what": args.what, "grids": args.grid, "repeats": args.repeats,
           "table_rounds": args.rounds, "thresholds": table,
           "runs": [{k: v for k, v in run.items() if k not in ("seeds", "key")} | {"seed_set": run["seeds"]} for run in every]}  # fmt: skip
    args.json.write_text(json.dumps(out, indent=0))
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
