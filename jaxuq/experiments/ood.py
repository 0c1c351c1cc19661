"""``jaxuq ood``: digits in, letters out (the second reference experiment).

Trains the seed's basic and/or deep CNN on MNIST digits, draws ``--samples``
MC dropout passes on digit test images, letters (EMNIST, or SYNTHETIC
font-rendered letters offline) and Fashion-MNIST when present, and writes to
``--out``: digit accuracy and calibration; AUROC / AUPR / FPR@95 of digits vs
each OOD set for class std (the seed's score), predictive entropy, mutual
information and max probability, with the deterministic max-probability
baseline; a per-digit and per-letter breakdown; the accept/reject stage (a
logistic model on uncertainty features, fit on held-out digits and letters);
the selective accuracy-coverage curve; temperature scaling (deterministic and
MC, ECE and NLL before and after) and split conformal sets (LAC, APS, RAPS at
alpha 0.05 and 0.01: coverage and sizes on digits, sizes on the OOD sets, set
size as an OOD score), fit on held-out digits disjoint from the accept/reject
stage's (``calibration_*.png``); figures; and ``summary.json`` with every
number, the data sources and the settings. ``--ensemble N`` adds N
members trained in parallel on bootstrap resamples, scored by their
disagreement, with training and prediction times beside MC dropout's. The
saved models in ``OUT/checkpoints`` serve ``jaxuq classify``.

``--quick`` needs no fetched data: scikit-learn's digits (8x8, upsampled) and
letters from matplotlib's bundled fonts, small sets, few epochs, few passes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

from jaxuq.experiments._args import int_at_least, non_negative_int, positive_int
from jaxuq.experiments._args import seed as seed_type

HELP = "digits in, letters out: MC dropout CNNs on MNIST reject letters (the second seed)"
QUICK = {"epochs": 3, "samples": 20, "eval_size": 200, "holdout": 300}
FULL = {"epochs": 3, "samples": 100, "eval_size": 2000, "holdout": 5000}
# Held-out digits kept from the accept/reject stage for calibration (temperature, conformal):
# at least this many (alpha = 0.01 needs 99); the default runs keep holdout - eval_size.
MIN_CALIBRATION = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--model", choices=("basic", "deep", "both"), help="default: both (basic with --quick)"
  )
  parser.add_argument("--epochs", type=positive_int, help="training epochs (default 3)")
  parser.add_argument(
    "--samples",
    type=int_at_least(2, " (mutual information and the class std need two passes)"),
    help="MC dropout passes (default 100; 20 with --quick)",
  )
  parser.add_argument(
    "--eval-size",
    type=positive_int,
    help="images per test set given MC passes (default 2000; 200 with --quick); "
    "deterministic digit accuracy always uses the whole test set",
  )
  parser.add_argument("--seed", type=seed_type, default=0, help="integer seed (default 0)")
  parser.add_argument(
    "--quick",
    action="store_true",
    help="smoke run without fetched data: scikit-learn digits, matplotlib-font letters",
  )
  parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
  parser.add_argument(
    "--ensemble",
    type=_ensemble_size,
    default=0,
    metavar="N",
    help="also train an N-member deep ensemble (N >= 2; default 0: none)",
  )
  parser.add_argument("--data-dir", type=pathlib.Path, help="data folder (default: see make data)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/ood"))
  parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _ensemble_size(text: str) -> int:
  members = non_negative_int(text)
  if members == 1:
    raise argparse.ArgumentTypeError("must be 0 (no ensemble) or at least 2 members, got 1")
  return members


def requirements(args: argparse.Namespace) -> dict[str, str]:
  """Figures need matplotlib; letters rendered from fonts Pillow; ``--quick`` scikit-learn's digits."""
  needs = {"matplotlib": "experiments", "PIL": "experiments"}
  return needs | ({"sklearn": "experiments"} if args.quick else {})


def _settings(args: argparse.Namespace) -> dict[str, Any]:
  base = QUICK if args.quick else FULL
  model = args.model or ("basic" if args.quick else "both")
  s = {
    "models": ["basic", "deep"] if model == "both" else [model],
    "epochs": base["epochs"] if args.epochs is None else args.epochs,
    "samples": base["samples"] if args.samples is None else args.samples,
    "eval_size": base["eval_size"] if args.eval_size is None else args.eval_size,
    "holdout": base["holdout"],
    "seed": args.seed,
    "quick": args.quick,
    "ensemble": args.ensemble,
  }
  return s


