"""Benchmark: deep-ensemble members trained in parallel (one vmapped epoch) vs one after another.

Also times one epoch of the seed MLP on the seed's 2000 points, with the epoch
as one jitted ``lax.scan`` over minibatches vs a Python loop of jitted steps.

Each arm runs one warm-up epoch (which compiles), then the arms of a
comparison take turns for ``--repeats`` epochs (median and minimum kept); the work per epoch is the same in both arms of a
comparison (N members x ``n // batch_size`` Adam steps). Results go to
``benchmarks/results/bench_ensemble.json`` (or ``--out``).

Run:  PYTHONPATH=. python benchmarks/bench_ensemble.py            # seed sizes
      PYTHONPATH=. python benchmarks/bench_ensemble.py --quick    # CI sizes
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq._src.losses import resolve_loss
from jaxuq._src.subsets import member_subsets
from jaxuq._src.training import EPOCHS, init_state, scan_epoch
from jaxuq.models import MLP, BasicCNN


def time_arms(arms: dict, repeats: int) -> dict[str, dict[str, float]]:
  """Times each arm ``name -> (run, state)`` (``run(state) -> state``), one epoch per call.

  One warm-up call per arm (compilation), then ``repeats`` rounds in which the
  arms take turns, so that a change in the machine's load hits all arms alike.
  Returns per arm the first call's time, the median and the minimum, in seconds.
  """
  states, times = {}, {name: [] for name in arms}
  result = {}
  for name, (run, state) in arms.items():
    t0 = time.perf_counter()
    states[name] = jax.block_until_ready(run(state))
    result[name] = {"first_call_s": time.perf_counter() - t0}
  for _ in range(repeats):
    for name, (run, _) in arms.items():
      t0 = time.perf_counter()
      states[name] = jax.block_until_ready(run(states[name]))
      times[name].append(time.perf_counter() - t0)
  for name in arms:
    result[name]["median_s"] = statistics.median(times[name])
    result[name]["min_s"] = min(times[name])
  return result


def single_epochs(model, x, y, loss, batch_size, repeats):
  """Seconds per epoch of one model on all rows: lax.scan epoch vs Python loop of jitted steps."""
  optimizer = optax.adam(1e-3)
  static = {"objective": resolve_loss(loss), "num_batches": x.shape[0] // batch_size}
  n = x.shape[0]
  idx, count = jnp.arange(n, dtype=jnp.int32), jnp.int32(n)
  state = init_state(jax.random.key(0), model, optimizer, x[:1])
  active = jnp.ones((), bool)
  arms = {}
  for loop in ("scan", "python"):
    epoch = EPOCHS[loop]
    arms[loop] = (
      lambda s, e=epoch: e(s, active, x, y, idx, count, batch_size=batch_size, **static)[0],
      state,
    )
  return time_arms(arms, repeats)


def ensemble_epochs(model, x, y, loss, batch_size, members, repeats):
  """Seconds per ensemble epoch: N members in parallel (vmap), in one jit with lax.map,
  and one after another (a Python loop over members of the single-model jitted epoch)."""
  optimizer = optax.adam(1e-3)
  objective = resolve_loss(loss)
  n = x.shape[0]
  subsets = member_subsets(jax.random.key(1), n, members, "bootstrap")
  idx, count = jnp.asarray(subsets.indices), jnp.asarray(subsets.counts)
  keys = jax.random.split(jax.random.key(2), members)
  num_batches = n // batch_size
  states = jax.vmap(lambda k: init_state(k, model, optimizer, x[:1]))(keys)
  active = jnp.ones(members, bool)
  arms = {}
  static = {"objective": objective, "num_batches": num_batches, "batch_size": batch_size}
  for how in ("vmap", "map"):
    arms[how] = (
      lambda s, h=how: scan_epoch(s, active, x, y, idx, count, member_loop=h, **static)[0],
      states,
    )
  separate = [jax.tree.map(lambda a, k=k: a[k], states) for k in range(members)]

  def one_after_another(group):
    return [
      scan_epoch(s, active[k], x, y, idx[k], count[k], **static)[0] for k, s in enumerate(group)
    ]

  arms["sequential"] = (one_after_another, separate)
  result = time_arms(arms, repeats)
  for stat in ("median_s", "min_s"):
    result[f"speedup_vmap_over_sequential_{stat[:-2]}"] = (
      result["sequential"][stat] / result["vmap"][stat]
    )
  return result


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="CI sizes: MLP width 256, fewer rows")
  parser.add_argument("--members", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", type=pathlib.Path, default=None)
  args = parser.parse_args()
  width = 256 if args.quick else 1024
  n_cnn = 512 if args.quick else 2000
  results: dict = {
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "device": str(jax.devices()[0]),
      "jax": jax.__version__,
      "load_average_start": os.getloadavg(),
    },
    "settings": {"members": args.members, "repeats": args.repeats, "quick": args.quick},
  }
  # The seed's data: 2000 points on [-2, -1.5) and [-1, 0.5), y = sin(2 pi x) - x.
  grid = np.concatenate([np.arange(-2.0, -1.5, 0.001), np.arange(-1.0, 0.5, 0.001)])[:2000]
  x = jnp.asarray(grid[:, None], jnp.float32)
  y = jnp.sin(2 * jnp.pi * x) - x
  seed_mlp = MLP(width=width)
  results["seed_mlp_epoch"] = {}
  for batch_size in (32, 256):
    r = single_epochs(seed_mlp, x, y, "mse", batch_size, args.repeats)
    results["seed_mlp_epoch"][f"batch{batch_size}"] = r
    print(
      f"seed MLP (width {width}), 2000 rows, batch {batch_size}, s/epoch (median, min): "
      + ", ".join(f"{k} {v['median_s']:.3f} {v['min_s']:.3f}" for k, v in r.items())
    )

  images = jax.random.uniform(jax.random.key(3), (n_cnn, 28, 28, 1))
  labels = jax.random.randint(jax.random.key(4), (n_cnn,), 0, 10)
  cases = {
    "mlp_2x64_2000rows_batch32": (MLP(width=64, depth=2), x, y, "mse", 32),
    f"mlp_4x{width}_2000rows_batch32": (seed_mlp, x, y, "mse", 32),
    f"basic_cnn_{n_cnn}rows_batch32": (BasicCNN(), images, labels, "cross_entropy", 32),
  }
  results["ensemble"] = {}
  for name, (model, xs, ys, loss, batch_size) in cases.items():
    r = ensemble_epochs(model, xs, ys, loss, batch_size, args.members, args.repeats)
    results["ensemble"][name] = r
    print(
      f"ensemble of {args.members}, {name}, s/epoch (median, min): "
      + ", ".join(
        f"{k} {r[k]['median_s']:.3f} {r[k]['min_s']:.3f}" for k in ("vmap", "map", "sequential")
      )
      + f"; sequential/vmap {r['speedup_vmap_over_sequential_median']:.2f}x (median)"
    )
  results["machine"]["load_average_end"] = os.getloadavg()
  out = args.out or pathlib.Path(__file__).parent / "results" / (
    "bench_ensemble_quick.json" if args.quick else "bench_ensemble.json"
  )
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=2) + "\n")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
