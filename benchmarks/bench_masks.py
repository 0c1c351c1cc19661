"""Mask generation: how much of MC dropout's time goes into drawing masks.

For the seed MLP (1 -> 4 x 1024 ReLU -> 1, dropout after every hidden layer,
``--batch`` inputs, ``--samples`` masks) this times, in one run and
alternating the arms so that a change of load hits all of them:

1. the masks alone (four layers per sample, all samples vmapped), three ways:
   * ``flax_bernoulli``: ``jax.random.bernoulli`` with the default threefry2x32
     key, one float draw per unit (what ``flax.linen.Dropout`` does);
   * ``uint32_threshold``: one 32-bit word per unit compared with a threshold;
   * ``packed`` (jaxuq's ``keep_mask``): ``k`` bits per unit for a rate
     ``j/2^k`` (1 bit at rate 0.5), the words drawn from the key itself and
     stored behind an optimization barrier;
2. the whole forward pass, samples in chunks of ``--chunk`` as ``mc_sample``
   runs them, with the masks drawn four ways:
   * ``none``: a fixed pattern from an iota (same arithmetic, no random draws):
     the floor for any mask;
   * ``flax_bernoulli``: as above (the loop people write today, vmapped);
   * ``packed_unstored``: the same packed words with no barrier, so that XLA
     may fuse the hash into the loop that applies the mask and recompute each
     word for each of its units (rate 0.5 only);
   * ``packed``: jaxuq's ``keep_mask`` as shipped.
   The difference with ``none`` is the masks' share of the sampler's time.

Usage: ``python benchmarks/bench_masks.py [--batch 256] [--samples 100]
[--chunk 4] [--rate 0.5] [--out benchmarks/results/masks.json]`` (on a GPU,
``--chunk`` as large as ``--samples``: ``mc_sample`` runs one chunk there).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import jaxuq

WIDTH = 1024


def _timer(f, *args):
  jax.block_until_ready(f(*args))

  def once():
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t0

  return once


def mask_arms(shape, rate):
  keep = 1.0 - rate

  def none(key):
    offset = jax.random.key_data(key).reshape(-1)[0].astype(jnp.int32)
    return (jax.lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1) + offset) % 2 == 0

  def flax_bernoulli(key):
    return jax.random.bernoulli(key, keep, shape)

  def uint32_threshold(key):
    return jax.random.bits(key, shape, jnp.uint32) < jnp.uint32(round(keep * 2**32))

  def packed_unstored(key):
    # Rate 0.5: one bit per unit, unit i is bit i % 32 of word i // 32.
    words = jax.random.bits(key, (-(-math.prod(shape) // 32),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
    return bits.reshape(-1)[: math.prod(shape)].reshape(shape) == 0

  def packed(key):
    return jaxuq.keep_mask(key, shape, rate)

  arms = (none, flax_bernoulli, uint32_threshold, packed_unstored, packed)
  return {f.__name__: f for f in arms}


def seed_weights(key):
  sizes = [1] + [WIDTH] * 4 + [1]
  keys = jax.random.split(key, len(sizes) - 1)
  return [
    (jax.random.normal(k, (m, n)) / math.sqrt(m), jnp.zeros(n))
    for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
  ]


def forward(arm, weights, x, key, rate):
  """The seed MLP with inverted dropout after every hidden layer, masks from ``arm``."""
  h = x
  for w, b in weights[:-1]:
    h = jax.nn.relu(h @ w + b)
    key, sub = jax.random.split(key)
    h = jnp.where(arm(sub), h / (1.0 - rate), 0.0)
  w, b = weights[-1]
  return h @ w + b


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--samples", type=int, default=100)
  parser.add_argument("--chunk", type=int, default=4, help="samples vmapped at once (forward)")
  parser.add_argument("--rate", type=float, default=0.5)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument(
    "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/masks.json")
  )
  args = parser.parse_args()

  keys = jax.random.split(jax.random.key(0), args.samples)
  shape = (args.batch, WIDTH)
  arms = mask_arms(shape, args.rate)
  timers = {}
  for name in ("flax_bernoulli", "uint32_threshold", "packed"):
    arm = arms[name]
    # Four layers' masks per sample, all samples vmapped.
    f = jax.jit(jax.vmap(lambda k, arm=arm: [arm(kk) for kk in jax.random.split(k, 4)]))
    timers[f"masks/{name}"] = _timer(f, keys)

  weights = seed_weights(jax.random.key(1))
  x = jnp.linspace(-2.0, 3.0, args.batch)[:, None]
  forwards = {}
  names = ["none", "flax_bernoulli", "packed"]
  if args.rate == 0.5:
    names.insert(2, "packed_unstored")
  for name in names:
    arm = arms[name]
    f = jax.jit(
      lambda w, xx, ks, arm=arm: jax.lax.map(
        lambda k: forward(arm, w, xx, k, args.rate), ks, batch_size=args.chunk
      )
    )
    forwards[name] = f
    timers[f"forward/{name}"] = _timer(f, weights, x, keys)

  times: dict[str, list[float]] = {name: [] for name in timers}
  for _ in range(args.rounds):  # alternate the arms so drift hits all alike
    for name, once in timers.items():
      times[name].append(once())
  med = {name: statistics.median(ts) for name, ts in times.items()}
  units = 4 * args.batch * WIDTH * args.samples
  floor = med["forward/none"]
  result = {
    "machine": {
      "platform": platform.platform(),
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "jax": jax.__version__,
    },
    "settings": vars(args) | {"out": str(args.out)},
    "median_s": med,
    "mask_units_per_s": {
      n.removeprefix("masks/"): units / t for n, t in med.items() if n.startswith("masks/")
    },
    "mask_share_of_forward": {
      n.removeprefix("forward/"): 1 - floor / t
      for n, t in med.items()
      if n.startswith("forward/") and n != "forward/none"
    },
  }

  if "packed_unstored" in forwards:  # the barrier changes the schedule, not the masks
    same = jnp.array_equal(
      forwards["packed"](weights, x, keys), forwards["packed_unstored"](weights, x, keys)
    )
    result["stored_and_unstored_words_give_the_same_samples"] = bool(same)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2))
  for name, t in med.items():
    print(f"{name:26s} {t:8.4f} s")
  for name, share in result["mask_share_of_forward"].items():
    print(f"mask share of the forward pass, {name}: {share:.1%}")
  if "stored_and_unstored_words_give_the_same_samples" in result:
    print("same samples:", result["stored_and_unstored_words_give_the_same_samples"])


if __name__ == "__main__":
  main()