def _load(args: argparse.Namespace, s: dict[str, Any]):
  """Training digits, held-out digits, and the test sets (subsets of ``eval_size``)."""
  import jax
  import numpy as np

  from jaxuq import data

  key = jax.random.key(s["seed"])
  if args.quick:
    opts: dict[str, Any] = {"system_fonts": False, "max_fonts": 6}
    d = [
      data.load_dataset("mnist", sp, data_dir=args.data_dir, source="sklearn")
      for sp in ("train", "test")
    ]
    lt = [data.load_dataset("letters", sp, data_dir=args.data_dir, source="fonts", key=key, **opts)
          for sp in ("train", "test")]  # fmt: skip
    sets = data.DigitsAndLetters(d[0], d[1], lt[0], lt[1], None)
  else:
    sets = data.load_digits_and_letters(args.data_dir, key=key)
  rng = np.random.default_rng(s["seed"])
  n_train = len(sets.digits_train.labels) - s["holdout"]
  if n_train < 256:
    raise ValueError(f"too few training digits after holding out {s['holdout']}: {n_train}")

  def subset(ds, n):
    rows = np.sort(rng.permutation(len(ds.labels))[:n])
    return ds.images[rows], ds.labels[rows]

  order = rng.permutation(len(sets.digits_test.labels))  # as subset() draws it

  def rows(ds, r):
    return ds.images[np.sort(r)], ds.labels[np.sort(r)]

  n_eval = s["eval_size"]
  tests = {"digits": rows(sets.digits_test, order[:n_eval]),
           "letters": subset(sets.letters_test, n_eval)}  # fmt: skip
  if sets.fashion_test is not None:
    tests["fashion_mnist"] = subset(sets.fashion_test, s["eval_size"])
  dt = sets.digits_train
  # Each of digits and letters given MC passes; the held-out digits after these calibrate.
  n_fit = min(s["holdout"] - MIN_CALIBRATION, n_eval)
  n_cal = min(s["holdout"] - n_fit, len(order) - n_eval)
  if n_cal < MIN_CALIBRATION:
    raise ValueError(
      f"eval_size={n_eval} leaves {len(order) - n_eval} test digits for calibration, fewer "
      f"than {MIN_CALIBRATION}: pass a smaller --eval-size"
    )
  cal_rows = slice(n_train + n_fit, n_train + n_fit + n_cal)
  split = {
    "train": (dt.images[:n_train], dt.labels[:n_train]),
    "heldout_digits": (dt.images[n_train:][:n_fit], dt.labels[n_train:][:n_fit]),
    "calibration": {  # the first is exchangeable with the test digits; the figure draws it
      "test_digits": rows(sets.digits_test, order[n_eval : n_eval + n_cal]),
      "heldout_training": (dt.images[cal_rows], dt.labels[cal_rows]),
    },
    "heldout_letters": subset(sets.letters_train, n_fit),
    "digits_test_full": (sets.digits_test.images, sets.digits_test.labels),
  }
  sources: dict[str, Any] = {
    name: {"source": ds.source, "synthetic": ds.synthetic, "size": len(ds.labels)}
    for name, ds in zip(
      ("digits_train", "digits_test", "letters_train", "letters_test", "fashion_mnist_test"),
      sets,
      strict=True,
    )  # fmt: skip
    if ds is not None
  }
  if sets.letters_test.synthetic:
    sources["note"] = (
      "Letters are SYNTHETIC: printed glyphs rendered from fonts with random distortions, "
      "NOT EMNIST handwriting; numbers on them are not comparable to the seed's EMNIST numbers."
    )
  if sets.fashion_test is None:
    sources["fashion_mnist_test"] = (
      "not present (skipped)" if not args.quick else "skipped (--quick)"
    )
  return split, tests, sources, sets.letters_test.class_names


def _evaluate(probs: dict[str, Any], labels: dict[str, Any]) -> tuple[dict, dict]:
  from jaxuq.experiments import _ood_eval as ev

  sc = {name: ev.scores(p) for name, p in probs.items()}
  det = {ood: ev.detection(sc["digits"], sc[ood]) for ood in probs if ood != "digits"}
  return {"digits": ev.digit_quality(probs["digits"], labels["digits"]), "detection": det}, sc


