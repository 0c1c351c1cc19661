"""Rebuilds a one-by-one active-learning grid's checkpoints from its committed JSON.

A long grid (issue 16's MNIST reproduction: about 11 hours on 2 CPU cores) runs
in time-boxed jobs resumed from checkpoints under ``out/``, which a new checkout
does not have. Its committed JSON (``benchmarks/active_tables.py --json``) keeps
every run's acquired rows in order and its test errors. When every round trains
from scratch (``jaxuq active`` without ``--warm-start``), a run's future depends
only on its labelled set (the seed set, then the acquired rows in order) and its
round number (round ``r`` draws from ``fold_in(rounds_key, r)``): the model in
a checkpoint is replaced at the start of the next round. So a checkpoint with
that labelled set and round continues the run exactly as the original would have.

Usage, for each folder of the grid (the settings of the original ``jaxuq active``
call, whose fingerprint the checkpoints must carry):

    jaxuq active --runs one-by-one --repeats 3 --functions F1,F2 --stop-after 1 \\
      --data-dir data --out OUT          # round-1 checkpoints of every run
    python benchmarks/active_rebuild.py --json benchmarks/results/active/mnist_cpu_grid.json \\
      --out OUT --functions F1,F2 --repeats 3
    jaxuq active ... --resume --stop-after N --out OUT   # goes on from each run's round

Each run is rebuilt at the rounds the JSON holds for it. History entries the
JSON does not keep (``test_nll``, ``train_loss``, ``test_accuracy``) are NaN for
the rebuilt rounds after the first. The round-1 checkpoint is checked against
the JSON first: the same acquired rows in round 0 (a test error differing by at
most 2e-4, one test image, is reported: rounding in code changed since).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from jaxuq._src import checkpoint as ck

ROUND0_ERROR_TOLERANCE = 2e-4  # one image of MNIST's 10,000


def rebuild(path: pathlib.Path, run: dict) -> str:
  """Rewrites the round-1 checkpoint ``path`` of one run at the rounds ``run`` (JSON) holds."""
  raw, meta = ck._read(path)  # noqa: SLF001 - the raw tree, rewritten below
  # Round r starts from the seeds and the acquisitions of rounds 0..r-1: the run is rebuilt
  # at as many rounds as the JSON has acquisitions (a table cut at n rounds keeps n - 1).
  rounds = min(int(run["rounds"]), len(run["acquired"]))
  if meta["round"] == rounds:
    return f"{path}: already at round {rounds}"
  if meta["round"] != 1:
    raise SystemExit(f"{path} holds {meta['round']} rounds: rebuild from a --stop-after 1 run")
  history = meta["history"]
  notes = []
  if history["test_error"][0] != [run["test_error"][0]]:
    gap = abs(history["test_error"][0][0] - run["test_error"][0])
    if gap > ROUND0_ERROR_TOLERANCE:
      raise SystemExit(f"{path}: round 0 test error {history['test_error'][0]} is not the JSON's")
    notes.append(
      f"round 0 test error {history['test_error'][0][0]:.4f} (JSON {run['test_error'][0]:.4f})"
    )
  if sorted(history["acquired"][0][0]) != sorted(run["acquired"][0]):
    raise SystemExit(f"{path}: round 0 acquired other rows than the JSON's: another run?")
  labelled = raw["tree"]["carry"]["labelled"]
  indices, count, mask = (np.array(labelled[k]) for k in ("indices", "count", "mask"))
  seeds = np.asarray(run["seed_set"], np.int32)
  if not np.array_equal(indices[0, : seeds.size], seeds):
    raise SystemExit(f"{path}: its seed set is not the JSON's")
  rows = np.concatenate([seeds, np.asarray(run["acquired"][:rounds], np.int32).reshape(-1)])
  if len(set(rows.tolist())) != rows.size or rows.size > indices.shape[1]:
    raise SystemExit(f"{path}: the JSON's rows repeat or exceed the capacity")
  indices[0] = 0
  indices[0, : rows.size] = rows
  count[0] = rows.size
  mask[0] = False
  mask[0, rows] = True
  labelled.update(indices=indices, count=count, mask=mask)
  kept = {
    "test_error": run["test_error"],
    "num_labelled": run["num_labelled"],
    "acquired": run["acquired"],
  }
  meta = {k: v for k, v in meta.items() if k != "format"}
  meta["history"] = {
    name: [[v] for v in kept[name][:rounds]]
    if name in kept
    else values[:1] + [[float("nan")]] * (rounds - 1)
    for name, values in history.items()
  }
  meta["round"] = rounds
  ck.save_checkpoint(path, raw["tree"], meta)
  return f"{path}: rebuilt at round {rounds}, {rows.size} labelled" + (
    f" ({'; '.join(notes)})" if notes else ""
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", type=pathlib.Path, required=True)
  parser.add_argument("--out", type=pathlib.Path, required=True, help="the jaxuq active --out")
  parser.add_argument("--functions", required=True, help="that call's --functions, in order")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  runs = json.loads(args.json.read_text())["runs"]
  functions = args.functions.split(",")
  for i in range(len(functions) * args.repeats):
    f, r = divmod(i, args.repeats)
    found = [x for x in runs if x["function"] == functions[f] and x["repeat"] == r]
    if len(found) != 1:
      raise SystemExit(f"the JSON holds {len(found)} runs of {functions[f]} repeat {r}")
    print(rebuild(args.out / "checkpoints" / f"active.msgpack.run{i}", found[0]))


if __name__ == "__main__":
  main()
