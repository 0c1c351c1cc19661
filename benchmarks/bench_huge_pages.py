"""glibc's malloc with and without transparent huge pages, on XLA's CPU backend.

Each configuration (``GLIBC_TUNABLES`` unset, and ``glibc.malloc.hugetlb=1``)
runs in fresh processes, alternating A B A B over ``--rounds``; each process
compiles, warms up and then times, per workload, the median of ``--steps``
calls and the minor page faults and system CPU seconds per call
(``getrusage``). Workloads: one Adam step of the active-learning CNN
(``jaxuq active``'s ``GalCNN``, batch 128, dropout on); one forward pass of
it at 2,000 images (dropout off); ``mc_sample`` of the seed MLP (1 -> 4x1024
-> 1, dropout 0.5, batch 256, T = 100); and, with ``--round``, one round of
the MNIST experiment at 300 labelled images (50 epochs, 2,000 pool images x
20 passes, 10,000 test images; needs ``make data``). A fingerprint of the
CNN's parameters after the timed steps shows that the numbers are the same.

Run:  PYTHONPATH=. python benchmarks/bench_huge_pages.py [--rounds 2] [--round]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {"unset": None, "hugetlb": "glibc.malloc.hugetlb=1"}
REPO = pathlib.Path(__file__).resolve().parent.parent


def _usage() -> tuple[int, float]:
  u = resource.getrusage(resource.RUSAGE_SELF)
  return u.ru_minflt, u.ru_stime


def _timed(fn, steps: int) -> dict:
  import jax  # noqa: PLC0415

  jax.block_until_ready(fn())
  jax.block_until_ready(fn())
  faults, sys_s = _usage()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  faults2, sys2 = _usage()
  return {
    "median_s": statistics.median(times),
    "page_faults_per_call": (faults2 - faults) / steps,
    "system_s_per_call": (sys2 - sys_s) / steps,
  }


def cnn_trainer(batch: int):
  """``(step, params)``: one Adam step of ``GalCNN`` per call on fixed random images; the parameters."""
  import jax  # noqa: PLC0415
  import optax  # noqa: PLC0415

  from jaxuq.experiments import _active_model as am  # noqa: PLC0415

  x = jax.random.normal(jax.random.key(1), (batch, 28, 28, 1))
  y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
  model = am.GalCNN()
  params = model.init(jax.random.key(0), x[:1])["params"]
  tx = optax.adam(1e-3)

  def loss(p, k):
    logits = model.apply({"params": p}, x, train=True, rngs={"dropout": k})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def update(p, s, k):
    u, s = tx.update(jax.grad(loss)(p, k), s, p)
    return optax.apply_updates(p, u), s

  carry = [params, tx.init(params), 0]

  def step():
    p, s, i = carry
    carry[:] = [*update(p, s, jax.random.key(i)), i + 1]
    return carry[0]

  return step, lambda: carry[0]


def digest(params) -> str:
  """sha256 of a pytree's arrays, leaf by leaf."""
  import jax  # noqa: PLC0415

  leaves = jax.tree.leaves(jax.device_get(params))
  return hashlib.sha256(b"".join(bytes(memoryview(v)) for v in leaves)).hexdigest()


