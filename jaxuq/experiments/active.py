"""``jaxuq active``: Gal, Islam & Ghahramani (2017)'s MNIST active-learning experiment.

Reproduces "Deep Bayesian Active Learning with Image Data" (ICML 2017),
Section 5.1, on real MNIST: the 60,000 training images are the pool, the
10,000 test images the test set. Every acquisition function starts from the
same random but balanced seed set of 20 images (2 per class) and the same
initial weights within a repeat, then acquires 10 images per round for 100
rounds, scoring a random subset of 2,000 unlabelled pool images with T = 20
MC dropout passes; the model is retrained from scratch after every
acquisition. On an accelerator all functions and repeats advance side by side
(one ``vmap``-ed program per step); on a CPU one after another, which was 10x
faster for this CNN on the 2-core CPU (``benchmarks/bench_active.py``);
``--runs`` chooses.

The paper's model: conv(32, 4x4)-ReLU-conv(32, 4x4)-ReLU-maxpool(2x2)-
dropout(0.25)-dense(128)-ReLU-dropout(0.5)-dense(10)-softmax.

Choices where the paper is silent (or where we differ), stated:
- training: Adam (learning rate 1e-3), 50 epochs per round, batch size 128
  with a partial last batch (as Keras's ``fit``), Glorot-uniform kernels;
- weight decay: an L2 penalty ``(c / N) ||W||^2`` on every kernel with ``N``
  the labelled-set size and ``c = 3.5``; the paper tunes the weight decay on
  a 100-image validation set, we fix it (no search; it would multiply the
  cost by the grid size), so no validation set is drawn;
- test error: the model with dropout off (``--eval-samples T`` for the MC
  predictive mean instead), on all 10,000 test images after every round;
- the table counts acquired images (the 20 seed images not included) at the
  first round where the test error, averaged over the repeats, is at or
  below 10 % and 5 %;
- keys: repeat ``r`` of every function uses the run key
  ``split(key(seed), repeats)[r]`` and the seed set drawn from
  ``fold_in(key(seed + 1), r)``.

``--ensemble N`` replaces MC dropout by an N-member deep ensemble per run
(Beluch et al. 2018): the members, trained side by side from their own
initialisations every round, give the samples the same acquisition functions
score, and their mean is tested.

``--quick`` uses scikit-learn's digits (1,437 pool, 360 test images, 8x8
upsampled to 28x28), BALD and random, 3 rounds of 10, 10 epochs: a smoke run in CI.

Outputs in ``--out``: ``summary.json`` (settings, data, the history of every
run, the table beside the paper's, wall time), ``active_error.png`` (test
error against acquired images), ``progress.json`` (every round so far of every
run, ``runs`` naming them, with its seconds; rewritten every round, kept across ``--resume``)
and ``checkpoints/`` (``--resume`` continues an interrupted run from its last
finished round).

References:
  Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data",
  ICML 2017, Table 1 and Figure 1.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

from jaxuq.experiments._args import (
  non_negative_float,
  positive_float,
  positive_int,
)
from jaxuq.experiments._args import (
  seed as seed_type,
)

HELP = "active learning on MNIST: BALD, Var Ratios, Max Entropy, Mean STD vs random (Gal 2017)"
PAPER_FUNCTIONS = "bald,variation_ratios,max_entropy,mean_std,random"
FULL = dict(functions=PAPER_FUNCTIONS, repeats=3, acquisitions=100, acquisition_size=10,
            pool_subset=2000, samples=20, epochs=50, batch_size=128)  # fmt: skip
QUICK = dict(functions="bald,random", repeats=1, acquisitions=3, acquisition_size=10,
             pool_subset=200, samples=10, epochs=10, batch_size=32)  # fmt: skip


def function_list(text: str) -> str:
  """``--functions``: comma-separated names of :func:`jaxuq.active.acquisition`, checked."""
  from jaxuq.active import acquisition

  names = [f.strip() for f in text.split(",") if f.strip()]
  if not names:
    raise argparse.ArgumentTypeError("give at least one acquisition function, e.g. bald,random")
  for name in names:
    try:
      acquisition(name)
    except ValueError as e:  # "name must be one of 'bald', ...; got 'foo'"
      raise argparse.ArgumentTypeError(f"unknown acquisition function {name!r}: {e}") from None
  return ",".join(names)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--functions", type=function_list, help=f"comma-separated (default {PAPER_FUNCTIONS})"
  )
  parser.add_argument("--repeats", type=positive_int, help="repeats per function (default 3)")
  parser.add_argument("--acquisitions", type=positive_int, help="rounds (default 100)")
  parser.add_argument("--acquisition-size", type=positive_int, help="images a round (default 10)")
  parser.add_argument("--pool-subset", type=positive_int, help="images scored (default 2000)")
  parser.add_argument("--samples", type=positive_int, help="MC dropout passes T (default 20)")
  parser.add_argument("--epochs", type=positive_int, help="epochs per round (default 50)")
  parser.add_argument("--batch-size", type=positive_int, help="default 128")
  parser.add_argument("--per-class", type=positive_int, default=2, help="seed images per class")
  parser.add_argument(
    "--weight-decay", type=non_negative_float, default=3.5, help="c in c/N (0: no decay)"
  )
  parser.add_argument("--learning-rate", type=positive_float, default=1e-3)
  parser.add_argument("--eval-samples", type=positive_int, help="MC passes at test (default: off)")
  parser.add_argument("--warm-start", action="store_true", help="keep training the last model")
  parser.add_argument(
    "--even-batches",
    action="store_true",
    help="cut each epoch into batches of near-equal size instead of Keras's partial last batch",
  )
  parser.add_argument(
    "--ensemble",
    type=_ensemble_size,
    metavar="N",
    help="an N-member deep ensemble as the acquisition model instead of MC dropout (Beluch 2018)",
  )
  parser.add_argument(
    "--runs",
    choices=("auto", "side-by-side", "one-by-one"),
    default="auto",
    help="advance all runs in one vmapped program, or one run after another; auto: one by one "
    "on a CPU (where a vmapped convolution is slow), side by side on an accelerator",
  )
  parser.add_argument("--seed", type=seed_type, default=0, help="integer seed (default 0)")
  parser.add_argument("--quick", action="store_true", help="smoke run on scikit-learn's digits")
  parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
  parser.add_argument(
    "--stop-after",
    type=positive_int,
    metavar="ROUNDS",
    help="stop every run after this many rounds in all (checkpointed; --resume goes on): "
    "splits the reproduction into time-boxed jobs",
  )
  parser.add_argument("--data-dir", type=pathlib.Path, help="data folder (default: see make data)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/active"))
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _ensemble_size(text: str) -> int:
  members = positive_int(text)
  if members == 1:
    raise argparse.ArgumentTypeError("must be at least 2 members, got 1")
  return members


def requirements(args: argparse.Namespace) -> dict[str, str]:
  """The figure needs matplotlib; ``--quick`` scikit-learn's digits."""
  return {"matplotlib": "experiments"} | ({"sklearn": "experiments"} if args.quick else {})


