"""Streamed MC summaries over a large evaluation set: time, examples/s and peak memory.

The seed MLP (1 -> 4 x 1024 ReLU -> 1, dropout 0.5 after the last hidden layer
or after every one) predicts ``--examples`` inputs with ``--samples`` masks
each; the per-example mean and variance are computed two ways, each in a fresh
process of its own (so that its peak resident memory is its own):

* ``stream``: ``jaxuq.mc_reduce_dataset`` with ``moments_reducer``, batches of
  ``--batch`` inputs, chunks of ``--chunk`` samples: no more than one chunk of
  samples is ever alive;
* ``materialize``: ``jaxuq.mc_sample`` per batch (all samples of the batch
  stored), then ``predictive_mean`` / ``predictive_std``: what a user writes
  today (only run where ``--materialize`` is given).

Usage: ``python benchmarks/bench_stream.py --model last --examples 1000000
--samples 1000 [--materialize] [--out benchmarks/results/stream.json]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import resource
import subprocess
import sys
import time


def _model(last_only: bool):
  import flax.linen as nn

  import jaxuq

  class SeedMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      for i in range(4):
        x = nn.relu(nn.Dense(1024)(x))
        if not last_only or i == 3:
          x = jaxuq.Dropout(0.5, deterministic=not train)(x)
      return nn.Dense(1)(x)

  return SeedMLP()


def arm(args: argparse.Namespace) -> dict:
  """Runs one arm in this process and returns its measurements."""
  import jax
  import numpy as np

  import jaxuq

  model = _model(args.model == "last")
  x = np.linspace(-2.0, 3.0, args.examples, dtype=np.float32)[:, None]
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x[:2]))
  key = jax.random.key(1)
  t0 = time.perf_counter()
  if args.arm == "stream":
    out = jaxuq.mc_reduce_dataset(
      f,
      key,
      jaxuq.batches_from_array(x, args.batch),
      num_samples=args.samples,
      chunk_size=args.chunk,
      reducer=jaxuq.moments_reducer(),
      per_example_keys=False,
      progress=False,
    )
    mean, std = out["mean"], np.sqrt(out["var"])
  else:
    means, stds = [], []
    for b, start in enumerate(range(0, args.examples, args.batch)):
      s = jaxuq.mc_sample(
        f, jax.random.fold_in(key, b), x[start : start + args.batch], num_samples=args.samples
      )
      means.append(np.asarray(jaxuq.predictive_mean(s)))
      stds.append(np.asarray(jaxuq.predictive_std(s)))
    mean, std = np.concatenate(means), np.concatenate(stds)
  seconds = time.perf_counter() - t0
  return {
    "arm": args.arm,
    "seconds": seconds,
    "examples_per_s": args.examples / seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    "mean_of_mean": float(np.mean(mean)),
    "mean_of_std": float(np.mean(std)),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", choices=("last", "all"), default="last")
  parser.add_argument("--examples", type=int, default=100_000)
  parser.add_argument("--samples", type=int, default=100)
  parser.add_argument("--batch", type=int, default=10_000)
  parser.add_argument("--chunk", type=int, help="samples per chunk (default: automatic)")
  parser.add_argument("--materialize", action="store_true", help="also time mc_sample + summaries")
  parser.add_argument("--arm", help=argparse.SUPPRESS)
  parser.add_argument("--out", type=pathlib.Path)
  args = parser.parse_args()
  if args.arm:
    print(json.dumps(arm(args)))
    return
  rows = []
  for name in ["stream"] + (["materialize"] if args.materialize else []):
    cmd = [sys.executable, __file__, "--arm", name] + [
      f"--{k}={v}"
      for k, v in vars(args).items()
      if k in ("model", "examples", "samples", "batch", "chunk") and v is not None
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    r = rows[-1]
    print(
      f"{name:12s} {r['seconds']:8.1f} s  {r['examples_per_s']:10.0f} ex/s  "
      f"peak {r['peak_rss_mib']:7.0f} MiB  mean std {r['mean_of_std']:.4f}",
      flush=True,
    )
  if args.out:
    import jax

    settings = {k: v for k, v in vars(args).items() if k not in ("arm", "out")}
    result = {"machine": platform.platform(), "jax": jax.__version__, "settings": settings}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps(existing + [result | {"rows": rows}], indent=2))


if __name__ == "__main__":
  main()