def run(args: argparse.Namespace) -> int:
  s = _settings(args)
  import jax
  import numpy as np

  from jaxuq import plot
  from jaxuq.experiments import _ood_eval as ev
  from jaxuq.experiments import _ood_model as om

  start = time.perf_counter()
  out = pathlib.Path(args.out)
  ckpt = out / "checkpoints"
  ckpt.mkdir(parents=True, exist_ok=True)
  split, tests, sources, letter_names = _load(args, s)
  labels = {name: y for name, (_, y) in tests.items()}
  x_train, y_train = split["train"]
  progress = not args.no_progress
  summary: dict[str, Any] = {"settings": s, "data": sources, "models": {}}
  from jaxuq.experiments._calibration_eval import calibration_split_info

  first = len(y_train) + len(split["heldout_digits"][1])  # after the accept/reject digits
  n_cal = len(split["calibration"]["test_digits"][1])
  summary["calibration_split"] = calibration_split_info(n_cal, first)
  roc: dict[str, dict] = {ood: {} for ood in tests if ood != "digits"}
  reliab, cover = {}, {}
  for m, name in enumerate(s["models"]):
    key = jax.random.fold_in(jax.random.key(s["seed"]), m)
    train_key, mc_key, ens_key = jax.random.split(key, 3)
    if args.resume and not (ckpt / f"{name}.msgpack").exists():
      print(f"--resume: no checkpoint {ckpt / f'{name}.msgpack'} yet; training {name} from scratch")
    state, history, t_train = om.fit(train_key, name, x_train, y_train, epochs=s["epochs"],
                                     checkpoint=ckpt / f"{name}.msgpack", resume=args.resume,
                                     progress=progress)  # fmt: skip
    v = state.variables
    x_full, y_full = split["digits_test_full"]
    det_acc = float(
      (np.asarray(om.deterministic_probs(name, v, x_full)).argmax(-1) == y_full).mean()
    )
    t0 = time.perf_counter()
    logits = {n: om.mc_logits(jax.random.fold_in(mc_key, i), name, v, x, s["samples"])
              for i, (n, (x, _)) in enumerate(tests.items())}  # fmt: skip
    probs = {n: jax.nn.softmax(z, axis=-1) for n, z in logits.items()}
    jax.block_until_ready(probs)
    t_predict = time.perf_counter() - t0
    result, sc = _evaluate(probs, labels)
    deterministic = {
      n: ev.scores(om.deterministic_probs(name, v, x)[None]) for n, (x, _) in tests.items()
    }
    for ood in roc:
      base = ev.detection(deterministic["digits"], deterministic[ood])["max_probability"]
      result["detection"][ood]["deterministic_max_probability"] = base
      for score in ("class_std", "mutual_information", "max_probability"):
        fpr, tpr = ev.roc(sc["digits"][score], sc[ood][score])
        roc[ood][f"{name}: {ev.SCORE_LABELS[score]}"] = (
          fpr,
          tpr,
          result["detection"][ood][score]["auroc"],
        )
    hd = om.mc_probs(
      jax.random.fold_in(mc_key, 100), name, v, split["heldout_digits"][0], s["samples"]
    )
    hl = om.mc_probs(
      jax.random.fold_in(mc_key, 101), name, v, split["heldout_letters"][0], s["samples"]
    )
    rejector, stage_info = ev.fit_stage(hd, hl, s["seed"])
    stage, rejected = ev.apply_stage(rejector, probs["digits"], labels["digits"],
                                     {n: p for n, p in probs.items() if n != "digits"})  # fmt: skip
    breakdown = {
      "digits": ev.per_class(sc["digits"], labels["digits"], tuple(map(str, range(10))),
                             {"rejected": rejected["digits"].astype(float),
                              "correct": (np.asarray(probs["digits"]).mean(0).argmax(-1) == labels["digits"]).astype(float)}),
      "letters": ev.per_class(sc["letters"], labels["letters"], letter_names,
                              {"rejected": rejected["letters"].astype(float)}),
    }  # fmt: skip
    t0 = time.perf_counter()
    calib: dict[str, Any] = {}
    for j, (source, xy) in enumerate(split["calibration"].items()):
      key_j = jax.random.fold_in(mc_key, 200 + j)
      calib[source], (p_drawn, sizes_drawn) = _calibration(key_j, name, v, xy, tests, logits,
                                                           s["samples"])  # fmt: skip
      if j == 0:
        plot.calibration_and_sets(
          p_drawn, sizes_drawn, labels["digits"], path=out / f"calibration_{name}.png",
          title=f"{name} CNN, {s['samples']} MC passes; T and sets fit on {n_cal} other test digits",
        )  # fmt: skip
    calib["seconds"] = time.perf_counter() - t0
    t_total = t_train + (om.previous_train_seconds(ckpt, name) if args.resume else 0.0)
    om.save_classifier(
      ckpt, name, rejector, s["samples"],
      {"epochs": s["epochs"], "seed": s["seed"], "train_seconds_total": t_total},
    )  # fmt: skip
    result |= {
      "deterministic_digit_accuracy_full_test": det_acc,
      "digit_test_size_full": int(len(y_full)),
      "history": history,
      "train_seconds": t_train,
      "train_seconds_total": t_total,
      "mc_predict_seconds": t_predict,
      "mc_images": int(sum(len(y) for y in labels.values())),
      "reject_stage": stage_info | stage,
      "per_class": breakdown,
      "calibration": calib,
    }
    summary["models"][name] = result
    reliab[f"{name} (MC {s['samples']})"] = np.asarray(probs["digits"]).mean(0)
    cover[name] = result["digits"]["coverage_curve"]
    title = f"{name} CNN, {s['samples']} MC dropout passes"
    labels_drawn = {k: ev.SCORE_LABELS[k] for k in ("class_std", "predictive_entropy")}
    plot.score_histograms(sc, labels_drawn, title=title, path=out / f"histograms_{name}.png")
    plot.per_class_bars(breakdown, title=title, path=out / f"per_class_{name}.png")
    if s["ensemble"]:
      summary["models"][name]["ensemble"] = _ensemble(
        ens_key, name, s, split, tests, labels, ckpt, args, progress
      )
      summary["models"][name]["ensemble"]["dropout_train_seconds"] = t_total
      summary["models"][name]["ensemble"]["dropout_predict_seconds"] = t_predict
  synth = " (letters: SYNTHETIC font-rendered, not EMNIST)" if "note" in sources else ""
  plot.roc_curves(roc, title=f"MC dropout on MNIST-trained CNNs{synth}", path=out / "roc.png")
  plot.reliability(reliab, labels["digits"], title="reliability on digit test images",
                   path=out / "reliability.png")  # fmt: skip
  plot.coverage_curves(cover, path=out / "coverage.png")
  summary["seconds"] = time.perf_counter() - start
  summary["figures"] = sorted(p.name for p in out.glob("*.png"))
  (out / "summary.json").write_text(json.dumps(summary, indent=2))
  _report(summary)
  return 0


