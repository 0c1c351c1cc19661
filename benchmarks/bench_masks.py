"""Mask generation: how much of MC dropout's time goes into drawing masks.

For the seed MLP's masks (4 hidden layers of 1024 units, ``--batch`` inputs,
``--samples`` masks) this times, in one run and alternating the arms:

1. masks alone, four ways:
   * ``flax_bernoulli``: ``jax.random.bernoulli`` with the default threefry2x32
     key, one float draw per unit (what ``flax.linen.Dropout`` does);
   * ``uint32_threshold``: one 32-bit word per unit compared with a threshold;
   * ``packed`` (jaxuq's ``keep_mask``): ``k`` bits per unit for a rate
     ``j/2^k`` (1 bit at rate 0.5), words from threefry4x32;
   * ``packed_philox``: the same with philox4x32 words (faster on CPU, but JAX
     0.10 cannot compile philox for several devices);
2. the whole forward pass with jaxuq's masks (``mc_sample``) against the same
   pass with explicit all-ones masks (no random draws, same arithmetic), so the
   difference is the masks' share of the sampler's time.

Usage: ``python benchmarks/bench_masks.py [--batch 256] [--samples 100]
[--rate 0.5] [--out benchmarks/results/masks.json]``
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxuq
from jaxuq._src import dropout


def _timer(f, *args, repeats: int = 5):
  jax.block_until_ready(f(*args))

  def once():
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t0

  return once


def mask_arms(shape, rate):
  keep = 1.0 - rate
  k, threshold = dropout.keep_threshold(rate)

  def flax_bernoulli(key):
    return jax.random.bernoulli(key, keep, shape)

  def uint32_threshold(key):
    return jax.random.bits(key, shape, jnp.uint32) < jnp.uint32(round(keep * 2**32))

  def packed(key):
    return dropout.keep_mask(key, shape, rate)

  def packed_philox(key):
    pkey = jax.random.wrap_key_data(jax.random.bits(key, (2,), jnp.uint32), impl="philox4x32")
    size = shape[0] * shape[1]
    per = 32 // k
    words = jax.random.bits(pkey, (-(-size // per),), jnp.uint32)
    shifts = jnp.arange(per, dtype=jnp.uint32) * jnp.uint32(k)
    fields = (words[:, None] >> shifts[None, :]) & jnp.uint32(2**k - 1)
    return (fields < jnp.uint32(threshold)).reshape(-1)[:size].reshape(shape)

  return {f.__name__: f for f in (flax_bernoulli, uint32_threshold, packed, packed_philox)}


class SeedMLP(nn.Module):
  rate: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    for _ in range(4):
      x = jaxuq.Dropout(self.rate, deterministic=not train)(nn.relu(nn.Dense(1024)(x)))
    return nn.Dense(1)(x)


def _drawn_masks(model, variables, key, x):
  """The masks jaxuq's layers draw for ``key``, as a 'dropout_masks' collection."""
  return {
    f"Dropout_{i}": {"keep": dropout.keep_mask(k, (x.shape[0], 1024), model.rate)}
    for i, k in enumerate(_layer_keys(model, variables, key, x))
  }


def _layer_keys(model, variables, key, x):
  keys = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, jaxuq.Dropout) and context.method_name == "__call__":
      keys.append(context.module.make_rng("dropout"))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    model.apply(variables, x, train=True, rngs={"dropout": key})
  return keys


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--samples", type=int, default=100)
  parser.add_argument("--rate", type=float, default=0.5)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument(
    "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/masks.json")
  )
  args = parser.parse_args()

  keys = jax.random.split(jax.random.key(0), args.samples)
  shape = (args.batch, 1024)
  timers = {}
  for name, arm in mask_arms(shape, args.rate).items():
    # Four layers' masks per sample, all samples vmapped: as in one mc_sample call.
    f = jax.jit(jax.vmap(lambda k, arm=arm: [arm(kk) for kk in jax.random.split(k, 4)]))
    timers[name] = _timer(f, keys)

  model = SeedMLP(args.rate)
  x = jnp.linspace(-2.0, 3.0, args.batch)[:, None]
  variables = model.init(jax.random.key(1), x)
  predict = jaxuq.from_linen(model, variables)
  # The same forward pass, one vmap over the samples either way: with masks
  # drawn from the keys, or with the very same masks precomputed and read from
  # memory (no random draws). The difference is the draws' cost.
  masks = jax.vmap(lambda k: _drawn_masks(model, variables, k, x))(keys)
  fwd_draw = jax.jit(jax.vmap(lambda k: predict(k, x)))
  fwd_read = jax.jit(
    jax.vmap(lambda m: model.apply({**variables, jaxuq.MASK_COLLECTION: m}, x, train=True))
  )
  timers["forward_with_draws"] = _timer(fwd_draw, keys)
  timers["forward_masks_given"] = _timer(fwd_read, masks)
  times: dict[str, list[float]] = {name: [] for name in timers}
  for _ in range(args.rounds):  # alternate the arms so drift hits all alike
    for name, once in timers.items():
      times[name].append(once())
  med = {name: statistics.median(ts) for name, ts in times.items()}
  units = 4 * args.batch * 1024 * args.samples
  result = {
    "machine": {"platform": platform.platform(), "devices": [str(d) for d in jax.devices()]},
    "settings": vars(args) | {"out": str(args.out)},
    "median_s": med,
    "mask_units_per_s": {n: units / med[n] for n in mask_arms(shape, args.rate)},
    "mask_share_of_forward": 1 - med["forward_masks_given"] / med["forward_with_draws"],
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2))
  for name, t in med.items():
    print(f"{name:20s} {t:8.4f} s")
  print(f"mask share of the forward pass: {result['mask_share_of_forward']:.1%}")
  same = jnp.allclose(fwd_draw(keys), fwd_read(masks), rtol=1e-5, atol=1e-5)
  print(f"drawn and given masks give the same samples: {bool(same)}")


if __name__ == "__main__":
  main()
