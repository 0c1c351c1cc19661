"""``jaxuq bench``: one vmap against sequential sampling and against the peers.

For every case (model x batch x masks) and variant the bench times the
samples after a warm-up call (median of several repeats, fewer when a run is
long), in a process of its own so that its peak memory is its own, and checks
that the variant returns the samples of ``sequential_sample`` to float
rounding. It writes ``bench.json``, ``bench.md`` (a markdown table) and a plot
of speedup against T into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

HELP = "benchmark mc_sample against sequential sampling and PyTorch/Keras loops"

FULL_GRID = {"models": "mlp,mlp-last,cnn", "batches": "256,5000", "masks": "10,100,1000"}
QUICK_GRID = {"models": "mlp,mlp-last,cnn", "batches": "64", "masks": "10", "width": 128}
TOLERANCE = 1e-4  # relative to the samples' scale: float32 rounding, not a different mask
CHECK_MASKS = 20  # samples compared with the loop (a prefix keeps big cases cheap)
MOMENT_CHECK_MASKS = 200  # loop samples the closed form's mean is tested against


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--quick", action="store_true", help="a small grid (CI); under 2 minutes")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/bench"))
  parser.add_argument("--models", help="comma list of mlp, mlp-last, cnn")
  parser.add_argument("--batches", help="comma list of batch sizes (default 256,5000)")
  parser.add_argument("--masks", help="comma list of mask counts T (default 10,100,1000)")
  parser.add_argument("--width", type=int, help="MLP hidden width (default 1024)")
  parser.add_argument("--variants", help="comma list restricting the variants")
  parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
  parser.add_argument("--budget", type=float, default=20.0, help="seconds of repeats per variant")
  parser.add_argument("--no-peers", action="store_true", help="skip PyTorch and Keras")
  parser.add_argument(
    "--in-process", action="store_true", help="run variants in this process (no peak memory)"
  )
  parser.add_argument("--worker", help=argparse.SUPPRESS)


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(spec: dict) -> dict:
  """Times one variant on one case; the result is JSON-serialisable."""
  import jax
  import numpy as np

  from jaxuq.experiments import bench_cases, bench_peers

  case = bench_cases.Case(**spec["case"])
  name = spec["variant"]
  rss_before = _peak_rss_mib()
  if name in bench_peers.PEERS:
    why = bench_peers.available(name)
    if why:
      return {"skipped": why}
    run = bench_peers.build(name, case, threads=os.cpu_count() or 1)
    calls, compare = case.masks, ""
  else:
    variant = bench_cases.build_variant(name, case)
    run, compare = variant.run, variant.compare
    calls = case.masks if variant.calls is None else variant.calls
  t0 = time.perf_counter()
  out = jax.block_until_ready(run())
  first = time.perf_counter() - t0
  repeats = max(1, min(spec["repeats"], int(spec["budget"] // max(first, 1e-6))))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - t0)
  seconds = statistics.median(times) * case.masks / calls
  result = {
    "time_s": seconds,
    "first_call_s": first,
    "repeats": repeats,
    "extrapolated_from": calls if calls != case.masks else None,
    "peak_rss_mib": _peak_rss_mib(),
    "rss_before_mib": rss_before,
  }
  if compare and spec.get("check", True):
    if compare == "moments":
      ref = bench_cases.reference("sequential", case, limit=MOMENT_CHECK_MASKS)
      result["check"] = _check_moments(out, np.asarray(ref))
    else:
      kind = "sequential_shared" if compare == "sequential_shared" else "sequential"
      limit = min(np.asarray(out).shape[0], CHECK_MASKS)
      ref = bench_cases.reference(kind, case, limit=limit)
      scale = max(1.0, float(np.max(np.abs(ref))))
      diff = bench_cases.max_abs_diff(np.asarray(out)[:limit], ref)
      result["check"] = {"max_abs_diff": diff, "ok": diff <= TOLERANCE * scale}
  return result


def _check_moments(moments, samples) -> dict:
  """Closed-form mean vs the MC mean of the same model: within 5 standard errors."""
  import numpy as np

  mean = np.asarray(moments).reshape(samples.shape[1:])
  mc_mean = samples.mean(0)
  se = samples.std(0) / math.sqrt(samples.shape[0]) + 1e-6
  z = float(np.max(np.abs(mean - mc_mean) / se))
  return {"max_z": z, "ok": z < 5.0 + 2.0 * math.log10(mean.size + 1)}


def matmul_rate() -> float:
  """The machine's float32 matmul rate in FLOP/s, (4096x1024) @ (1024x1024)."""
  import jax
  import jax.numpy as jnp

  a = jnp.ones((4096, 1024), jnp.float32)
  b = jnp.ones((1024, 1024), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(f(a, b))
  best = math.inf
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(10):
      out = f(a, b)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - t0) / 10)
  return 2 * 4096 * 1024 * 1024 / best