def _calibration(
  key, name, v, calibration, tests, logits, samples
) -> tuple[dict[str, Any], tuple[dict, dict]]:
  """Temperature scaling and conformal sets fit on ``calibration`` (x, y); and what to draw."""
  import jax

  from jaxuq.experiments import _calibration_eval as ce
  from jaxuq.experiments import _ood_model as om

  x_cal, y_cal = calibration
  x_dig, y_dig = tests["digits"]
  mc_cal = om.mc_logits(jax.random.fold_in(key, 102), name, v, x_cal, samples)
  det_cal, det_dig = (om.deterministic_logits(name, v, x) for x in (x_cal, x_dig))
  det, det_after = ce.temperature(det_cal, y_cal, det_dig, y_dig)
  mc, mc_after = ce.temperature(mc_cal, y_cal, logits["digits"], y_dig)
  mean = {n: jax.nn.softmax(z, axis=-1).mean(0) for n, z in logits.items()}
  sets, sizes = ce.conformal_sets(jax.random.fold_in(key, 103),
                                  jax.nn.softmax(mc_cal, axis=-1).mean(0), y_cal, mean, y_dig)  # fmt: skip
  reliability = {
    "deterministic": jax.nn.softmax(det_dig, axis=-1),
    f"deterministic, T = {det['temperature']:.2f}": det_after,
    f"MC {samples}": mean["digits"],
    f"MC {samples}, T = {mc['temperature']:.2f}": mc_after,
  }
  panels = {f"{m} sets, alpha = {a}": sizes[(m, a)] for m, a in ce.FIGURE_SETS}
  return {"temperature": {"deterministic": det, "mc": mc}, "conformal": sets}, (reliability, panels)


