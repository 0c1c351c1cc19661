"""First calls: what compiling ``mc_sample`` costs beside compiling one forward pass.

For each case of ``jaxuq bench`` (seed MLP with dropout after every layer or the
last one, the seed CNN; batch ``--batch``, ``--masks`` masks) this runs, each in
a fresh Python process (JAX's persistent cache off) and in ``--rounds``
alternating rounds so that a change of load hits every variant alike:

* ``apply_flax``: one jitted ``model.apply`` with Flax's ``Dropout`` (the
  target's reference);
* ``apply_jaxuq``: the same with ``jaxuq.Dropout``;
* ``vmap_flax``: ``jax.jit(jax.vmap(apply))`` over ``jax.random.split(key, T)``
  with Flax's ``Dropout``: the batched sampler a user writes by hand;
* ``mc_sample``: ``jaxuq.mc_sample`` (automatic chunks) on ``jaxuq.from_linen``;
* ``mc_sample@base`` (with ``--base-src DIR``): the same from another jaxuq
  source tree, e.g. a ``git worktree`` of an earlier commit.

Each measurement gives the first call (compile + run), the warm time (median of
3 calls), their difference (the overhead) and JAX's own split of the compile
(``/jax/core/compile/*`` durations: tracing to a jaxpr, lowering to MLIR, XLA's
backend compile). The report gives medians over the rounds and each variant's
overhead over ``apply_flax``'s.

Usage: ``python benchmarks/bench_compile.py [--rounds 3] [--batch 256]
[--masks 100] [--models mlp,mlp-last,cnn] [--base-src DIR]
[--out benchmarks/results/compile_cpu.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ("apply_flax", "apply_jaxuq", "vmap_flax", "mc_sample")
EVENTS = {
  "jaxpr_trace_duration": "trace_s",
  "jaxpr_to_mlir_module_duration": "lower_s",
  "backend_compile_duration": "xla_s",
}

WORKER = r"""
import collections, json, sys, time
import jax
jax.config.update("jax_enable_compilation_cache", False)
from jax import monitoring
events = collections.defaultdict(float)
def listen(name, secs, **kwargs):
  events[name.rsplit("/", 1)[-1]] += secs
monitoring.register_event_duration_secs_listener(listen)
import jaxuq
from jaxuq.experiments.bench import cases
spec = json.loads(sys.argv[1])
case = cases.Case(spec["model"], spec["batch"], spec["masks"])
variant = spec["variant"].split("@")[0]
model, variables, x = cases.setup(case)
key = cases.sample_key()
jax.block_until_ready((variables, x))
if variant in ("apply_flax", "apply_jaxuq"):
  apply = cases.single_apply(case, flax_dropout=variant == "apply_flax")
  run = lambda: apply(variables, x, key)
elif variant == "vmap_flax":
  flax_model = cases.build_model(case, flax_dropout=True)
  one = lambda v, xx, k: flax_model.apply(v, xx, train=True, rngs={"dropout": k})
  batched = jax.jit(
    lambda v, xx, k: jax.vmap(lambda kk: one(v, xx, kk))(jax.random.split(k, case.masks))
  )
  run = lambda: batched(variables, x, key)
else:
  predict = jaxuq.from_linen(model, variables)
  run = lambda: jaxuq.mc_sample(predict, key, x, num_samples=case.masks)
events.clear()
t0 = time.perf_counter()
jax.block_until_ready(run())
first = time.perf_counter() - t0
split = dict(events)
warm = []
for _ in range(3):
  t0 = time.perf_counter()
  jax.block_until_ready(run())
  warm.append(time.perf_counter() - t0)
device = jax.devices()[0]
print(json.dumps({"first_s": first, "warm_s": sorted(warm)[1], "events": split,
                  "device": f"{device.platform} {device.device_kind}", "jax": jax.__version__}))
"""


def positive_int(text: str) -> int:
  """argparse type: an int > 0."""
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value <= 0:
    raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
  return value


def model_list(text: str) -> list[str]:
  """argparse type: a comma list of the bench's models."""
  models = [m.strip() for m in text.split(",") if m.strip()]
  bad = [m for m in models if m not in ("mlp", "mlp-last", "cnn")]
  if not models or bad:
    raise argparse.ArgumentTypeError(f"choose from mlp, mlp-last, cnn; got {text!r}")
  return models


