"""The bench's results: rows with speedups, the targets, ``bench.json``, ``bench.md``, the plot."""

from __future__ import annotations

import json
import math
import pathlib

from jaxuq.experiments.bench.cases import MODELS
from jaxuq.experiments.bench.peers import PEERS

FLAX_APPLY, JAXUQ_APPLY = "apply_flax", "apply_jaxuq"

PIVOT_COLUMNS = (
  ("sequential", "`sequential_sample`"),
  ("loop_flax_default", "Flax `Dropout` loop, default keys"),
  ("eager", "eager loop"),
  ("mc_auto", "`mc_sample`"),
  ("mc_shared", "`mc_sample`, shared mask"),
  ("closed_form", "closed form"),
  ("torch_loop", "PyTorch loop"),
  ("torch_loop_tf32", "PyTorch loop, TF32"),
  ("torch_repeat", "PyTorch batch-repeat"),
  ("torch_repeat_tf32", "PyTorch batch-repeat, TF32"),
  ("keras_loop", "Keras 3 loop"),
  (FLAX_APPLY, "one jitted apply, Flax `Dropout`"),
  (JAXUQ_APPLY, "one jitted apply, `jaxuq.Dropout`"),
)

PLOT_VARIANTS = (
  ("mc_auto", "mc_sample"),
  ("mc_shared", "mc_sample, shared mask"),
  ("closed_form", "closed form"),
  ("loop_flax_default", "Flax Dropout loop"),
  ("torch_loop", "PyTorch loop"),
  ("torch_repeat_tf32", "PyTorch batch-repeat, TF32"),
  ("keras_loop", "Keras 3 loop"),
)

# Targets of issue 13 (ratios within one run).
FIRST_CALL_VS_FLAX_APPLY = 1.3  # mc_sample's first call / a jitted Flax-Dropout apply's (CPU)
HLO_VS_FLAX = 1.5  # HLO text of a jaxuq.Dropout forward pass / Flax's
GPU_FIRST_CALL_S = 3.0

FIRST_CALL_WORDS = {
  "fresh process": "each variant in a fresh process of its own",
  "caches cleared": "the variants in one process, JAX's caches cleared before each first call "
  "(on a GPU, XLA's autotuning results stay in the process; a PyTorch or Keras peer after the "
  "first finds its runtime started)",
  "not recorded": "not recorded by this older run",
}


def add_speedups(rows: list[dict]) -> None:
  """Each timed row's speedup over ``sequential_sample`` on its case (not the single applies)."""
  base = {r["case"]: r["time_s"] for r in rows if r["variant"] == "sequential" and "time_s" in r}
  for r in rows:
    if "time_s" in r and r["case"] in base and r.get("masks_timed", r["masks"]) == r["masks"]:
      r["speedup_vs_sequential"] = base[r["case"]] / r["time_s"]


def merge(old: list[dict], new: list[dict]) -> list[dict]:
  """``old`` rows with those of ``new`` replacing the same (case, variant)."""
  fresh = {(r["case"], r["variant"]) for r in new}
  return [r for r in old if (r["case"], r["variant"]) not in fresh] + new


def _get(rows: list[dict], case: str, variant: str, key: str) -> float | None:
  for r in rows:
    if (r["case"], r["variant"]) == (case, variant) and key in r:
      return float(r[key])
  return None


def _overhead(rows: list[dict], case: str, variant: str) -> float | None:
  """A variant's first call minus its warm time (``None`` if either is missing)."""
  first, warm = _get(rows, case, variant, "first_call_s"), _get(rows, case, variant, "time_s")
  return None if first is None or warm is None else first - warm


def targets(summary: dict) -> list[dict]:
  """Issue 13's targets that the run's rows can tell: value, goal and whether it is met."""
  rows, out = summary["rows"], []
  gpu = summary.get("environment", {}).get("platform") == "gpu"

  def add(target: str, case: str, value: float | None, goal: float, below: bool) -> None:
    if value is not None:
      met = value <= goal if below else value >= goal
      out.append({"target": target, "case": case, "value": value, "goal": goal, "met": met})

  for case in dict.fromkeys(r["case"] for r in rows):
    mc = _get(rows, case, "mc_auto", "first_call_s")
    flax = _get(rows, case, FLAX_APPLY, "first_call_s")
    if case.startswith("mlp ") and mc is not None and flax:
      add(
        "first call: mc_sample / jitted Flax-Dropout apply",
        case,
        mc / flax,
        FIRST_CALL_VS_FLAX_APPLY,
        True,
      )
    # The same ratio without the run itself (T masks cost T applies' work):
    # what compiling the sampler costs beyond compiling one forward pass.
    mc_over, flax_over = _overhead(rows, case, "mc_auto"), _overhead(rows, case, FLAX_APPLY)
    if mc_over is not None and flax_over:
      add(
        "compile overhead (first call - warm): mc_sample / jitted Flax-Dropout apply",
        case,
        mc_over / flax_over,
        FIRST_CALL_VS_FLAX_APPLY,
        True,
      )
    if gpu:
      add("first call of mc_sample (s), GPU", case, mc, GPU_FIRST_CALL_S, True)
      warm = _get(rows, case, "mc_auto", "time_s")
      peer = _get(rows, case, "torch_repeat_tf32", "time_s")
      if warm and peer:
        add("speed: mc_sample / PyTorch batch-repeat TF32", case, peer / warm, 1.0, False)
      if case == "mlp b256 T100":
        speedup = _get(rows, case, "mc_auto", "speedup_vs_sequential")
        add("speedup of mc_sample over sequential_sample", case, speedup, 100.0, False)
      if case == "mlp b5000 T1000":
        frac = _get(rows, case, "mc_auto", "fraction_of_matmul_floor")
        add("fraction of the default-precision floor", case, frac, 0.85, False)
  for h in summary.get("hlo", []):
    add("HLO chars: jaxuq.Dropout / Flax Dropout", h["model"], h["ratio"], HLO_VS_FLAX, True)
  return out


