"""Benchmark: active-learning runs side by side (one vmapped program) vs one after another.

Both arms are ``jaxuq.active.active_learning_runs`` calls with the same
settings and the same F functions x R repeats, ``side_by_side=True`` (every
step of every run in one ``vmap``-ed jitted call) or ``False`` (each run by
itself, the run axis of size 1). Each arm is called twice: the first call
compiles (timed as ``first_call_s``), the second reuses the compiled programs
(``warm_s``); the speedup is one-by-one's warm seconds over side-by-side's.
Two models: a small MLP on scikit-learn's 8x8 digits (flattened), and the
paper's CNN (``jaxuq active``'s ``GalCNN``) on the digits upsampled to 28x28.
Results go to ``benchmarks/results/active_cpu.json`` (or ``--out``).

Run:  PYTHONPATH=. python benchmarks/bench_active.py
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import numpy as np
import optax

from jaxuq.active import active_learning_runs
from jaxuq.data import load_dataset
from jaxuq.experiments import _active_model as am
from jaxuq.models import MLP

SETTINGS = {
  "mlp": dict(acquisitions=3, epochs=10, acquisition_size=10, pool_subset=300, num_samples=20,
              batch_size=32),
  "cnn": dict(acquisitions=2, epochs=3, acquisition_size=10, pool_subset=100, num_samples=10,
              batch_size=32),
}  # fmt: skip
FUNCTIONS = ["bald", "random"]
REPEATS = 2


def _data(model: str):
  train, test = (load_dataset("mnist", sp, source="sklearn") for sp in ("train", "test"))
  if model == "mlp":
    return tuple(a.reshape(len(a), -1)[:, ::4] if a.ndim > 1 else a for a in
                 (train.images, train.labels, test.images, test.labels))  # fmt: skip
  return train.images, train.labels, test.images, test.labels


def time_arm(model: str, side_by_side: bool) -> dict[str, float]:
  data = _data(model)
  net = MLP(out_features=10, depth=2, width=128, rate=0.5) if model == "mlp" else am.GalCNN()
  seeds = np.stack([np.arange(20) + 20 * r for r in range(REPEATS)])
  out = {}
  for name in ("first_call_s", "warm_s"):
    t0 = time.perf_counter()
    _, history = active_learning_runs(
      jax.random.key(0), net, optax.adam(1e-3), *data, selects=FUNCTIONS, seed_indices=seeds,
      side_by_side=side_by_side, progress=False, **SETTINGS[model],
    )  # fmt: skip
    jax.block_until_ready(history["test_error"])
    out[name] = time.perf_counter() - t0
  out["final_test_error"] = history["test_error"][-1].tolist()
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="mlp,cnn")
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path("benchmarks/results/active_cpu.json"))  # fmt: skip
  args = parser.parse_args()
  result = {
    "machine": {
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "device": str(jax.devices()[0]),
      "jax": jax.__version__,
      "load_average_start": list(os.getloadavg()),
    },
    "settings": {"functions": FUNCTIONS, "repeats": REPEATS, **SETTINGS},
  }
  for model in args.models.split(","):
    arms = {"side_by_side": time_arm(model, True), "one_by_one": time_arm(model, False)}
    arms["speedup_warm"] = arms["one_by_one"]["warm_s"] / arms["side_by_side"]["warm_s"]
    result[model] = arms
    print(model, json.dumps(arms))
  result["machine"]["load_average_end"] = list(os.getloadavg())
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
  main()
