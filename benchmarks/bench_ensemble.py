"""Benchmark: deep-ensemble members trained in parallel (one vmapped epoch) vs one after another.

Also times one epoch of the seed MLP on the seed's 2000 points, with the epoch
as one jitted ``lax.scan`` over minibatches vs a Python loop of jitted steps.

Only public names: each arm is a ``jaxuq.train.train`` or ``train_ensemble``
call. An arm's first call (one epoch, compilation included) is timed, then the
arms take turns for ``--repeats`` calls of ``1 + EPOCHS`` epochs; an arm's
seconds per epoch are (that call - the one-epoch call) / EPOCHS, so
compilation cancels out whether or not a second call recompiles (median and
minimum kept). The work per epoch is the same in both arms of a comparison
(N members x ``n // batch_size`` Adam steps). Results go to
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
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq.models import MLP, BasicCNN
from jaxuq.train import member_subsets, train, train_ensemble

EPOCHS = 2  # epochs a timed call runs beyond the first


def _seconds(run: Callable[[int], object], epochs: int) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(run(epochs))
  return time.perf_counter() - t0


def time_arms(arms: dict[str, Callable[[int], object]], repeats: int) -> dict[str, dict]:
  """Times each arm ``name -> run(epochs)``: its first call and its seconds per epoch.

  One call of one epoch per arm (compilation included), then ``repeats``
  rounds in which the arms take turns with ``1 + EPOCHS`` epochs, so that a
  change in the machine's load hits all arms alike. Returns per arm the first
  call's time and the median and minimum seconds per epoch.
  """
  result = {name: {"first_call_s": _seconds(run, 1)} for name, run in arms.items()}
  per_epoch: dict[str, list[float]] = {name: [] for name in arms}
  for _ in range(repeats):
    for name, run in arms.items():
      longer = _seconds(run, 1 + EPOCHS)
      one = _seconds(run, 1)
      per_epoch[name].append(max(longer - one, 0.0) / EPOCHS)
  for name in arms:
    result[name]["median_s"] = statistics.median(per_epoch[name])
    result[name]["min_s"] = min(per_epoch[name])
  return result


def single_epochs(model, x, y, loss, batch_size, repeats):
  """Seconds per epoch of one model on all rows: lax.scan epoch vs Python loop of jitted steps."""
  arms = {
    loop: lambda epochs, loop=loop: train(
      jax.random.key(0),
      model,
      optax.adam(1e-3),
      x,
      y,
      loss=loss,
      epochs=epochs,
      batch_size=batch_size,
      loop=loop,
      progress=False,
    )[0]
    for loop in ("scan", "python")
  }
  return time_arms(arms, repeats)


def ensemble_epochs(model, x, y, loss, batch_size, members, repeats):
  """Seconds per ensemble epoch: N members in parallel (vmap), in one jit with lax.map,
  and one after another (a Python loop of ``train`` over the members' bootstrap rows)."""
  common = dict(loss=loss, batch_size=batch_size, progress=False)
  arms = {
    how: lambda epochs, how=how: train_ensemble(
      jax.random.key(1),
      model,
      optax.adam(1e-3),
      x,
      y,
      num_members=members,
      member_loop=how,
      epochs=epochs,
      **common,
    )[0]
    for how in ("vmap", "map")
  }
  subsets = member_subsets(jax.random.key(1), x.shape[0], members, "bootstrap")
  rows = [np.asarray(subsets.indices[k][: subsets.counts[k]]) for k in range(members)]

  def one_after_another(epochs):
    keys = jax.random.split(jax.random.key(2), members)
    return [
      train(keys[k], model, optax.adam(1e-3), x[r], y[r], epochs=epochs, **common)[0]
      for k, r in enumerate(rows)
    ]

  arms["sequential"] = one_after_another
  result = time_arms(arms, repeats)
  for stat in ("median_s", "min_s"):
    vmap = result["vmap"][stat]  # 0 when an epoch is lost in the noise of a call
    result[f"speedup_vmap_over_sequential_{stat[:-2]}"] = (
      result["sequential"][stat] / vmap if vmap > 0 else float("nan")
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
    "settings": {
      "members": args.members,
      "repeats": args.repeats,
      "quick": args.quick,
      "epochs_per_timed_call": 1 + EPOCHS,
    },
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