def _number(row: dict, key: str, form: str) -> str:
  """``row[key]`` formatted, or '-' where the row has none (a single apply's speedup)."""
  value = row.get(key)
  return "-" if value is None or math.isnan(value) else form.format(value)


def _mib(row: dict, unit: str = " MiB") -> str:
  """A row's peak memory: its own (a process of its own), else '-' (shared with other variants)."""
  peak = row.get("peak_rss_mib")
  return "-" if peak is None else f"{peak:.0f}{unit}"


def line(row: dict) -> str:
  """One printed line per result row."""
  if "time_s" not in row:
    return f"{row['case']:<20} {row['variant']:<18} {row.get('skipped') or row.get('error')}"
  check = row.get("check", {})
  mark = "" if not check else ("ok" if check.get("ok") else "MISMATCH")
  return (
    f"{row['case']:<20} {row['variant']:<18} {row['time_s']:9.4f} s  "
    f"first {row['first_call_s']:7.3f} s  {_mib(row):>10}  "
    f"floor {row['fraction_of_matmul_floor']:6.1%}  {mark}"
  )


def _ordered(rows: list[dict]) -> dict[str, dict[str, dict]]:
  order = {m: i for i, m in enumerate(MODELS)}
  cases: dict[str, dict[str, dict]] = {}
  for r in sorted(rows, key=lambda r: (order.get(r["model"], 9), r["batch"], r["masks"])):
    cases.setdefault(r["case"], {})[r["variant"]] = r
  return cases


def pivot_table(rows: list[dict], first_call: bool = False) -> str:
  """One line per case: each variant's warm time and its speedup over the loop.

  With ``first_call``, each variant's first call (compile + run) instead.
  """
  cases = _ordered(rows)
  # Columns of variants that ran somewhere (those skipped everywhere are listed below the table).
  present = [
    (v, title)
    for v, title in PIVOT_COLUMNS
    if any("time_s" in c.get(v, {}) or "error" in c.get(v, {}) for c in cases.values())
  ]
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
      elif first_call:
        n = got.get("first_call_masks")
        masks = f" ({n} masks)" if n not in (None, 1, got["masks"]) else ""
        cells.append(f"{got['first_call_s']:.3g} s{masks}")
      elif "speedup_vs_sequential" in got:
        cells.append(f"{got['time_s']:.3g} s ({got['speedup_vs_sequential']:.3g}x)")
      else:
        cells.append(f"{got['time_s']:.3g} s")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  shown = {v for v, _ in present}
  skipped = {r["variant"]: r["skipped"] for r in rows if r.get("skipped")}
  for v, why in skipped.items():
    if v not in shown:
      lines.append(f"\n{v}: {why}")
  return "\n".join(lines) + "\n"


def _malloc(env: dict) -> str:
  """The malloc setting of a CPU run (huge pages or not), or nothing for older reports."""
  if "glibc_tunables" not in env or env["platform"] != "cpu":
    return ""
  return f" GLIBC_TUNABLES: {env['glibc_tunables'] or 'unset'}."


