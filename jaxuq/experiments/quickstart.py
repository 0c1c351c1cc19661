"""``jaxuq quickstart``: MC dropout on the seed MLP, one vmap vs a Python loop.

Builds the seed's regression MLP (1 -> depth x width ReLU, dropout after each
hidden layer -> 1) with random weights, samples it with ``mc_sample`` and with
``sequential_sample`` from the same key, checks that they agree, and prints the
time of each (after one warm-up call, median of ``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

from jaxuq.experiments._args import positive_int, rate
from jaxuq.experiments._args import seed as seed_type

HELP = "MC dropout on the seed MLP (untrained): mc_sample vs sequential_sample"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  a = parser.add_argument
  a("--samples", type=positive_int, default=100, help="MC passes (default 100)")
  a("--batch", type=positive_int, default=256, help="inputs per pass (default 256)")
  a("--width", type=positive_int, default=1024, help="hidden width (default 1024)")
  a("--depth", type=positive_int, default=4, help="hidden layers (default 4)")
  a("--rate", type=rate, default=0.5, help="dropout rate (default 0.5)")
  a("--seed", type=seed_type, default=0, help="integer seed (default 0)")
  a("--repeats", type=positive_int, default=3, help="timed repeats (default 3)")
  parser.add_argument("--out", type=pathlib.Path, help="folder for summary.json")


def _median_times(fns, repeats: int) -> list[float]:
  """Median wall time of each function, after a warm-up call, the calls alternating."""
  import jax

  for f in fns:
    jax.block_until_ready(f())  # warm-up: compile
  times: list[list[float]] = [[] for _ in fns]
  for _ in range(repeats):  # alternate, so that machine drift hits every arm alike
    for f, ts in zip(fns, times, strict=True):
      t0 = time.perf_counter()
      jax.block_until_ready(f())
      ts.append(time.perf_counter() - t0)
  return [statistics.median(ts) for ts in times]


def run(args: argparse.Namespace) -> int:
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np

  import jaxuq

  class MLP(nn.Module):
    width: int
    depth: int
    rate: float

    @nn.compact
    def __call__(self, x):
      for _ in range(self.depth):
        x = jaxuq.Dropout(self.rate, deterministic=True)(nn.relu(nn.Dense(self.width)(x)))
      return nn.Dense(1)(x)

  model = MLP(args.width, args.depth, args.rate)
  key = jax.random.key(args.seed)
  init_key, sample_key = jax.random.split(key)
  x = jnp.linspace(-2.0, 3.0, args.batch)[:, None]
  predict = jaxuq.from_linen(model, model.init(init_key, x))

  vmapped = lambda: jaxuq.mc_sample(predict, sample_key, x, num_samples=args.samples)  # noqa: E731
  looped = lambda: jaxuq.sequential_sample(predict, sample_key, x, num_samples=args.samples)  # noqa: E731
  t_vmap, t_loop = _median_times([vmapped, looped], args.repeats)
  a, b = np.asarray(vmapped()), np.asarray(looped())
  max_diff = float(np.max(np.abs(a - b)))
  std = np.asarray(jaxuq.predictive_std(a))[:, 0]

  summary = {
    "settings": vars(args) | {"out": str(args.out) if args.out else None},
    "chunk_size": jaxuq.auto_chunk_size(predict, sample_key, x, num_samples=args.samples),
    "devices": [str(d) for d in jax.devices()],
    "mc_sample_s": t_vmap,
    "sequential_sample_s": t_loop,
    "speedup": t_loop / t_vmap,
    "max_abs_diff": max_diff,
    "mean_std": float(std.mean()),
  }
  print(
    f"seed MLP 1 -> {args.depth}x{args.width} -> 1, dropout {args.rate}, "
    f"batch {args.batch}, {args.samples} masks on {jax.devices()[0].platform}"
  )
  print(f"  mc_sample          {t_vmap:8.3f} s")
  print(f"  sequential_sample  {t_loop:8.3f} s   (mc_sample is {t_loop / t_vmap:.2f}x faster)")
  print(f"  max |difference|   {max_diff:.2e}   mean predictive std {std.mean():.4f}")
  if args.out:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
  return 0
