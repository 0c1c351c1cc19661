"""Training steps of jaxuq's CNNs with ``flax.linen.Conv`` and with jaxuq's ``Conv``.

jaxuq's convolution layer (``jaxuq/_src/conv.py``) is XLA's convolution with
its kernel derivative written, on the CPU, as matrix products of shifted
inputs. This times, for each model, one jitted Adam step (cross-entropy,
dropout on) at ``--batch`` images and one forward pass (dropout off) at
``--eval-batch`` images, with each layer, in alternating rounds within one
process (median of ``--rounds``), and checks that both give the same
gradients up to float rounding. Both variants are compiled ahead of time with
the module's ``Conv`` name pointing at the layer under test.

Usage: ``python benchmarks/bench_conv.py [--rounds 10] [--batch 128]
[--eval-batch 2000] [--out benchmarks/results/conv_cpu.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxuq._src import conv as conv_module
from jaxuq._src import models as models_module
from jaxuq.experiments import _active_model

REPO = pathlib.Path(__file__).resolve().parent.parent
MODELS = {
  "GalCNN (active learning)": (_active_model, lambda: _active_model.GalCNN()),
  "BasicCNN": (models_module, lambda: models_module.BasicCNN()),
  "DeepCNN": (models_module, lambda: models_module.DeepCNN()),
}
LAYERS = {"flax.linen.Conv": nn.Conv, "jaxuq Conv": conv_module.Conv}


@contextlib.contextmanager
def conv_layer(module, layer):
  """The models of ``module`` build their convolutions with ``layer`` while inside."""
  saved = module.Conv
  module.Conv = layer
  try:
    yield
  finally:
    module.Conv = saved


def compiled(module, build, layer, x, y, x_eval):
  """The AOT-compiled train step and forward pass of the model built with ``layer``."""
  with conv_layer(module, layer):
    model = build()
    variables = model.init(jax.random.key(0), x[:1])
    tx = optax.adam(1e-3)
    opt_state = tx.init(variables["params"])

    def loss(params, stats, key):
      logits, updates = model.apply(
        {"params": params, **stats}, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

    def step(params, stats, opt_state, key):
      (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params, stats, key)
      deltas, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, deltas), updates, opt_state, value, grads

    stats = {k: v for k, v in variables.items() if k != "params"}
    args = (variables["params"], stats, opt_state, jax.random.key(1))
    train = jax.jit(step).lower(*args).compile()
    forward = jax.jit(lambda v, xx: model.apply(v, xx, train=False)).lower(variables, x_eval)
    forward = forward.compile()
    return (lambda: train(*args)), (lambda: forward(variables, x_eval)), train(*args)[4]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--eval-batch", type=int, default=2000)
  parser.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks/results/conv_cpu.json")
  args = parser.parse_args()
  x = jax.random.uniform(jax.random.key(2), (args.batch, 28, 28, 1))
  y = jnp.arange(args.batch) % 10
  x_eval = jax.random.uniform(jax.random.key(3), (args.eval_batch, 28, 28, 1))
  results = []
  for name, (module, build) in MODELS.items():
    runs, grads = {}, {}
    for label, layer in LAYERS.items():
      train, forward, grads[label] = compiled(module, build, layer, x, y, x_eval)
      runs[label] = {"train": train, "forward": forward}
      jax.block_until_ready(forward())  # a first call of each, outside the timing
    times = {(label, kind): [] for label in runs for kind in ("train", "forward")}
    for _ in range(args.rounds):
      for label, r in runs.items():
        for kind in ("train", "forward"):
          t0 = time.perf_counter()
          jax.block_until_ready(r[kind]())
          times[label, kind].append(time.perf_counter() - t0)
    worst = max(
      float(jnp.abs(a - b).max() / jnp.maximum(jnp.abs(b).max(), 1e-30))
      for a, b in zip(
        jax.tree.leaves(grads["jaxuq Conv"]), jax.tree.leaves(grads["flax.linen.Conv"]), strict=True
      )
    )
    row = {"model": name, "max_relative_gradient_difference": worst}
    for (label, kind), ts in times.items():
      row[f"{kind}_ms {label}"] = 1000 * statistics.median(ts)
    row["train_speedup"] = row["train_ms flax.linen.Conv"] / row["train_ms jaxuq Conv"]
    row["forward_ratio"] = row["forward_ms flax.linen.Conv"] / row["forward_ms jaxuq Conv"]
    results.append(row)
    print(
      f"{name:26s} step {row['train_ms flax.linen.Conv']:7.1f} -> {row['train_ms jaxuq Conv']:7.1f} ms "
      f"({row['train_speedup']:.2f}x)  forward {row['forward_ms flax.linen.Conv']:7.1f} -> "
      f"{row['forward_ms jaxuq Conv']:7.1f} ms  gradients differ by {worst:.1e} (relative)",
      flush=True,
    )
  args.out.parent.mkdir(parents=True, exist_ok=True)
  out = {
    "command": "python benchmarks/bench_conv.py",
    "host": platform.platform(),
    "cores": os.cpu_count(),
    "backend": jax.default_backend(),
    "jax": jax.__version__,
    "batch": args.batch,
    "eval_batch": args.eval_batch,
    "rounds": args.rounds,
    "results": results,
  }
  args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()
