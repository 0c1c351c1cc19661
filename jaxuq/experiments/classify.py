"""``jaxuq classify IMAGE.png [...] --checkpoint DIR``: is it a digit, and which?

Each drawing is turned into an MNIST-like input (grey, inverted when dark ink
on light paper, resized to fit 20x20, centred by mass in 28x28; see
``jaxuq.data.drawing_to_mnist_like``), given the saved model's MC dropout
passes, and judged by the saved rejector (logistic on uncertainty features)
that ``jaxuq ood`` fitted: accept or reject, then the digit and its
uncertainty. ``DIR`` is ``jaxuq ood``'s ``--out`` folder or its ``checkpoints``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from jaxuq.experiments._args import int_at_least
from jaxuq.experiments._args import seed as seed_type

HELP = "your drawings (PNG): accept/reject, the digit and its uncertainty"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("images", nargs="+", type=pathlib.Path, metavar="IMAGE")
  parser.add_argument(
    "--checkpoint", type=pathlib.Path, required=True, help="jaxuq ood's --out folder"
  )
  parser.add_argument("--model", choices=("basic", "deep"), help="default: deep if saved")
  parser.add_argument(
    "--samples",
    type=int_at_least(2, " (mutual information and class std need two passes)"),
    help="MC passes (default: as when fitted)",
  )
  parser.add_argument("--seed", type=seed_type, default=0, help="integer seed (default 0)")
  parser.add_argument(
    "--strict",
    action="store_true",
    help="reject at the held-out threshold that rejects 95%% of letters (default: the "
    "logistic's own decision, P(not a digit) >= 0.5, as in the seed)",
  )
  parser.add_argument("--json", action="store_true", help="print JSON lines")
  parser.add_argument("--save-inputs", type=pathlib.Path, help="folder for the 28x28 inputs (PNG)")


def requirements(args: argparse.Namespace) -> dict[str, str]:
  """Reading the drawings needs Pillow."""
  return {"PIL": "plot"}


def run(args: argparse.Namespace) -> int:
  import jax
  import numpy as np

  from jaxuq import metrics, reject
  from jaxuq.data import drawing_to_mnist_like
  from jaxuq.experiments import _ood_model as om

  for path in args.images:
    if not path.is_file():
      raise FileNotFoundError(f"IMAGE {path} does not exist")
  folder = args.checkpoint
  if (folder / "checkpoints").is_dir():
    folder = folder / "checkpoints"
  saved = om.load_classifier(folder)
  if args.model is not None:
    saved = [c for c in saved if c[0] == args.model]
    if not saved:
      raise FileNotFoundError(f"no saved {args.model!r} classifier in {folder}")
  name, variables, rejector, record = saved[0]
  samples = args.samples or record["samples"]
  inputs = np.stack([drawing_to_mnist_like(p) for p in args.images])
  if args.save_inputs is not None:
    from PIL import Image

    args.save_inputs.mkdir(parents=True, exist_ok=True)
    for p, im in zip(args.images, inputs, strict=True):
      Image.fromarray(im).save(args.save_inputs / f"{p.stem}-28x28.png")
  x = (inputs.astype(np.float32) / 255.0)[..., None]
  probs = om.mc_probs(jax.random.key(args.seed), name, variables, x, samples)
  decision = reject.decide(rejector, reject.uncertainty_features(probs))
  threshold = float(rejector.threshold) if args.strict else 0.5
  mean = np.asarray(probs).mean(0)
  std = np.asarray(metrics.class_std(probs))
  entropy = np.asarray(metrics.predictive_entropy(probs))
  mi = np.asarray(metrics.mutual_information(probs))
  for i, path in enumerate(args.images):
    row = {
      "image": str(path),
      "model": name,
      "samples": samples,
      "decision": "reject" if float(decision.probability[i]) >= threshold else "accept",
      "p_not_a_digit": float(decision.probability[i]),
      "threshold": threshold,
      "digit": int(mean[i].argmax()),
      "probability": float(mean[i].max()),
      "class_std": float(std[i]),
      "predictive_entropy": float(entropy[i]),
      "mutual_information": float(mi[i]),
    }
    if args.json:
      print(json.dumps(row))
    else:
      verdict = (
        f"REJECT (not a digit: p={row['p_not_a_digit']:.2f} >= {row['threshold']:.2f})"
        if row["decision"] == "reject"
        else f"accept: digit {row['digit']} (p={row['probability']:.3f})"
      )
      print(
        f"{path}: {verdict}; class std {row['class_std']:.4f}, entropy "
        f"{row['predictive_entropy']:.3f}, MI {row['mutual_information']:.3f} "
        f"[{name} CNN, {samples} passes]"
      )
  return 0
