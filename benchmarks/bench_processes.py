"""One process with 4 CPU devices against 2 processes with 2 each: the same streamed work.

Runs ``jaxuq.mc_reduce`` (moments) of the seed MLP with last-layer dropout
(``--inputs`` inputs, ``--samples`` masks) on 4 simulated CPU devices, once in
one process and once split over two processes that JAX's distributed runtime
joins (coordinator on 127.0.0.1, gloo collectives). Each arm times its warm
calls (median of ``--repeats`` after one compiling call) and reports the mean
of the predictive std, which must agree between the arms.

Usage: ``python benchmarks/bench_processes.py [--inputs 20000] [--samples 200]
[--out benchmarks/results/processes.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import time


def _worker(args: argparse.Namespace) -> None:
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax

  if args.processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{args.port}",
      num_processes=args.processes,
      process_id=args.process_id,
    )
  import flax.linen as nn
  import jax.numpy as jnp
  import numpy as np

  import jaxuq

  class SeedMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      for i in range(4):
        x = nn.relu(nn.Dense(1024)(x))
        if i == 3:
          x = jaxuq.Dropout(0.5, deterministic=not train)(x)
      return nn.Dense(1)(x)

  model = SeedMLP()
  x = jnp.linspace(-2.0, 3.0, args.inputs)[:, None]
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x[:2]))
  reducer = jaxuq.moments_reducer()

  def call():
    out = jaxuq.mc_reduce(f, jax.random.key(1), x, num_samples=args.samples, reducer=reducer)
    return jax.block_until_ready(out)

  call()
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    out = call()
    times.append(time.perf_counter() - t0)
  if jax.process_index() == 0:
    std = float(np.mean(np.sqrt(np.asarray(out["var"]))))
    print(
      json.dumps({"seconds": statistics.median(times), "devices": len(jax.devices()), "std": std})
    )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _arm(args: argparse.Namespace, processes: int) -> dict:
  port = str(_free_port())
  common = [
    sys.executable, __file__, "--worker", f"--inputs={args.inputs}", f"--samples={args.samples}",
    f"--repeats={args.repeats}", f"--processes={processes}", f"--local-devices={4 // processes}",
    f"--port={port}",
  ]  # fmt: skip
  procs = [
    subprocess.Popen(common + [f"--process-id={i}"], stdout=subprocess.PIPE, text=True)
    for i in range(processes)
  ]
  outs = [p.communicate(timeout=1800)[0] for p in procs]
  if any(p.returncode for p in procs):
    raise SystemExit(f"a worker failed: {[p.returncode for p in procs]}")
  return json.loads(outs[0].strip().splitlines()[-1]) | {"processes": processes}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--inputs", type=int, default=20000)
  parser.add_argument("--samples", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", type=pathlib.Path)
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--local-devices", type=int, default=4, help=argparse.SUPPRESS)
  parser.add_argument("--port", default="0", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args)
    return
  rows = [_arm(args, 1), _arm(args, 2)]
  for r in rows:
    print(f"{r['processes']} process(es) x {4 // r['processes']} devices: {r['seconds']:.3f} s, "
          f"mean std {r['std']:.5f}")  # fmt: skip
  print(f"2 processes / 1 process: {rows[1]['seconds'] / rows[0]['seconds']:.2f}x")
  if args.out:
    settings = {"inputs": args.inputs, "samples": args.samples, "repeats": args.repeats}
    args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