def settings(args: argparse.Namespace) -> dict[str, Any]:
  """The run's settings: ``--quick`` or the paper's defaults, overridden by the options given."""
  base = QUICK if args.quick else FULL
  s = {k: base[k] if getattr(args, k) is None else getattr(args, k) for k in base}
  s["functions"] = [f.strip() for f in str(s["functions"]).split(",") if f.strip()]
  options = ("per_class", "weight_decay", "learning_rate", "eval_samples", "warm_start", "seed",
             "ensemble", "even_batches")  # fmt: skip
  for k in options:
    s[k] = getattr(args, k)
  s["runs"] = args.runs
  s["quick"] = args.quick
  return s


def _load(args: argparse.Namespace) -> tuple[tuple[Any, ...], dict[str, Any]]:
  from jaxuq import data

  source = "sklearn" if args.quick else "auto"
  train, test = (data.load_dataset("mnist", sp, data_dir=args.data_dir, source=source)
                 for sp in ("train", "test"))  # fmt: skip
  sources = {
    name: {"source": ds.source, "synthetic": ds.synthetic, "size": len(ds.labels)}
    for name, ds in (("pool", train), ("test", test))
  }
  return (train.images, train.labels, test.images, test.labels), sources


def _redone(entry: dict[str, Any], runs: list[int], r: int) -> bool:
  """Whether round ``r`` of ``runs`` replaces an earlier ``progress.json`` entry (one of these
  runs at this round or later; an entry naming no runs is of an older format)."""
  named = entry.get("runs")
  return named is None or (bool(set(named) & set(runs)) and entry["round"] >= r)


