"""``jaxuq regression``: the first reference experiment, regression with a gap.

Trains the seed MLP (1 -> 4 x 1024 ReLU, dropout 0.5 after each -> 1) on
``y = sin(2 pi x) - x`` sampled on [-2, -1.5) and [-1, 0.5) (a tenth of the
points held out for evaluation, a tenth of the rest for validation), then
draws ``--samples`` MC dropout networks in one ``jaxuq.mc_sample`` call over
the test grid [-2, 3) and writes into ``--out``:

- ``losses.png``, ``curves.png`` (the sampled curves, training range marked),
  ``scatter.png`` (deterministic vs MC mean), ``band.png`` (mean ± 2 std),
  ``samples.gif`` (one frame per sample: one mask shared across the batch);
- ``summary.json``: mean predictive std inside the training range, in the gap,
  beyond 0.5 and their ratios; RMSE of the MC mean vs the deterministic
  prediction; Gaussian NLL, CRPS and 90 % coverage on the held-out points;
  90 % intervals (``intervals_90``: the MC quantiles, split conformal with
  absolute or std-normalised residuals, CQR, std scaling, isotonic
  recalibration), fit on a random half of the held-out points, with coverage
  and width on the other half and per region of the grid;
  wall times; the seed and every setting;
- ``checkpoints/``: the trained parameters (``--resume`` reuses them).

``--sweep`` adds the seed's five settings (``sweep.png`` and a ``sweep``
section with the seed's three findings); for the last-layer-only setting the
closed-form mean and std from ``jaxuq.exact`` sit next to the MC estimates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from typing import Any

from jaxuq.experiments._args import (
  int_at_least,
  non_negative_float,
  positive_float,
  positive_int,
  rate,
)
from jaxuq.experiments._args import seed as seed_type

HELP = "reference experiment 1: MC dropout regression with a gap (figures, GIF, summary.json)"

FULL = {"width": 1024, "depth": 4, "epochs": 30, "batch_size": 32}
QUICK = {"width": 128, "depth": 3, "epochs": 20, "batch_size": 64}
# Settings that change the trained parameters: --resume refuses a checkpoint made with others.
TRAINING_FIELDS = ("seed", "width", "depth", "batch_size", "learning_rate", "noise",
                   "holdout_fraction", "val_fraction")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
  a = parser.add_argument
  a("--out", type=pathlib.Path, default=pathlib.Path("out/regression"),
    help="output folder (default out/regression)")  # fmt: skip
  a("--width", type=positive_int,
    help=f"hidden width (default {FULL['width']}, quick {QUICK['width']})")  # fmt: skip
  a("--depth", type=positive_int,
    help=f"hidden layers (default {FULL['depth']}, quick {QUICK['depth']})")  # fmt: skip
  a("--epochs", type=positive_int,
    help=f"epochs (default {FULL['epochs']}, quick {QUICK['epochs']})")  # fmt: skip
  a("--batch-size", type=positive_int,
    help=f"batch size (default {FULL['batch_size']}, quick {QUICK['batch_size']})")  # fmt: skip
  a("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
  a("--samples", type=int_at_least(2, " (a std needs two samples)"), default=100,
    help="MC dropout samples (default 100)")  # fmt: skip
  a("--seed", type=seed_type, default=0, help="integer seed of every key (default 0)")
  a("--noise", type=non_negative_float, default=0.0,
    help="half-width of uniform noise on y (default 0)")  # fmt: skip
  a("--rate", type=rate, default=0.5, help="dropout rate of the main run (default 0.5)")
  a("--activation", default="relu", choices=("relu", "tanh"), help="activation (default relu)")
  a("--placement", default="all", choices=("all", "last"),
    help="dropout after every hidden layer or the last only (default all)")  # fmt: skip
  a("--quick", action="store_true", help="a small network and few epochs (under a minute)")
  a(
    "--sweep",
    action="store_true",
    help="also the seed's five (rate, activation, placement) settings",
  )
  a("--resume", action="store_true", help="reuse the checkpoints in --out instead of retraining")
  a("--no-gif", action="store_true", help="skip samples.gif")
  a("--no-progress", action="store_true", help="no progress bars")


def requirements(args: argparse.Namespace) -> dict[str, str]:
  """The figures need matplotlib, the GIF Pillow."""
  return {"matplotlib": "plot"} | ({} if args.no_gif else {"PIL": "plot"})


def _fail(message: str) -> SystemExit:
  return SystemExit(f"jaxuq regression: {message}")


def make_config(args: argparse.Namespace) -> Any:
  """The run's :class:`Config` from the (already checked) arguments."""
  from jaxuq.experiments._regression_core import Config

  sizes = QUICK if args.quick else FULL
  values = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in sizes.items()}
  return Config(seed=args.seed, learning_rate=args.lr, samples=args.samples, noise=args.noise,
                **values)  # fmt: skip