def measure(spec: dict, src: pathlib.Path) -> dict:
  """One fresh process: the variant's first call, warm time and compile split."""
  # the source tree first; what was on PYTHONPATH stays (gpu.sh's tqdm stand-in, say)
  env = dict(
    os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
  )
  done = subprocess.run(
    [sys.executable, "-c", WORKER, json.dumps(spec)],
    env=env,
    capture_output=True,
    text=True,
    cwd=src,
  )
  if done.returncode != 0:
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    raise SystemExit(f"bench_compile: {spec} failed (exit {done.returncode}):\n{tail}")
  got = json.loads(done.stdout.strip().splitlines()[-1])
  row = {**spec, "first_s": got["first_s"], "warm_s": got["warm_s"], "device": got["device"],
         "jax": got["jax"]}  # fmt: skip
  row["overhead_s"] = row["first_s"] - row["warm_s"]
  for event, name in EVENTS.items():
    row[name] = got["events"].get(event, 0.0)
  return row


def summarize(rows: list[dict]) -> list[dict]:
  """Medians over rounds per (model, variant), with the overhead over ``apply_flax``'s."""
  keys = ("first_s", "warm_s", "overhead_s", *EVENTS.values())
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault((r["model"], r["variant"]), []).append(r)
  out = []
  for (model, variant), rs in groups.items():
    out.append(
      {
        "model": model,
        "variant": variant,
        "rounds": len(rs),
        **{k: statistics.median(r[k] for r in rs) for k in keys},
      }
    )
  flax = {s["model"]: s["overhead_s"] for s in out if s["variant"] == "apply_flax"}
  for s in out:
    if flax.get(s["model"]):
      s["overhead_vs_apply_flax"] = s["overhead_s"] / flax[s["model"]]
  return out


def table(summary: list[dict]) -> str:
  lines = [
    "| model | variant | first call (s) | warm (s) | overhead (s) | trace | lower | XLA | "
    "overhead / apply_flax's |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for s in summary:
    ratio = s.get("overhead_vs_apply_flax")
    lines.append(
      f"| {s['model']} | {s['variant']} | {s['first_s']:.3f} | {s['warm_s']:.4f} | "
      f"{s['overhead_s']:.3f} | {s['trace_s']:.3f} | {s['lower_s']:.3f} | {s['xla_s']:.3f} | "
      f"{'' if ratio is None else f'{ratio:.2f}x'} |"
    )
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=positive_int, default=3)
  parser.add_argument("--batch", type=positive_int, default=256)
  parser.add_argument("--masks", type=positive_int, default=100)
  parser.add_argument("--models", type=model_list, default="mlp,mlp-last,cnn")
  parser.add_argument("--base-src", type=pathlib.Path, help="another jaxuq source tree")
  parser.add_argument(
    "--out", type=pathlib.Path, help="default benchmarks/results/compile_<platform>.json"
  )
  args = parser.parse_args()
  if args.out is None:  # a GPU run does not overwrite the committed CPU results
    import jax  # noqa: PLC0415

    args.out = REPO / f"benchmarks/results/compile_{jax.devices()[0].platform}.json"
  variants = [(v, REPO) for v in VARIANTS]
  if args.base_src is not None:
    variants.append(("mc_sample@base", args.base_src.resolve()))
  rows = []
  for r in range(args.rounds):
    for model in args.models:
      for variant, src in variants:
        spec = {"model": model, "batch": args.batch, "masks": args.masks, "variant": variant}
        row = measure(spec, src)
        rows.append({**row, "round": r})
        print(
          f"round {r} {model:8s} {variant:15s} first {row['first_s']:.3f} s  "
          f"overhead {row['overhead_s']:.3f} s  xla {row['xla_s']:.3f} s",
          flush=True,
        )
  summary = summarize(rows)
  text = table(summary)
  print(text)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  result = {
    "command": "python benchmarks/bench_compile.py " + " ".join(sys.argv[1:]),
    "host": platform.platform(),
    "device": rows[0]["device"] if rows else None,
    "jax": rows[0]["jax"] if rows else None,
    "cores": os.cpu_count(),
    "summary": summary,
    "rows": rows,
    "table": text,
  }
  args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
  main()