def _run_spec(spec: dict, isolate: bool) -> dict:
  if not isolate:
    return measure(spec)
  proc = subprocess.run(
    [sys.executable, "-m", "jaxuq", "bench", "--worker", json.dumps(spec)],
    capture_output=True,
    text=True,
  )
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
  if proc.returncode != 0 or not lines:
    return {"error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
  return json.loads(lines[-1])


def _grid(args: argparse.Namespace) -> tuple[list, dict]:
  from jaxuq.experiments.bench_cases import Case

  grid = dict(QUICK_GRID if args.quick else FULL_GRID)
  for name in ("models", "batches", "masks", "width"):
    if getattr(args, name) is not None:
      grid[name] = getattr(args, name)
  width = int(str(grid.get("width", 1024)))
  cases = [
    Case(model, int(b), int(t), width=width)
    for model in str(grid["models"]).split(",")
    for b in str(grid["batches"]).split(",")
    for t in str(grid["masks"]).split(",")
  ]
  return cases, grid


def run(args: argparse.Namespace) -> int:
  if args.worker:
    print(json.dumps(measure(json.loads(args.worker))))
    return 0
  import jax

  from jaxuq.experiments import bench_cases, bench_peers

  cases, grid = _grid(args)
  isolate = not args.in_process
  rate = matmul_rate()
  devices = jax.devices()
  rows = []
  for case in cases:
    names = bench_cases.variant_names(case, len(devices))
    if not args.no_peers:
      names += list(bench_peers.PEERS)
    if args.variants:
      names = [n for n in names if n in args.variants.split(",")]
    flops = bench_cases.forward_flops(case) * case.masks
    for name in names:
      spec = {
        "case": case.__dict__,
        "variant": name,
        "repeats": args.repeats,
        "budget": args.budget,
        "check": True,
      }
      res = _run_spec(spec, isolate)
      row = {"case": case.name, **case.__dict__, "variant": name, **res}
      if "time_s" in res:
        row["samples_per_s"] = case.masks / res["time_s"]
        row["flops"] = flops
        row["fraction_of_matmul_floor"] = flops / rate / res["time_s"]
      rows.append(row)
      print(_line(row), flush=True)
  _add_speedups(rows)
  summary = {
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in devices],
      "jax": jax.__version__,
    },
    "matmul_flops_per_s": rate,
    "grid": grid,
    "rows": rows,
  }
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "bench.json").write_text(json.dumps(summary, indent=2))
  (args.out / "bench.md").write_text(markdown_table(summary))
  _plot(rows, args.out / "speedup.png")
  print(f"\nmatmul rate {rate / 1e9:.0f} GFLOP/s; wrote {args.out}/bench.json, bench.md")
  # A peer that fails (the batch-repeat trick running out of memory, say) is a
  # result to report; a jaxuq variant that fails or mismatches fails the run.
  bad = [
    r
    for r in rows
    if not r.get("check", {}).get("ok", True)
    or ("error" in r and r["variant"] not in bench_peers.PEERS)
  ]
  for r in bad:
    print(f"FAILED: {r['case']} {r['variant']}: {r.get('check') or r.get('error')}")
  return 1 if bad else 0


def _add_speedups(rows: list[dict]) -> None:
  base = {r["case"]: r["time_s"] for r in rows if r["variant"] == "sequential" and "time_s" in r}
  for r in rows:
    if "time_s" in r and r["case"] in base:
      r["speedup_vs_sequential"] = base[r["case"]] / r["time_s"]


def _line(row: dict) -> str:
  if "time_s" not in row:
    return f"{row['case']:<22} {row['variant']:<18} {row.get('skipped') or row.get('error')}"
  check = row.get("check", {})
  mark = "" if not check else ("ok" if check.get("ok") else "MISMATCH")
  return (
    f"{row['case']:<22} {row['variant']:<18} {row['time_s']:9.4f} s  "
    f"{row['peak_rss_mib']:7.0f} MiB  floor {row['fraction_of_matmul_floor']:6.1%}  {mark}"
  )


def markdown_table(summary: dict) -> str:
  rate = summary["matmul_flops_per_s"]
  lines = [
    f"Machine: {summary['machine']['platform']}, {summary['machine']['cpu_count']} cores, "
    f"devices {summary['machine']['devices']}; jax {summary['machine']['jax']}; "
    f"measured matmul rate {rate / 1e9:.0f} GFLOP/s.",
    "",
    "| case | variant | time (s) | samples/s | speedup vs sequential | % of matmul floor | peak RSS (MiB) | check |",
    "|---|---|---:|---:|---:|---:|---:|---|",
  ]
  for r in summary["rows"]:
    if "time_s" not in r:
      lines.append(
        f"| {r['case']} | {r['variant']} | - | - | - | - | - | {r.get('skipped') or r.get('error')} |"
      )
      continue
    check = r.get("check")
    mark = "-" if not check else ("ok" if check["ok"] else "MISMATCH")
    extra = f" (from {r['extrapolated_from']})" if r.get("extrapolated_from") else ""
    lines.append(
      f"| {r['case']} | {r['variant']} | {r['time_s']:.4g}{extra} | {r['samples_per_s']:.4g} | "
      f"{r.get('speedup_vs_sequential', float('nan')):.2f}x | "
      f"{100 * r['fraction_of_matmul_floor']:.0f} | {r['peak_rss_mib']:.0f} | {mark} |"
    )
  return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: pathlib.Path) -> None:
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return
  series: dict[tuple, list] = {}
  for r in rows:
    if "speedup_vs_sequential" in r:
      series.setdefault((r["model"], r["batch"], r["variant"]), []).append(
        (r["masks"], r["speedup_vs_sequential"])
      )
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for (model, batch, variant), pts in sorted(series.items()):
    if variant == "sequential" or len(pts) < 2:
      continue
    pts.sort()
    ax.plot(*zip(*pts, strict=True), marker="o", label=f"{model} b{batch} {variant}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_xlabel("masks T")
  ax.set_ylabel("speedup over sequential_sample")
  if any(not str(line.get_label()).startswith("_") for line in ax.get_lines()):
    ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
