"""Exact dropout benchmarks: enumeration throughput, closed form vs mc_sample.

1. Masks per second of ``jaxuq.exact.exact_moments`` (every mask, streamed,
   float64 reductions) for m = 16, 20, 24 droppable units: a 2-hidden-layer
   ReLU MLP 1 -> m/2 -> m/2 -> 1 with dropout 0.5 after each hidden layer, one
   input. First call (tracing + compilation included) and the median of warm
   calls.
2. The seed MLP 1 -> 4x1024 ReLU -> 1 with dropout 0.5 after the last hidden
   layer only: ``closed_form_moments`` (one deterministic pass) against
   ``mc_sample`` with 1000 masks, at the given batch sizes (default 5000 and
   500). Each is timed after one warm-up call.

Usage: ``python benchmarks/bench_exact.py [--units 16 20 24] [--batch 5000 500]
[--samples 1000] [--key-impl threefry2x32] [--out benchmarks/results/exact.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxuq
import jaxuq.exact as ex


class MLP(nn.Module):
  widths: tuple[int, ...]
  rate: float = 0.5
  last_only: bool = False

  @nn.compact
  def __call__(self, x):
    for i, w in enumerate(self.widths):
      x = nn.relu(nn.Dense(w)(x))
      if not self.last_only or i == len(self.widths) - 1:
        x = jaxuq.Dropout(self.rate, deterministic=True)(x)
    return nn.Dense(1)(x)


def _time(f, repeats: int) -> tuple[float, float]:
  """(first call incl. compilation, median of ``repeats`` warm calls) in seconds."""
  t0 = time.perf_counter()
  jax.block_until_ready(f())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f())
    times.append(time.perf_counter() - t0)
  return first, statistics.median(times) if times else first


def bench_enumeration(units: list[int], repeats: int) -> list[dict]:
  rows = []
  for m in units:
    model = MLP((m // 2, m - m // 2))
    x = jnp.full((1, 1), 0.5)
    f = jaxuq.from_linen(model, model.init(jax.random.key(0), x))
    first, warm = _time(lambda f=f, x=x: ex.exact_moments(f, x).mean, repeats)
    row = {
      "units": m,
      "masks": 2**m,
      "first_call_s": first,
      "warm_s": warm,
      "masks_per_s": 2**m / warm,
    }
    rows.append(row)
    print(
      f"  m={m:2d}: 2^{m} = {2**m:>10,} masks  first {first:6.2f} s  warm {warm:6.2f} s  "
      f"{2**m / warm / 1e6:6.2f} M masks/s",
      flush=True,
    )
  return rows


def bench_closed_form(
  batches: list[int], samples: int, key_impl: str, repeats: int, seq_samples: int
) -> list[dict]:
  rows = []
  model = MLP((1024,) * 4, last_only=True)
  params = model.init(jax.random.key(0), jnp.ones((1, 1)))
  f = jaxuq.from_linen(model, params)
  key = jax.random.key(1, impl=key_impl)
  for batch in batches:
    x = jnp.linspace(-2.0, 3.0, batch)[:, None]
    _, t_cf = _time(lambda x=x: ex.closed_form_moments(f, x).var, repeats)
    _, t_mc = _time(lambda x=x: jaxuq.mc_sample(f, key, x, num_samples=samples), 1)
    t_seq = None
    if seq_samples:
      _, t = _time(lambda x=x: jaxuq.sequential_sample(f, key, x, num_samples=seq_samples), 1)
      t_seq = t * samples / seq_samples  # extrapolated: the loop's cost is linear in masks
    cf = ex.closed_form_moments(f, x)
    s = np.asarray(jaxuq.mc_sample(f, key, x, num_samples=samples), np.float64)
    # Agreement: MC mean within 4 SE of the closed-form mean (median over inputs).
    z = np.abs(s.mean(0) - np.asarray(cf.mean)) / np.sqrt(np.asarray(cf.var) / samples)
    row = {
      "batch": batch,
      "samples": samples,
      "key_impl": key_impl,
      "closed_form_s": t_cf,
      "mc_sample_s": t_mc,
      "ratio": t_mc / t_cf,
      "sequential_sample_s_extrapolated": t_seq,
      "sequential_sample_measured_masks": seq_samples,
      "median_z_of_mc_mean": float(np.median(z)),
    }
    rows.append(row)
    print(
      f"  batch {batch:5d}: closed form {t_cf:7.3f} s   mc_sample x{samples} {t_mc:7.2f} s   "
      f"ratio {t_mc / t_cf:6.0f}x   (median |z| of MC mean {np.median(z):.2f})",
      flush=True,
    )
    if t_seq is not None:
      print(
        f"    sequential_sample x{samples} (extrapolated from {seq_samples}) {t_seq:7.1f} s   "
        f"ratio {t_seq / t_cf:6.0f}x",
        flush=True,
      )
  return rows


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--units", type=int, nargs="*", default=[16, 20, 24])
  p.add_argument("--batch", type=int, nargs="*", default=[5000, 500])
  p.add_argument("--samples", type=int, default=1000)
  p.add_argument("--key-impl", default="threefry2x32")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument(
    "--sequential-samples",
    type=int,
    default=20,
    help="masks timed with sequential_sample, extrapolated to --samples (0: skip)",
  )
  p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/exact.json"))
  args = p.parse_args()
  device = jax.devices()[0]
  print(
    f"device: {device.platform} {device.device_kind}, {os.cpu_count()} CPUs, "
    f"load average {os.getloadavg()[0]:.2f}"
  )
  print("enumeration (exact_moments, one input):")
  enum = bench_enumeration(args.units, args.repeats)
  print(f"closed form vs mc_sample (seed MLP 1-4x1024-1, last-layer dropout, {args.key_impl} key):")
  cf = bench_closed_form(
    args.batch, args.samples, args.key_impl, args.repeats, args.sequential_samples
  )
  result = {
    "device": f"{device.platform} {device.device_kind}",
    "cpus": os.cpu_count(),
    "load_average_1min_at_start": os.getloadavg()[0],
    "python": platform.python_version(),
    "jax": jax.__version__,
    "enumeration": enum,
    "closed_form_vs_mc_sample": cf,
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
