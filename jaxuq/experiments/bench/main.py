"""The bench's run: the plan's cases one after another, the summary written after each."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from jaxuq.experiments.bench.args import plan


def run(args: argparse.Namespace) -> int:
  # Before JAX starts: GPU memory on demand, so PyTorch's peers find some.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  from jaxuq.experiments.bench import report, timing, workers  # noqa: PLC0415

  if args.worker:
    spec = json.loads(args.worker)
    timing.set_compilation_cache(spec.get("compilation_cache", False))
    return workers.serve(spec)
  if args.render:
    report.render(json.loads((args.out / "bench.json").read_text()), args.out)
    return 0
  old_settings = timing.set_compilation_cache(args.compilation_cache)
  try:
    return _run(args)
  finally:
    timing.restore_compilation_cache(old_settings)


def _run(args: argparse.Namespace) -> int:
  from jaxuq.experiments.bench import report  # noqa: PLC0415

  started = time.perf_counter()  # --time-limit counts the floors and HLO sizes too
  the_plan = plan(args)
  _check_out(args.out)
  _check_variants(the_plan, args)
  old: dict = {}
  if args.append and (args.out / "bench.json").exists():
    old = json.loads((args.out / "bench.json").read_text())
  summary = _start_summary(args, the_plan)
  if old:
    _check_same_machine(old, summary, args.out)
    models = {h["model"] for h in summary["hlo"]}
    summary["hlo"] = [h for h in old.get("hlo", []) if h["model"] not in models] + summary["hlo"]
  old_rows = old.get("rows", [])
  print(_describe(summary), flush=True)
  rows: list[dict] = []
  for case in the_plan.cases:
    if args.time_limit and time.perf_counter() - started > args.time_limit:
      summary["cut_at_time_limit"] = [c.name for c in the_plan.cases[the_plan.cases.index(case) :]]
      print(f"time limit {args.time_limit:g} s reached: not run {summary['cut_at_time_limit']}")
      break
    rows += _run_case(case, the_plan, args, summary["matmul_floors"]["default"])
    summary["rows"] = report.merge(old_rows, rows)
    report.add_speedups(summary["rows"])
    report.write(summary, args.out, plot=False)  # what ran survives a later kill
  report.write(summary, args.out)
  print(f"\nwrote {args.out}/bench.json, bench.md, speedup.png")
  for t in summary["targets"]:
    print(
      f"target: {t['target']} ({t['case']}): {t['value']:.3g} (goal {t['goal']:g}) "
      f"{'met' if t['met'] else 'NOT met'}"
    )
  bad = report.failures(summary["rows"])
  for r in bad:
    print(f"FAILED: {r['case']} {r['variant']}: {r.get('check') or r.get('error')}")
  return 1 if bad else 0


def _check_out(out) -> None:
  """Raises ``OSError`` naming ``--out`` unless it is a folder this run can write (before any work)."""
  try:
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".bench_write_test"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise OSError(f"--out {out} is not a folder this run can write: {e}") from None


def _case_variants(case, the_plan, args: argparse.Namespace) -> list[str]:
  """The variants the case runs: its own, the peers unless ``--no-peers``, ``--variants``'s."""
  import jax  # noqa: PLC0415

  from jaxuq.experiments.bench import cases, peers  # noqa: PLC0415

  names = cases.variant_names(case, len(jax.devices()))
  if not args.no_peers:
    names += list(peers.PEERS)
  if the_plan.variants is not None:
    names = [n for n in names if n in the_plan.variants]
  return names


def _check_variants(the_plan, args: argparse.Namespace) -> None:
  """Refuses a plan in which a case would run none of ``--variants`` (an empty table, exit 0)."""
  empty = [c.name for c in the_plan.cases if not _case_variants(c, the_plan, args)]
  if empty:
    raise ValueError(
      f"--variants {','.join(the_plan.variants or ())}: the case(s) {', '.join(empty)} run none "
      "of them here (closed_form needs the last-layer MLP, mc_sharded several devices, "
      "mc_chunkN more than N masks, peers no --no-peers); choose variants those cases have"
    )


