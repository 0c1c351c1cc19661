"""Time jaxuq's OOD metrics against scikit-learn, and the sample metrics at MC-dropout sizes.

Run: PYTHONPATH=. python benchmarks/metrics_speed.py [--n 1000000] [--repeats 5]
Prints the median wall time of each call after one warm-up (compilation) call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from jaxuq import metrics


def median_time(fn, repeats):
  jax.block_until_ready(fn())  # warm-up: compilation
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=1_000_000, help="scores for the OOD metrics")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, args.n).astype(np.int32)
  scores = (rng.normal(size=args.n) + labels).round(2).astype(np.float32)  # many ties
  jl, js = jax.device_put(labels), jax.device_put(scores)
  rows = [
    ("auroc (jaxuq)", lambda: metrics.auroc(js, jl)),
    ("roc_auc_score (sklearn)", lambda: roc_auc_score(labels, scores)),
    ("average_precision (jaxuq)", lambda: metrics.average_precision(js, jl)),
    ("average_precision_score (sklearn)", lambda: average_precision_score(labels, scores)),
    ("fpr_at_tpr (jaxuq)", lambda: metrics.fpr_at_tpr(js, jl)),
  ]
  probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (100, 10_000, 10)), axis=-1)
  samples = jax.random.normal(jax.random.key(1), (100, 100_000))
  y = jax.random.normal(jax.random.key(2), (100_000,))
  rows += [
    ("mutual_information (100, 10000, 10)", lambda: metrics.mutual_information(probs)),
    ("crps (100, 100000)", lambda: metrics.crps(samples, y)),
  ]
  print(f"device: {jax.devices()[0].device_kind}; n = {args.n} scores; median of {args.repeats}")
  for name, fn in rows:
    print(f"{name:40s} {median_time(fn, args.repeats) * 1e3:10.1f} ms")


if __name__ == "__main__":
  main()