def settings_to_run(args: argparse.Namespace) -> list[tuple[float, str, str]]:
  """The main setting first, then the sweep's others (each trained once)."""
  from jaxuq.experiments._regression_core import SWEEP

  main = (float(args.rate), args.activation, args.placement)
  return [main] + ([s for s in SWEEP if s != main] if args.sweep else [])


def check_resume(out: pathlib.Path, cfg: Any, names: list[str]) -> None:
  """Refuses ``--resume`` without checkpoints or with other training settings."""
  saved = out / "train_config.json"
  missing = [n for n in names if not (out / "checkpoints" / f"{n}.msgpack").exists()]
  if missing or not saved.exists():
    raise _fail(f"--resume found no checkpoint for {missing or names} in {out / 'checkpoints'}; "
                "run once without --resume to train")  # fmt: skip
  from jaxuq.experiments._regression_core import checkpoint_epochs

  done = {n: checkpoint_epochs(out / "checkpoints" / f"{n}.msgpack") for n in names}
  if any(e > cfg.epochs for e in done.values()):
    raise _fail(f"--resume: the checkpoints hold more epochs than --epochs {cfg.epochs}: {done}")
  old = json.loads(saved.read_text())
  new = {k: getattr(cfg, k) for k in TRAINING_FIELDS}
  diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
  if diff:
    raise _fail(f"--resume: the checkpoints in {out} were trained with other settings "
                f"(saved, now): {diff}; run without --resume to retrain")  # fmt: skip


def run(args: argparse.Namespace) -> int:
  cfg = make_config(args)
  settings = settings_to_run(args)
  import jax

  import jaxuq
  from jaxuq import plot
  from jaxuq.experiments import _regression_core as core

  names = [core.setting_name(*s) for s in settings]
  out: pathlib.Path = args.out
  if args.resume:
    check_resume(out, cfg, names)
  t0 = time.perf_counter()
  key = jax.random.key(cfg.seed)
  keys = dict(zip(("data", "holdout", "train", "sample"), jax.random.split(key, 4), strict=True))
  data = core.make_data(keys["data"], keys["holdout"], cfg)
  n_train = len(data.x_train) - max(1, round(len(data.x_train) * cfg.val_fraction))
  if cfg.batch_size > n_train:  # before any checkpoint is replaced
    raise _fail(
      f"argument --batch-size: {cfg.batch_size} is more than the {n_train} training rows; lower it"
    )
  (out / "checkpoints").mkdir(parents=True, exist_ok=True)
  (out / "train_config.json").write_text(
    json.dumps({k: getattr(cfg, k) for k in TRAINING_FIELDS}, indent=2)
  )
  results = []
  for i, setting in enumerate(settings):
    if not args.no_progress:
      step = "checkpoint" if args.resume else "training"
      print(f"[{i + 1}/{len(settings)}] {names[i]}: {step}, then {cfg.samples} MC samples")
    results.append(
      core.run_setting(
        keys, data, cfg, *setting, checkpoint=out / "checkpoints" / f"{names[i]}.msgpack",
        resume=args.resume, progress=not args.no_progress, stride=1 if i == 0 else cfg.sweep_stride,
      )
    )  # fmt: skip
  t_fig = time.perf_counter()
  main = results[0]
  x, train = main.x[:, 0], (data.x_train, data.y_train)
  plot.regression_losses(main.history, title=f"losses, {main.name}", path=out / "losses.png")
  n = min(100, len(main.samples))
  plot.regression_curves(x, main.samples, train, title=f"{n} MC dropout samples, {main.name}",
                         path=out / "curves.png")  # fmt: skip
  plot.regression_scatter(main.samples.mean(0), main.deterministic, title=main.name,
                          path=out / "scatter.png")  # fmt: skip
  ratios = main.summary["ratios"]
  plot.regression_band(
    x, main.samples, train, closed_form=main.closed_form, path=out / "band.png",
    title=f"{main.name}: std gap/inside {ratios['gap_over_inside']:.1f}×, "
    f"beyond 0.5/inside {ratios['beyond_over_inside']:.1f}×",
  )  # fmt: skip
  if args.no_gif:  # a GIF of an earlier run would sit beside this run's summary
    (out / "samples.gif").unlink(missing_ok=True)
  frames = (
    None
    if args.no_gif
    else plot.regression_animation(x, main.samples, train, out / "samples.gif", name=main.name)
  )
  if args.sweep:
    panels = [
      {"x": r.x[:, 0], "samples": r.samples, "closed_form": r.closed_form,
       "title": f"{r.name}: std inside {r.summary['mean_std']['inside']:.3f}, "
       f"outside {r.summary['mean_std']['outside']:.3f}"}
      for r in results
    ]  # fmt: skip
    plot.regression_sweep(panels, ylim=(-10, 4), path=out / "sweep.png")
  fig_s = time.perf_counter() - t_fig

  summary: dict[str, Any] = {
    "command": "jaxuq regression",
    "config": dataclasses.asdict(cfg)
    | {
      "quick": args.quick,
      "sweep": args.sweep,
      "resume": args.resume,
      "shared_mask": True,
    },  # fmt: skip
    "key": {
      "seed": cfg.seed,
      "impl": str(jax.random.key_impl(key)),
      "derivation": "data, holdout, train, sample = jax.random.split(jax.random.key(seed), 4); "
      "the same four keys for every setting",
    },
    "versions": _versions(),
    "devices": [str(d) for d in jax.devices()],
    "data": {
      "train": int(len(data.x_train) - round(len(data.x_train) * cfg.val_fraction)),
      "validation": int(round(len(data.x_train) * cfg.val_fraction)),
      "heldout": int(len(data.x_hold)),
      "test": int(len(data.x_test)),
      "gap": list(core.GAP),
      "beyond": core.BEYOND,
    },
    "main": main.summary,
    "gif_frames": frames,
  }
  if args.sweep:
    by_name = {r.name: r.summary for r in results}
    summary["sweep"] = {"results": by_name, "findings": core.findings(by_name)}
  summary["wall_s"] = {
    "train": sum(r.summary["wall_s"]["train"] for r in results),
    "sample": sum(r.summary["wall_s"]["sample"] for r in results),
    "figures": fig_s,
    "total": time.perf_counter() - t0,
  }
  (out / "summary.json").write_text(json.dumps(summary, indent=2))
  print_table(summary, results)
  print(f"wrote {out}/ (summary.json, figures{', samples.gif' if frames else ''}) "
        f"in {summary['wall_s']['total']:.1f} s; jaxuq {jaxuq.__version__}")  # fmt: skip
  return 0


