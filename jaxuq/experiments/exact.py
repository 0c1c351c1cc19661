"""``jaxuq exact``: the tiny network's exact output distribution, and MC against it.

The 7-parameter network of the first reference experiment (1 -> Dense(2, ReLU)
-> Dropout(0.7) -> Dense(1), ``x = 2``) has four possible outputs. This command
enumerates its four masks through the same forward pass that ``mc_sample``
runs (in float64, scoped with ``jax.enable_x64``) and prints the table; with
``--samples N`` it adds MC frequencies from ``mc_sample`` with their standard
errors; ``--out DIR`` writes ``summary.json`` and ``histogram.png``;
``--convergence`` adds ``convergence.png`` (MC error against the exact mean
and variance as the number of samples grows).
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

HELP = "the tiny network's exact output distribution by mask enumeration, and MC against it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--samples", type=int, default=0, help="MC passes to compare with (default 0: exact only)"
  )
  parser.add_argument("--key", type=int, default=0, help="integer seed of the MC key (default 0)")
  parser.add_argument("--out", type=pathlib.Path, help="folder for summary.json and figures")
  parser.add_argument("--json", action="store_true", help="print the table as JSON")
  parser.add_argument(
    "--convergence",
    action="store_true",
    help="with --out: also draw convergence.png (MC error vs samples, two networks)",
  )


def _kept_label(kept: list[str]) -> str:
  # 'dropout[0]' is the first hidden unit, h1.
  return " ".join(f"h{int(u.split('[')[1][:-1]) + 1}" for u in kept) or "none"


def tiny_table(samples: int, seed: int) -> dict[str, Any]:
  """The exact table (float64) and, if ``samples``, MC frequencies from ``mc_sample``."""
  import jax
  import numpy as np

  import jaxuq
  import jaxuq.exact as ex

  with jax.enable_x64(True):
    f, x = ex.tiny_predictive(), ex.tiny_input()
    e = ex.enumerate_outputs(f, x)
    cf = ex.closed_form_moments(f, x)
    exact = ex.exact_moments(f, x)
    mc = None
    if samples:
      mc = np.asarray(jaxuq.mc_sample(f, jax.random.key(seed), x, num_samples=samples))[:, 0, 0]
  outputs = e.outputs[:, 0, 0]
  rows = []
  for i, (p, y) in enumerate(zip(e.probs, outputs, strict=True)):
    row = {"kept": _kept_label(e.kept_units(i)), "probability": float(p), "output": float(y)}
    if mc is not None:
      hits = np.abs(mc[:, None] - outputs[None, :]).argmin(axis=1) == i
      row["mc_frequency"] = float(hits.mean())
      row["standard_error"] = float(np.sqrt(p * (1 - p) / samples))
    rows.append(row)
  summary: dict[str, Any] = {
    "network": "1 -> Dense(2, ReLU) -> Dropout(0.7) -> Dense(1); w1=[[3,7]], b1=[5,1], "
    "w2=[[-10],[10]], b2=[11]; x=2",
    "dtype": str(e.outputs.dtype),
    "rows": rows,
    "probability_sum": float(e.probs.sum()),
    "exact_mean": float(exact.mean[0, 0]),
    "exact_variance": float(exact.var[0, 0]),
    "closed_form_mean": float(cf.mean[0, 0]),
    "closed_form_variance": float(cf.var[0, 0]),
  }
  if mc is not None:
    summary |= {
      "samples": samples,
      "key": seed,
      "mc_mean": float(mc.mean()),
      "mc_variance": float(mc.var(ddof=1)) if samples > 1 else 0.0,
    }
  return summary


def print_table(summary: dict[str, Any]) -> None:
  mc = "samples" in summary
  print(f"tiny network: {summary['network']} ({summary['dtype']})")
  head = f"  {'units kept':<11}{'probability':>14}{'output':>18}"
  if mc:
    head += f"{'MC frequency':>15}{'± 1 SE':>9}  (N={summary['samples']}, key={summary['key']})"
  print(head)
  for r in summary["rows"]:
    line = f"  {r['kept']:<11}{r['probability']:>14.12g}{r['output']:>18.12g}"
    if mc:
      line += f"{r['mc_frequency']:>15.4f}{r['standard_error']:>9.4f}"
    print(line)
  print(
    f"  exact mean {summary['exact_mean']:.12g}, variance {summary['exact_variance']:.12g} "
    f"(closed form: {summary['closed_form_mean']:.12g}, {summary['closed_form_variance']:.12g})"
  )
  if mc:
    print(f"  MC mean {summary['mc_mean']:.6g}, variance {summary['mc_variance']:.6g}")


def run(args: argparse.Namespace) -> int:
  if args.samples < 0:
    raise SystemExit(f"jaxuq exact: --samples must be a non-negative int, got {args.samples}")
  if args.convergence and not args.out:
    raise SystemExit("jaxuq exact: --convergence needs --out DIR to write the figure into")
  summary = tiny_table(args.samples, args.key)
  if args.json:
    print(json.dumps(summary, indent=2))
  else:
    print_table(summary)
  if args.out:
    from jaxuq.experiments import _exact_figures as figures

    args.out.mkdir(parents=True, exist_ok=True)
    figures.histogram(summary, args.out / "histogram.png")
    if args.convergence:
      summary["convergence"] = figures.convergence(args.key, args.out / "convergence.png")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
  return 0