def _ensemble(key, name, s, split, tests, labels, ckpt, args, progress) -> dict[str, Any]:
  import jax

  from jaxuq.experiments import _ood_model as om

  n = s["ensemble"]
  states, t_train = om.fit_ensemble(key, name, *split["train"], num_members=n, epochs=s["epochs"],
                                    checkpoint=ckpt / f"{name}-ensemble{n}.msgpack",
                                    resume=args.resume, progress=progress)  # fmt: skip
  t0 = time.perf_counter()
  probs = {k: om.ensemble_probs(name, states, x) for k, (x, _) in tests.items()}
  jax.block_until_ready(probs)
  t_predict = time.perf_counter() - t0
  result, _ = _evaluate(probs, labels)
  return {"members": n, "subsets": "bootstrap", "train_seconds": t_train,
          "predict_seconds": t_predict} | result  # fmt: skip


def _report(summary: dict[str, Any]) -> None:
  print(
    f"data: {summary['data'].get('note', 'letters: ' + summary['data']['letters_test']['source'])}"
  )
  for name, r in summary["models"].items():
    print(
      f"{name} CNN: digit accuracy {r['deterministic_digit_accuracy_full_test']:.4f} (deterministic, "
      f"{r['digit_test_size_full']} test images), {r['digits']['accuracy']:.4f} (MC mean); "
      f"trained {r['train_seconds_total']:.0f} s, MC {r['mc_predict_seconds']:.0f} s"
    )
    for ood, d in r["detection"].items():
      cells = ", ".join(f"{k} {v['auroc']:.3f}" for k, v in d.items())
      print(f"  AUROC digits vs {ood}: {cells}")
    for point, st in r["reject_stage"].items():
      if point.startswith("at_"):
        print(
          f"  accept/reject {point}: digits accepted {st['digits_accepted']:.3f}, letters "
          f"rejected {st['letters']['rejected']:.3f}, decision accuracy "
          f"{st['letters']['decision_accuracy']:.3f}, accuracy on accepted digits "
          f"{st['accuracy_on_accepted_digits']:.4f}"
        )
    _report_calibration(r["calibration"]["test_digits"])
    other = r["calibration"]["heldout_training"]
    cells = ", ".join(
      f"{m} {by['0.05']['digits']['coverage']:.3f}/{by['0.01']['digits']['coverage']:.3f}"
      for m, by in other["conformal"].items()
    )
    print(f"  calibrated on held-out training digits instead: coverage (alpha 0.05/0.01) {cells}")
    if "ensemble" in r:
      e = r["ensemble"]
      cells = ", ".join(f"{ood} {d['class_std']['auroc']:.3f}" for ood, d in e["detection"].items())
      print(
        f"  ensemble of {e['members']}: accuracy {e['digits']['accuracy']:.4f}, AUROC (class std) "
        f"{cells}; trained {e['train_seconds']:.0f} s, predicted {e['predict_seconds']:.1f} s"
      )


def _report_calibration(c: dict[str, Any]) -> None:
  """Temperature scaling and conformal sets: a few lines per model."""
  for kind, t in c["temperature"].items():
    b, a = t["test_digits"]["before"], t["test_digits"]["after"]
    print(f"  temperature ({kind}): T = {t['temperature']:.3f}; test digits ECE {b['ece']:.4f} -> "
          f"{a['ece']:.4f}, NLL {b['nll']:.4f} -> {a['nll']:.4f}")  # fmt: skip
  oods = [k for k in c["conformal"]["lac"]["0.05"] if k not in ("threshold", "digits")]
  head = "".join(f"{o[:7] + ' size/empty/AUROC size,!=1':>34}" for o in oods)
  print(f"  {'conformal sets':<16}{'alpha':>6}{'cover':>7}{'size':>6}{head}")
  for method, by_alpha in c["conformal"].items():
    for alpha, r in by_alpha.items():
      cells = "".join(
        f"{r[o]['mean_size']:>12.2f}{r[o]['fraction_empty']:>7.2f}{r[o]['auroc_set_size']:>8.3f}"
        f"{r[o]['auroc_not_singleton']:>7.3f}"
        for o in oods
      )
      d = r["digits"]
      print(f"  {method:<16}{alpha:>6}{d['coverage']:>7.3f}{d['mean_size']:>6.2f}{cells}")