def _versions() -> dict[str, str]:
  import flax
  import jax
  import optax

  import jaxuq

  return {"jaxuq": jaxuq.__version__, "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__}  # fmt: skip


def print_table(summary: dict[str, Any], results: list[Any]) -> None:
  """A short table: std per region, ratios, held-out metrics, times."""
  head = (f"{'setting':<20}{'std in':>8}{'gap':>8}{'>0.5':>8}{'gap/in':>8}{'>0.5/in':>8}"
          f"{'NLL':>8}{'CRPS':>8}{'cov90':>7}{'train s':>9}{'sample s':>9}")  # fmt: skip
  print(head)
  for r in results:
    s = r.summary
    m, q, h = s["mean_std"], s["ratios"], s["heldout"]
    print(f"{s['name']:<20}{m['inside']:>8.3f}{m['gap']:>8.3f}{m['beyond']:>8.3f}"
          f"{q['gap_over_inside']:>8.1f}{q['beyond_over_inside']:>8.1f}{h['gaussian_nll']:>8.2f}"
          f"{h['crps']:>8.3f}{h['coverage_90']:>7.2f}{s['wall_s']['train']:>9.1f}"
          f"{s['wall_s']['sample']:>9.1f}")  # fmt: skip
    if "closed_form" in s:
      c = s["closed_form"]
      print(f"{'  closed form':<20}{c['mean_std']['inside']:>8.3f}{c['mean_std']['gap']:>8.3f}"
            f"{c['mean_std']['beyond']:>8.3f}{c['ratios']['gap_over_inside']:>8.1f}"
            f"{c['ratios']['beyond_over_inside']:>8.1f}")  # fmt: skip
  main = summary["main"]
  print(f"RMSE MC mean vs deterministic: {main['rmse_mc_mean_vs_deterministic']['all']:.4f} "
        f"(inside {main['rmse_mc_mean_vs_deterministic']['inside']:.4f}); "
        f"held-out points: {main['heldout']['points']}")  # fmt: skip
  print_intervals(main["intervals_90"])
  for name, f in summary.get("sweep", {}).get("findings", {}).items():
    print(f"finding {name.replace('_', ' ')}: {'holds' if f['holds'] else 'does NOT hold'}")


def print_intervals(iv: dict[str, Any]) -> None:
  """The 90 % intervals: held-out coverage and width, and coverage / width per grid region."""
  print(f"{iv['level']:.0%} intervals, fit on {iv['calibration_points']} held-out points, "
        f"tested on the other {iv['test_points']} and on the grid (noise-free target):")  # fmt: skip
  regions = ("inside", "gap", "beyond")
  print(f"{'method':<20}{'held-out':>9}{'width':>7}{'splits':>13}"
        + "".join(f"{r + ' cov/width':>18}" for r in regions))  # fmt: skip
  for name, m in iv["methods"].items():
    h, r = m["heldout_test"], m["heldout_random_splits"]
    cells = "".join(
      f"{m['grid'][g]['coverage']:>10.2f}{m['grid'][g]['width']:>8.2f}" for g in regions
    )
    print(f"{name:<20}{h['coverage']:>9.2f}{h['width']:>7.3f}"
          f"{r['coverage_mean']:>8.3f}±{r['coverage_sd']:.2f}{cells}")  # fmt: skip