def _header(summary: dict) -> list[str]:
  env = summary["environment"]
  versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
  floors = summary.get("matmul_floors", {})
  floor_text = ", ".join(f"{k} {v / 1e9:.4g}" for k, v in floors.items()) or "not recorded"
  return [
    f"Device: {env['device_kind']} ({env['platform']}; {len(env['devices'])} device(s)); host "
    f"{env['host']}, {env['cpu_count']} cores.",
    f"Float32 matmul precision in force: {env['matmul_precision']} (JAX setting "
    f"`{env['matmul_precision_setting']}`). Versions: {versions}.{_malloc(env)}",
    f"Matmul rate (GFLOP/s) at JAX's default precision, `highest` and bfloat16: {floor_text}.",
    f"Command: `{summary.get('command', 'jaxuq bench')}`. JAX's persistent compilation cache: "
    f"{summary.get('compilation_cache', 'not recorded')}. First calls (compile + run): "
    f"{FIRST_CALL_WORDS.get(summary.get('first_call', ''), '?')}.",
    "The floor of a case is its FLOPs (the layers before the first dropout once, the rest once "
    "per mask; one pass for a single apply and for the closed form) at the default-precision "
    "matmul rate (on a CPU measured again just before each case); loops marked 'from N' ran "
    "N masks, their time scaled to T (their first call is of those N masks, as marked).",
  ]


def markdown_table(summary: dict) -> str:
  """``bench.md``: the machine, the targets, warm and first-call pivots, HLO sizes, every row."""
  lines = _header(summary) + ["", "Targets:", ""]
  for t in summary.get("targets", []):
    mark = "met" if t["met"] else "NOT met"
    lines.append(f"- {t['target']} ({t['case']}): {t['value']:.3g}, goal {t['goal']:g}: {mark}")
  lines += ["", "Warm time of T masks (speedup over `sequential_sample`):", ""]
  lines += [pivot_table(summary["rows"]), "First call (compile + run):", ""]
  lines += [pivot_table(summary["rows"], first_call=True)]
  if summary.get("hlo"):
    lines += ["| model | HLO chars, `jaxuq.Dropout` | HLO chars, Flax `Dropout` | ratio |"]
    lines += ["|---|---:|---:|---:|"]
    for h in summary["hlo"]:
      lines.append(f"| {h['model']} | {h['jaxuq']} | {h['flax']} | {h['ratio']:.2f} |")
    lines.append("")
  lines += [
    "| case | variant | time (s) | first call (s) | samples/s | speedup vs sequential | GFLOP "
    "| % of matmul floor | matmul rate (GFLOP/s) | peak RSS (MiB) | check |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ]
  for r in summary["rows"]:
    rate = r.get("matmul_flops_per_s", math.nan)
    if "time_s" not in r:
      why = r.get("skipped") or r.get("error")
      lines.append(
        f"| {r['case']} | {r['variant']} | - | - | - | - | - | - | {rate / 1e9:.0f} | - | {why} |"
      )
      continue
    check = r.get("check")
    mark = "-" if not check else ("ok" if check["ok"] else "MISMATCH")
    extra = f" (from {r['extrapolated_from']})" if r.get("extrapolated_from") else ""
    lines.append(
      f"| {r['case']} | {r['variant']} | {r['time_s']:.4g}{extra} | {r['first_call_s']:.3g} | "
      f"{_number(r, 'samples_per_s', '{:.4g}')} | {_number(r, 'speedup_vs_sequential', '{:.2f}x')} | "
      f"{r['flops'] / 1e9:.4g} | {100 * r['fraction_of_matmul_floor']:.0f} | {rate / 1e9:.0f} | "
      f"{_mib(r, unit='')} | {mark} |"
    )
  return "\n".join(lines) + "\n"


def write(summary: dict, out: pathlib.Path, plot: bool = True) -> None:
  """``bench.json`` and ``bench.md`` into ``out``, and ``speedup.png`` if ``plot``."""
  out.mkdir(parents=True, exist_ok=True)
  summary["targets"] = targets(summary)
  (out / "bench.json").write_text(json.dumps(summary, indent=2))
  render(summary, out, plot)


def _upgrade(summary: dict) -> dict:
  """A summary written before the bench named its device and precision, in today's keys."""
  if "environment" in summary or "machine" not in summary:
    return summary
  m = summary["machine"]
  env = {
    "platform": "cpu",
    "device_kind": "cpu",
    "devices": m.get("devices", []),
    "host": m.get("platform"),
    "cpu_count": m.get("cpu_count"),
    "matmul_precision": "float32",
    "matmul_precision_setting": "default",
    "versions": {"jax": m.get("jax")},
  }
  return {"environment": env, "first_call": "not recorded", **summary}


def render(summary: dict, out: pathlib.Path, plot: bool = True) -> None:
  """``bench.md`` (and the plot) from a summary."""
  summary = _upgrade(summary)
  (out / "bench.md").write_text(markdown_table(summary))
  if plot:
    from jaxuq.plot import speedup_figure

    speedup_figure(summary["rows"], out / "speedup.png", models=MODELS, variants=PLOT_VARIANTS)


def failures(rows: list[dict]) -> list[dict]:
  """Rows that fail the run: a jaxuq variant that errs or mismatches (a peer's error is a result)."""
  return [
    r
    for r in rows
    if not r.get("check", {}).get("ok", True) or ("error" in r and r["variant"] not in PEERS)
  ]