def child(steps: int, with_round: bool) -> dict:
  """The measurements of one process (its malloc set by its environment)."""
  import flax.linen as nn  # noqa: PLC0415
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  import jaxuq  # noqa: PLC0415
  from jaxuq.experiments import _active_model as am  # noqa: PLC0415

  out: dict = {}
  train_step, params = cnn_trainer(128)
  out["cnn_train_step_b128"] = _timed(train_step, steps)
  out["params_sha256"] = digest(params())
  x_eval = jax.random.normal(jax.random.key(3), (2000, 28, 28, 1))
  forward = jax.jit(lambda p, x: am.GalCNN().apply({"params": p}, x))
  out["cnn_forward_2000"] = _timed(lambda: forward(params(), x_eval), steps)

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, h, train: bool = False):
      for _ in range(4):
        h = jaxuq.Dropout(0.5, deterministic=not train)(nn.relu(nn.Dense(1024)(h)))
      return nn.Dense(1)(h)

  xs = jnp.linspace(-1.0, 1.0, 256)[:, None]
  predict = jaxuq.from_linen(MLP(), MLP().init(jax.random.key(0), xs))
  out["mlp_mc_sample_b256_t100"] = _timed(
    lambda: jaxuq.mc_sample(predict, jax.random.key(4), xs, num_samples=100), max(3, steps // 3)
  )
  if with_round:
    out["active_round_300_labelled_s"] = _active_round()
  return out


def _active_round() -> list[float]:
  """Seconds of rounds 1-3 (round 0 compiles) of the MNIST experiment from 300 labelled images."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from jaxuq import data  # noqa: PLC0415
  from jaxuq.active import active_learning  # noqa: PLC0415
  from jaxuq.experiments import _active_model as am  # noqa: PLC0415

  train, test = (data.load_dataset("mnist", s, data_dir=REPO / "data") for s in ("train", "test"))
  seed = np.asarray(jax.random.permutation(jax.random.key(5), len(train.labels))[:300])
  stamps = [time.perf_counter()]
  active_learning(
    jax.random.key(0), am.GalCNN(), am.optimizer(1e-3), train.images, train.labels,
    test.images, test.labels, select="bald", seed_indices=seed, acquisitions=3, epochs=50,
    pool_subset=2000, num_samples=20, hyperparams=am.weight_decay(3.5), progress=False,
    callback=lambda r, rec: stamps.append(time.perf_counter()),
  )  # fmt: skip
  return [round(b - a, 2) for a, b in zip(stamps[1:-1], stamps[2:], strict=True)]


def _spawn(tunables: str | None, steps: int, with_round: bool) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  if tunables:
    env["GLIBC_TUNABLES"] = tunables
  args = [sys.executable, __file__, "--child", "--steps", str(steps)]
  proc = subprocess.run(args + (["--round"] if with_round else []), env=env,
                        capture_output=True, text=True, check=True)  # fmt: skip
  return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--round", action="store_true", help="also time active-learning rounds")
  parser.add_argument("--out", default=str(REPO / "benchmarks/results/huge_pages_cpu.json"))
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument(
    "--digest", type=int, nargs=2, metavar=("BATCH", "STEPS"),
    help="only train: print the digest of the CNN's parameters after STEPS steps at BATCH",
  )  # fmt: skip
  args = parser.parse_args()
  if args.digest:
    step, params = cnn_trainer(args.digest[0])
    for _ in range(args.digest[1]):
      step()
    print(digest(params()))
    return
  if args.child:
    print(json.dumps(child(args.steps, args.round)))
    return
  runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
  for r in range(args.rounds):
    for name, tunables in CONFIGS.items():
      runs[name].append(_spawn(tunables, args.steps, args.round))
      print(f"round {r} {name}: {json.dumps(runs[name][-1])}", flush=True)
  workloads = [k for k, v in runs["unset"][0].items() if isinstance(v, dict)]
  summary = {}
  for w in workloads:
    row = {}
    for name in CONFIGS:
      row[name] = {
        key: [run[w][key] for run in runs[name]]
        for key in ("median_s", "page_faults_per_call", "system_s_per_call")
      }
    best = {name: min(row[name]["median_s"]) for name in CONFIGS}
    row["speedup_best_of_rounds"] = best["unset"] / best["hugetlb"]
    summary[w] = row
  if args.round:
    summary["active_round_300_labelled_s"] = {
      name: [run["active_round_300_labelled_s"] for run in runs[name]] for name in CONFIGS
    }
  digests = {run["params_sha256"] for name in CONFIGS for run in runs[name]}
  result = {
    "command": "python benchmarks/bench_huge_pages.py " + " ".join(sys.argv[1:]),
    "host": platform.platform(),
    "cores": os.cpu_count(),
    "configs": CONFIGS,
    "same_parameters_in_every_process": len(digests) == 1,
    "summary": summary,
    "runs": runs,
  }
  pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
  for w, row in summary.items():
    if "speedup_best_of_rounds" in row:
      print(f"{w}: unset {row['unset']['median_s']} s, hugetlb {row['hugetlb']['median_s']} s, "
            f"speedup {row['speedup_best_of_rounds']:.2f}x; faults/call "
            f"{row['unset']['page_faults_per_call']} vs {row['hugetlb']['page_faults_per_call']}")  # fmt: skip
  print("same parameters:", result["same_parameters_in_every_process"], "->", args.out)


if __name__ == "__main__":
  main()
