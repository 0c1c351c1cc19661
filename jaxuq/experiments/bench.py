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
import tempfile
import time

HELP = "benchmark mc_sample against sequential sampling and PyTorch/Keras loops"

FULL_GRID = {"models": "mlp,mlp-last,cnn", "batches": "256,5000", "masks": "10,100,1000"}
QUICK_GRID = {"models": "mlp,mlp-last,cnn", "batches": "64", "masks": "10", "width": 128}
TOLERANCE = 1e-4  # relative to the samples' scale: float32 rounding, not a different mask
CHECK_MASKS = 20  # samples compared with the loop (a prefix keeps big cases cheap)
MOMENT_CHECK_MASKS = 200  # loop samples the closed form's mean is tested against


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--quick", action="store_true", help="a small grid in this process (CI); under 2 minutes"
  )
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
  parser.add_argument(
    "--loop-cap",
    type=int,
    help="loops (sequential, Flax, PyTorch, Keras) run at most this many masks; time scaled to T",
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


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Timed:
  """One variant on one case, built and warmed up: ``time_once`` and ``finish``.

  It is what a worker process holds between the parent's requests (or, with
  ``--in-process``, what the parent holds itself).
  """

  def __init__(self, spec: dict) -> None:
    import jax

    from jaxuq.experiments import bench_cases, bench_peers

    self.spec = spec
    self.case = case = bench_cases.Case(**spec["case"])
    name = spec["variant"]
    self.rss_before = _peak_rss_mib()
    self.skipped: str | None = None
    self.compare = ""
    if name in bench_peers.PEERS:
      self.skipped = bench_peers.available(name, case)
      if self.skipped:
        return
      self.run, self.calls = bench_peers.build(
        name, case, threads=os.cpu_count() or 1, loop_cap=spec.get("loop_cap")
      )
    else:
      variant = bench_cases.build_variant(name, case, loop_cap=spec.get("loop_cap"))
      self.run, self.compare = variant.run, variant.compare
      self.calls = case.masks if variant.calls is None else variant.calls
    t0 = time.perf_counter()
    self.out = jax.block_until_ready(self.run())
    self.first = time.perf_counter() - t0
    self.times: list[float] = []

  def time_once(self) -> float:
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(self.run())
    self.times.append(time.perf_counter() - t0)
    return self.times[-1]

  def finish(self) -> dict:
    """The result row's measurements: median time scaled to the case's masks, memory, check."""
    import numpy as np

    from jaxuq.experiments import bench_cases

    case = self.case
    result = {
      "time_s": statistics.median(self.times) * case.masks / self.calls,
      "times_s": self.times,
      "first_call_s": self.first,
      "repeats": len(self.times),
      "extrapolated_from": self.calls if self.calls != case.masks else None,
      "peak_rss_mib": _peak_rss_mib(),
      "rss_before_mib": self.rss_before,
    }
    out = self.out
    if self.compare and self.spec.get("check", True):
      if self.compare == "moments":
        ref = bench_cases.reference("sequential", case, limit=MOMENT_CHECK_MASKS)
        result["check"] = _check_moments(out, np.asarray(ref))
      else:
        kind = "sequential_shared" if self.compare == "sequential_shared" else "sequential"
        limit = min(np.asarray(out).shape[0], CHECK_MASKS)
        ref = bench_cases.reference(kind, case, limit=limit)
        scale = max(1.0, float(np.max(np.abs(ref))))
        diff = bench_cases.max_abs_diff(np.asarray(out)[:limit], ref)
        result["check"] = {"max_abs_diff": diff, "ok": diff <= TOLERANCE * scale}
    return result


def _repeats(spec: dict, first: float) -> int:
  return max(1, min(spec["repeats"], int(spec["budget"] // max(first, 1e-6))))


def _start(spec: dict) -> tuple[_Timed | None, dict]:
  """Builds and warms up a variant: the runner and its first report.

  The report is ``{'first_call_s': ...}`` when ready, else ``{'skipped': why}``
  or ``{'error': what}`` (and no runner to time).
  """
  try:
    timed = _Timed(spec)
  except Exception as e:  # noqa: BLE001 - reported as the variant's result
    return None, {"error": f"{type(e).__name__}: {e}"}
  if timed.skipped:
    return None, {"skipped": timed.skipped}
  return timed, {"first_call_s": timed.first}


def _serve(spec: dict) -> int:
  """The worker's side of the protocol: one JSON line per request on stdin.

  The first line is ``_start``'s report; then ``time`` runs the variant once
  and answers its seconds, ``finish`` answers the result row (memory, check)
  and ends the worker.
  """
  timed, info = _start(spec)
  print(json.dumps(info), flush=True)
  if timed is None:
    return 0 if "skipped" in info else 1
  for line in sys.stdin:
    if line.strip() == "time":
      print(json.dumps({"t": timed.time_once()}), flush=True)
    elif line.strip() == "finish":
      print(json.dumps(timed.finish()), flush=True)
      return 0
  return 1


def _check_moments(moments, samples) -> dict:
  """Closed-form mean vs the MC mean of the same model: within 5 standard errors."""
  import numpy as np

  mean = np.asarray(moments).reshape(samples.shape[1:])
  mc_mean = samples.mean(0)
  se = samples.std(0) / math.sqrt(samples.shape[0]) + 1e-6
  z = float(np.max(np.abs(mean - mc_mean) / se))
  return {"max_z": z, "ok": z < 5.0 + 2.0 * math.log10(mean.size + 1)}


MATMUL_ROWS = (256, 1024, 4096)


def matmul_rate(width: int = 1024) -> float:
  """The machine's float32 matmul rate in FLOP/s: the best of (M x w) @ (w x w), M in MATMUL_ROWS.

  The best over several shapes is the floor a forward pass can hope for; each
  shape gets 5 rounds of 10 products and keeps its fastest round.
  """
  import jax
  import jax.numpy as jnp

  best_rate = 0.0
  f = jax.jit(lambda a, b: a @ b)
  for rows in MATMUL_ROWS:
    a = jnp.ones((rows, width), jnp.float32)
    b = jnp.ones((width, width), jnp.float32)
    jax.block_until_ready(f(a, b))
    best = math.inf
    for _ in range(5):
      t0 = time.perf_counter()
      for _ in range(10):
        out = f(a, b)
      jax.block_until_ready(out)
      best = min(best, (time.perf_counter() - t0) / 10)
    best_rate = max(best_rate, 2 * rows * width * width / best)
  return best_rate


class _Worker:
  """A variant in a process of its own, timed on request (see ``_serve``)."""

  def __init__(self, spec: dict) -> None:
    self.log = tempfile.TemporaryFile(mode="w+")
    self.proc = subprocess.Popen(
      [sys.executable, "-m", "jaxuq", "bench", "--worker", json.dumps(spec)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self.log,
      text=True,
    )
    self.info = self._read()

  def _read(self) -> dict:
    assert self.proc.stdout is not None
    for line in self.proc.stdout:
      if line.startswith("{"):
        return json.loads(line)
    self.proc.wait()
    self.log.seek(0)
    tail = self.log.read().strip().splitlines()[-1:] or [f"exit code {self.proc.returncode}"]
    return {"error": tail[0]}

  def _ask(self, request: str) -> dict:
    assert self.proc.stdin is not None
    try:
      self.proc.stdin.write(request + "\n")
      self.proc.stdin.flush()
    except BrokenPipeError:
      pass
    return self._read()

  def time_once(self) -> float | None:
    reply = self._ask("time")
    if "t" not in reply:  # the worker failed: its error is the result
      self.info = reply
    return reply.get("t")

  def finish(self) -> dict:
    result = self.info if _failed(self.info) else self._ask("finish")
    self.proc.communicate()  # waits, and closes the pipes
    self.log.close()
    return result


class _Local:
  """A variant in this process (``--in-process``: no peak memory of its own)."""

  def __init__(self, spec: dict) -> None:
    self.timed, self.info = _start(spec)

  def time_once(self) -> float | None:
    return None if self.timed is None else self.timed.time_once()

  def finish(self) -> dict:
    return self.info if self.timed is None else self.timed.finish()


def _failed(info: dict) -> bool:
  """Whether a runner reported an error or a skip instead of being ready."""
  return "error" in info or bool(info.get("skipped"))


def run_case(specs: list[dict], isolate: bool) -> list[dict]:
  """Times the variants of one case in rounds, one run of each per round.

  Every variant is built and warmed up first (one at a time); then the rounds
  alternate the variants, so that a change in the machine's load falls on all
  of them rather than on one. A variant gets as many rounds as its ``repeats``
  and ``budget`` allow (fewer when a run is long).
  """
  runners = [_Worker(spec) if isolate else _Local(spec) for spec in specs]
  todo = [
    0 if _failed(r.info) else _repeats(s, float(r.info["first_call_s"]))
    for r, s in zip(runners, specs, strict=True)
  ]
  for round_ in range(max(todo, default=0)):
    for i, runner in enumerate(runners):
      if round_ < todo[i] and runner.time_once() is None:
        todo[i] = 0
  return [r.finish() for r in runners]


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
    return _serve(json.loads(args.worker))
  if args.render:
    summary = json.loads((args.out / "bench.json").read_text())
    _write(summary, args.out)
    return 0
  import jax

  from jaxuq.experiments import bench_cases, bench_peers

  cases, grid = _grid(args)
  # --quick checks samples, not memory: its variants share this process (no worker start-ups).
  isolate = not (args.in_process or args.quick)
  devices = jax.devices()
  rows = []
  for case in cases:
    names = bench_cases.variant_names(case, len(devices))
    if not args.no_peers:
      names += list(bench_peers.PEERS)
    if args.variants:
      names = [n for n in names if n in args.variants.split(",")]
    flops = bench_cases.forward_flops(case) * case.masks
    rate = matmul_rate(case.width)  # measured per case: the load may change during a run
    specs = [
      {
        "case": case.__dict__,
        "variant": name,
        "repeats": args.repeats,
        "budget": args.budget,
        "loop_cap": args.loop_cap,
        "check": True,
      }
      for name in names
    ]
    for name, res in zip(names, run_case(specs, isolate), strict=True):
      row = {"case": case.name, **case.__dict__, "variant": name, **res}
      row["matmul_flops_per_s"] = rate
      if "time_s" in res:
        row["samples_per_s"] = case.masks / res["time_s"]
        row["flops"] = flops
        row["fraction_of_matmul_floor"] = flops / rate / res["time_s"]
      rows.append(row)
      print(_line(row), flush=True)
  if args.append and (args.out / "bench.json").exists():
    rows = _merge(json.loads((args.out / "bench.json").read_text())["rows"], rows)
  _add_speedups(rows)
  summary = {
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in devices],
      "jax": jax.__version__,
    },
    "command": "jaxuq bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else []),
    "grid": grid,
    "rows": rows,
  }
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "bench.json").write_text(json.dumps(summary, indent=2))
  _write(summary, args.out)
  print(f"\nwrote {args.out}/bench.json, bench.md, speedup.png")
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


def _write(summary: dict, out: pathlib.Path) -> None:
  (out / "bench.md").write_text(markdown_table(summary))
  _plot(summary["rows"], out / "speedup.png")


def _merge(old: list[dict], new: list[dict]) -> list[dict]:
  """``old`` rows with those of ``new`` replacing the same (case, variant)."""
  fresh = {(r["case"], r["variant"]) for r in new}
  return [r for r in old if (r["case"], r["variant"]) not in fresh] + new


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


PIVOT_COLUMNS = (
  ("sequential", "`sequential_sample`"),
  ("loop_flax_default", "Flax `Dropout` loop, default keys"),
  ("eager", "eager loop"),
  ("mc_auto", "`mc_sample`"),
  ("mc_shared", "`mc_sample`, shared mask"),
  ("closed_form", "closed form"),
  ("torch_loop", "PyTorch loop"),
  ("torch_repeat", "PyTorch batch-repeat"),
  ("keras_loop", "Keras 3 loop"),
)


def pivot_table(rows: list[dict]) -> str:
  """One line per case: each variant's time and, in brackets, its speedup over the loop."""
  cases: dict[str, dict[str, dict]] = {}
  from jaxuq.experiments.bench_cases import MODELS

  order = {m: i for i, m in enumerate(MODELS)}
  for r in sorted(rows, key=lambda r: (order.get(r["model"], 9), r["batch"], r["masks"])):
    cases.setdefault(r["case"], {})[r["variant"]] = r
  present = [(v, title) for v, title in PIVOT_COLUMNS if any(v in c for c in cases.values())]
  lines = [
    "| case | " + " | ".join(title for _, title in present) + " |",
    "|---|" + "---:|" * len(present),
  ]
  for name, variants in cases.items():
    cells = []
    for v, _ in present:
      got = variants.get(v)
      if got is None:
        cells.append("")
      elif "time_s" not in got:
        cells.append("not run" if got.get("skipped") else "failed")
      else:
        speedup = got.get("speedup_vs_sequential", math.nan)
        cells.append(f"{got['time_s']:.3g} s ({speedup:.3g}x)")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def markdown_table(summary: dict) -> str:
  m = summary["machine"]
  lines = [
    f"Machine: {m['platform']}, {m['cpu_count']} cores, devices {m['devices']}; jax {m['jax']}.",
    f"Command: `{summary.get('command', 'jaxuq bench')}`. The floor is each case's FLOPs at the "
    "machine's best matmul rate, measured just before the case; loops marked 'from N' ran N "
    "masks, their time scaled to T.",
    "",
    pivot_table(summary["rows"]),
    "",
    "| case | variant | time (s) | samples/s | speedup vs sequential | GFLOP | % of matmul floor "
    "| matmul rate (GFLOP/s) | peak RSS (MiB) | check |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ]
  for r in summary["rows"]:
    rate = r.get("matmul_flops_per_s", summary.get("matmul_flops_per_s", math.nan))
    if "time_s" not in r:
      why = r.get("skipped") or r.get("error")
      lines.append(
        f"| {r['case']} | {r['variant']} | - | - | - | - | - | {rate / 1e9:.0f} | - | {why} |"
      )
      continue
    check = r.get("check")
    mark = "-" if not check else ("ok" if check["ok"] else "MISMATCH")
    extra = f" (from {r['extrapolated_from']})" if r.get("extrapolated_from") else ""
    lines.append(
      f"| {r['case']} | {r['variant']} | {r['time_s']:.4g}{extra} | {r['samples_per_s']:.4g} | "
      f"{r.get('speedup_vs_sequential', float('nan')):.2f}x | {r['flops'] / 1e9:.4g} | "
      f"{100 * r['fraction_of_matmul_floor']:.0f} | {rate / 1e9:.0f} | "
      f"{r['peak_rss_mib']:.0f} | {mark} |"
    )
  return "\n".join(lines) + "\n"


PLOT_VARIANTS = (
  ("mc_auto", "mc_sample"),
  ("mc_shared", "mc_sample, shared mask"),
  ("closed_form", "closed form"),
  ("loop_flax_default", "Flax Dropout loop"),
  ("torch_loop", "PyTorch loop"),
  ("keras_loop", "Keras 3 loop"),
)


def _plot(rows: list[dict], path: pathlib.Path) -> None:
  """Speedup over sequential_sample against T: a panel per model, a colour per variant.

  Solid lines are the smaller batch, dashed the larger.
  """
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return
  from jaxuq.experiments.bench_cases import MODELS

  models = [m for m in MODELS if any(r["model"] == m for r in rows)]
  batches = sorted({r["batch"] for r in rows})
  if not models:
    return
  fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, model in zip(axes[0], models, strict=True):
    for (variant, label), colour in zip(PLOT_VARIANTS, colours, strict=False):
      for j, batch in enumerate(batches):
        pts = sorted(
          (r["masks"], r["speedup_vs_sequential"])
          for r in rows
          if (r["model"], r["batch"], r["variant"]) == (model, batch, variant)
          and "speedup_vs_sequential" in r
        )
        if pts:
          ax.plot(
            *zip(*pts, strict=True),
            marker="o",
            color=colour,
            linestyle="-" if j == 0 else "--",
            label=label if j == 0 else None,
          )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(model)
    ax.set_xlabel("masks T")
  axes[0][0].set_ylabel("speedup over sequential_sample")
  style = ", ".join(f"{b}: {'solid' if j == 0 else 'dashed'}" for j, b in enumerate(batches[:2]))
  handles, labels = axes[0][0].get_legend_handles_labels()
  for ax in axes[0][1:]:
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
      if lab not in labels:
        handles.append(h)
        labels.append(lab)
  if handles:
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
  fig.suptitle(f"batch {style}", fontsize=9)
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)