def _check_same_machine(old: dict, summary: dict, out) -> None:
  """``--append`` only adds rows measured on the same device, precision and versions."""
  keys = ("platform", "device_kind", "devices", "matmul_precision", "versions", "cpu_count")
  was = {
    **old.get("environment", {}),
    **{k: old.get(k) for k in ("first_call", "compilation_cache")},
  }
  now = {
    **summary["environment"],
    **{k: summary.get(k) for k in ("first_call", "compilation_cache")},
  }
  differ = [k for k in (*keys, "first_call", "compilation_cache") if was.get(k) != now.get(k)]
  if differ:
    raise ValueError(
      f"--append: {out}/bench.json was measured with another {', '.join(differ)} "
      f"({', '.join(f'{k}: {was.get(k)!r}' for k in differ)}); its ratios would mix machines: "
      "write to another --out"
    )


def _start_summary(args: argparse.Namespace, the_plan) -> dict:
  """The machine, precision, floors and HLO sizes: what holds for every case of the run."""
  from jaxuq.experiments.bench import cases, timing, workers  # noqa: PLC0415

  hlo = []
  for model in dict.fromkeys(c.model for c in the_plan.cases):
    case = next(c for c in the_plan.cases if c.model == model)
    ours, flax = cases.hlo_chars(case, flax_dropout=False), cases.hlo_chars(case, True)
    hlo.append({"model": model, "jaxuq": ours, "flax": flax, "ratio": ours / flax})
  return {
    "environment": timing.environment(),
    "command": "jaxuq bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else []),
    "plan": the_plan.summary(),
    "compilation_cache": "on" if args.compilation_cache else "off",
    "first_call": workers.FRESH_PROCESS if the_plan.isolate else workers.CACHES_CLEARED,
    "matmul_floors": timing.matmul_floors(the_plan.cases[0].width),
    "hlo": hlo,
    "rows": [],
  }


def _describe(summary: dict) -> str:
  from jaxuq.experiments.bench import report  # noqa: PLC0415

  env = summary["environment"]
  floors = ", ".join(f"{k} {v / 1e9:.4g}" for k, v in summary["matmul_floors"].items())
  hlo = ", ".join(
    f"{h['model']} {h['jaxuq']}/{h['flax']} ({h['ratio']:.2f}x)" for h in summary["hlo"]
  )
  return (
    f"device {env['device_kind']} ({env['platform']}), float32 matmuls in {env['matmul_precision']}"
    f"; matmul GFLOP/s {floors}\nHLO chars jaxuq.Dropout/Flax Dropout: {hlo}\n"
    f"first calls: {report.FIRST_CALL_WORDS[summary['first_call']]}; JAX's persistent "
    f"compilation cache {summary['compilation_cache']}"
  )


def _run_case(case, the_plan, args: argparse.Namespace, run_rate: float) -> list[dict]:
  """The case's rows. The floor's rate is measured again on a CPU (whose load may
  change during a run); an accelerator's is the run's (``run_rate``)."""
  import jax  # noqa: PLC0415

  from jaxuq.experiments.bench import cases, report, timing, workers  # noqa: PLC0415

  names = _case_variants(case, the_plan, args)
  flops = cases.case_flops(case)
  rate = timing.matmul_rate(case.width) if jax.devices()[0].platform == "cpu" else run_rate
  spec = {
    "case": case.__dict__,
    "repeats": the_plan.repeats,
    "budget": the_plan.budget,
    "loop_cap": the_plan.loop_cap,
    "compilation_cache": args.compilation_cache,
    "check": True,
  }
  rows = []
  results = workers.run_case([{**spec, "variant": n} for n in names], the_plan.isolate)
  for name, res in zip(names, results, strict=True):
    row = {"case": case.name, **case.__dict__, "variant": name, **res, "matmul_flops_per_s": rate}
    if "time_s" in res:
      one_pass = res["masks_timed"] == 1 or name == "closed_form"
      row["flops"] = flops.one_pass if one_pass else flops.samples(case.masks)
      if name != "closed_form":  # the closed form draws no samples
        row["samples_per_s"] = res["masks_timed"] / res["time_s"]
      row["fraction_of_matmul_floor"] = row["flops"] / rate / res["time_s"]
    rows.append(row)
    print(report.line(row), flush=True)
  return rows