def _earlier_rounds(args: argparse.Namespace) -> list[dict[str, Any]]:
  """The rounds an earlier invocation wrote to ``progress.json`` (``--resume``), else none."""
  path = pathlib.Path(args.out) / "progress.json"
  if not args.resume or not path.exists():
    return []
  try:
    rounds = json.loads(path.read_text()).get("rounds", [])
  except (ValueError, AttributeError):  # a file cut short by a kill: its rounds are lost
    return []
  return [p for p in rounds if isinstance(p, dict) and isinstance(p.get("round"), int)]


def run(args: argparse.Namespace) -> int:
  s = settings(args)
  import jax
  import numpy as np

  from jaxuq.active import active_learning_runs, balanced_seed
  from jaxuq.experiments import _active_model as am
  from jaxuq.experiments import _active_report as report

  start = time.perf_counter()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  checkpoint = out / "checkpoints" / "active.msgpack"
  if not args.resume:
    for old in checkpoint.parent.glob("active.msgpack*"):
      old.unlink()
  arrays, sources = _load(args)
  runs = s["runs"]
  if runs == "auto":
    runs = "one-by-one" if jax.devices()[0].platform == "cpu" else "side-by-side"
  seeds = np.stack([
    balanced_seed(jax.random.fold_in(jax.random.key(s["seed"] + 1), r), arrays[1], s["per_class"])
    for r in range(s["repeats"])
  ])  # fmt: skip
  progress: dict[str, Any] = {"settings": s, "data": sources, "rounds": _earlier_rounds(args)}
  last = [time.perf_counter()]

  def on_round(r: int, record: dict[str, np.ndarray]) -> None:
    now = time.perf_counter()
    row = {k: np.asarray(v).tolist() for k, v in record.items()}
    runs = row.pop("run")  # one by one: each run's rounds in turn, so the entry names its runs
    progress["rounds"] = [p for p in progress["rounds"] if not _redone(p, runs, r)]
    progress["rounds"].append({"round": r, "runs": runs, "seconds": round(now - last[0], 2), **row})
    last[0] = now
    tmp = out / ".progress.json.tmp"  # replaced whole: a kill never leaves half a file
    tmp.write_text(json.dumps(progress))
    tmp.replace(out / "progress.json")

  states, history = active_learning_runs(
    jax.random.key(s["seed"]), am.GalCNN(), am.optimizer(s["learning_rate"]), *arrays,
    selects=s["functions"], seed_indices=seeds, acquisitions=s["acquisitions"],
    epochs=s["epochs"], acquisition_size=s["acquisition_size"], pool_subset=s["pool_subset"],
    num_samples=s["samples"], batch_size=s["batch_size"], even_batches=s["even_batches"],
    warm_start=s["warm_start"],
    hyperparams=am.weight_decay(s["weight_decay"]), eval_samples=s["eval_samples"],
    members=s["ensemble"], side_by_side=runs == "side-by-side", checkpoint=checkpoint,
    stop_after=args.stop_after, progress=False if args.no_progress else None, callback=on_round,
  )  # fmt: skip
  del states
  seed_size = seeds.shape[1]
  table = report.table(s["functions"], history, seed_size)
  report.error_figure(s["functions"], history, seed_size, out / "active_error.png")
  summary = {
    "settings": s | {"runs": runs},
    "data": sources,
    "table": table,
    "history": {k: v.tolist() for k, v in history.items()},
    "history_axes": "(round, function, repeat[, image])",
    "wall_seconds_this_invocation": round(time.perf_counter() - start, 1),
  }
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  print(report.format_table(table, history["test_error"].shape[0]))
  print(f"wrote {out / 'summary.json'} and {out / 'active_error.png'}")
  return 0
