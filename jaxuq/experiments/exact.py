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

from jaxuq.experiments._args import non_negative_int
from jaxuq.experiments._args import seed as seed_type

HELP = "the tiny network's exact output distribution by mask enumeration, and MC against it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--samples",
    type=non_negative_int,
    default=0,
    help="MC passes to compare with (default 0: exact only)",
  )
  parser.add_argument(
    "--key", type=seed_type, default=0, help="integer seed of the MC key (default 0)"
  )
  parser.add_argument("--out", type=pathlib.Path, help="folder for summary.json and figures")
  parser.add_argument("--json", action="store_true", help="print the table as JSON")
  parser.add_argument(
    "--convergence",
    action="store_true",
    help="with --out: also draw convergence.png (MC error vs samples, two networks)",
  )


# Bytes held per MC sample at the peak: its key (8) and float64 output (8) on the
# device, the host copy (8) and its bin index (8), with room for temporaries.
BYTES_PER_SAMPLE = 64


def requirements(args: argparse.Namespace) -> dict[str, str]:
  """The figures written with ``--out`` need matplotlib."""
  return {"matplotlib": "plot"} if args.out else {}


def memory_bytes() -> int:
  """The memory a run may fill: the host's RAM, or the first device's limit if smaller."""
  import os

  import jax

  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  stats = jax.devices()[0].memory_stats() or {}
  return int(min(host, stats.get("bytes_limit", host)))


def check_samples_fit(samples: int, available: int) -> None:
  """Refuses ``--samples`` whose samples need more than half of ``available`` bytes."""
  needed = samples * BYTES_PER_SAMPLE
  if needed > available // 2:
    most = available // 2 // BYTES_PER_SAMPLE
    raise SystemExit(
      f"jaxuq exact: --samples {samples} needs about {needed / 2**30:.1f} GiB "
      f"({BYTES_PER_SAMPLE} bytes per sample), more than half of this machine's "
      f"{available / 2**30:.1f} GiB; use --samples {most} or fewer"
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
  if mc is not None:  # each sample counted at its nearest exact output
    order = np.argsort(outputs)
    nearest = order[np.searchsorted((outputs[order][1:] + outputs[order][:-1]) / 2, mc)]
    frequency = np.bincount(nearest, minlength=len(outputs)) / samples
  rows = []
  for i, (p, y) in enumerate(zip(e.probs, outputs, strict=True)):
    row = {"kept": _kept_label(e.kept_units(i)), "probability": float(p), "output": float(y)}
    if mc is not None:
      row["mc_frequency"] = float(frequency[i])
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
  check_samples_fit(args.samples, memory_bytes())
  if args.convergence and not args.out:
    raise SystemExit("jaxuq exact: --convergence needs --out DIR to write the figure into")
  summary = tiny_table(args.samples, args.key)
  if args.json:
    print(json.dumps(summary, indent=2))
  else:
    print_table(summary)
  if args.out:
    from jaxuq import plot
    from jaxuq.experiments._exact_convergence import convergence_data

    args.out.mkdir(parents=True, exist_ok=True)
    plot.exact_histogram(summary["rows"], samples=summary.get("samples"),
                         title="tiny network at x = 2: every possible output",
                         path=args.out / "histogram.png")  # fmt: skip
    if args.convergence:
      summary["convergence"] = convergence_data(args.key)
      plot.mc_convergence(summary["convergence"], path=args.out / "convergence.png")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
  return 0
