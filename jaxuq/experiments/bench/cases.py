"""The models and sampler variants that ``jaxuq bench`` times.

Each variant is built for one case (model, batch, masks T) and returns a
zero-argument function producing the samples, so the timing loop is the same
for all. Variants that use jaxuq's masks with the same keys must return the
samples of ``sequential_sample`` to float rounding; the bench checks that.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxuq
from jaxuq._src.flops import matmul_flops

MODELS = ("mlp", "mlp-last", "cnn")


class SeedMLP(nn.Module):
  """The seed MLP 1 -> depth x width ReLU -> 1, dropout after all or the last hidden layer."""

  width: int = 1024
  depth: int = 4
  rate: float = 0.5
  last_only: bool = False
  flax_dropout: bool = False  # flax.linen.Dropout (what people write) instead of jaxuq's
  until_dropout: bool = False  # stop at the first dropout: the layers no key changes

  @nn.compact
  def __call__(self, x, train: bool = False):
    layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
    for i in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
      if not self.last_only or i == self.depth - 1:
        if self.until_dropout:
          return x
        x = layer(self.rate, deterministic=not train)(x)
    return nn.Dense(1)(x)


class SeedCNN(nn.Module):
  """The seed's basic CNN: Conv32 3x3 ReLU, MaxPool 2, Dense100 ReLU, Dropout 0.25, Dense10."""

  flax_dropout: bool = False
  until_dropout: bool = False  # stop at the dropout: the layers no key changes

  @nn.compact
  def __call__(self, x, train: bool = False):
    layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(100, kernel_init=nn.initializers.he_uniform())(x))
    if self.until_dropout:
      return x
    return nn.Dense(10)(layer(0.25, deterministic=not train)(x))


@dataclasses.dataclass(frozen=True)
class Case:
  model: str
  batch: int
  masks: int
  width: int = 1024

  @property
  def name(self) -> str:
    """``mlp b256 T100``; an MLP of another width than 1024 says it (``... w128``), so that
    rows of two widths never pair up in one table or ratio."""
    wide = "" if self.model == "cnn" or self.width == 1024 else f" w{self.width}"
    return f"{self.model} b{self.batch} T{self.masks}{wide}"


def build_model(case: Case, flax_dropout: bool = False, until_dropout: bool = False) -> nn.Module:
  """The case's model; ``until_dropout`` stops it before its first dropout layer."""
  if case.model == "cnn":
    return SeedCNN(flax_dropout=flax_dropout, until_dropout=until_dropout)
  return SeedMLP(
    width=case.width,
    last_only=case.model == "mlp-last",
    flax_dropout=flax_dropout,
    until_dropout=until_dropout,
  )


def inputs(case: Case) -> jax.Array:
  if case.model == "cnn":
    return jax.random.uniform(jax.random.key(1), (case.batch, 28, 28, 1))
  return jnp.linspace(-2.0, 3.0, case.batch, dtype=jnp.float32)[:, None]


@functools.lru_cache(maxsize=4)
def setup(case: Case) -> tuple[nn.Module, Any, jax.Array]:
  """The case's model, variables and inputs (made once per case: variants share them)."""
  model = build_model(case)
  x = inputs(case)
  return model, model.init(jax.random.key(0), x[:2]), x


def forward_flops(case: Case, until_dropout: bool = False) -> float:
  """FLOPs of the matrix products and convolutions of one deterministic forward pass.

  With ``until_dropout`` only the layers before the first dropout: those that
  no key changes, which a vmap over keys computes once. Counted from the
  jaxpr (``jaxuq._src.flops``), the same on every backend: XLA's cost analysis
  gave 0 on a GPU (not implemented on PJRT C API backends), and after
  optimization it misses a GPU's library matmuls (0.0256 GFLOP for a 31.5
  GFLOP pass on an H200).
  """
  _, variables, x = setup(case)
  model = build_model(case, until_dropout=until_dropout)
  return float(matmul_flops(lambda v, xx: model.apply(v, xx), variables, x))


@dataclasses.dataclass(frozen=True)
class Flops:
  """The arithmetic a case needs: the key-independent layers once, the rest per mask."""

  shared: float  # FLOPs of the layers before the first dropout (no key changes them)
  per_mask: float  # FLOPs of the layers from the first dropout on, for one mask

  def samples(self, masks: int) -> float:
    """FLOPs of ``masks`` samples: what no sampler of T masks can do without."""
    return self.shared + masks * self.per_mask

  @property
  def one_pass(self) -> float:
    """FLOPs of one forward pass (a single apply, or the closed form's mean)."""
    return self.shared + self.per_mask


def case_flops(case: Case) -> Flops:
  """The case's FLOPs split at the first dropout layer (see ``Flops``)."""
  full = forward_flops(case)
  if full <= 0:
    raise ValueError(f"{case.name}: a forward pass without matrix products has no matmul floor")
  shared = forward_flops(case, until_dropout=True)
  return Flops(shared=shared, per_mask=max(full - shared, 0.0))


def hlo_chars(case: Case, flax_dropout: bool) -> int:
  """Characters of the HLO text of one jitted forward pass with dropout on.

  The model uses Flax's ``Dropout`` if ``flax_dropout``, else ``jaxuq.Dropout``.
  """
  _, variables, x = setup(case)
  apply = single_apply(case, flax_dropout)
  return len(apply.lower(variables, x, sample_key()).as_text())


def single_apply(case: Case, flax_dropout: bool) -> Any:
  """A jitted ``apply(variables, x, key)`` of the case's model with dropout on."""
  model = build_model(case, flax_dropout=flax_dropout)
  return jax.jit(lambda v, xx, k: model.apply(v, xx, train=True, rngs={"dropout": k}))


@functools.lru_cache(maxsize=1)
def sample_key() -> jax.Array:
  """The key of every sampled variant (made on first use: making it compiles, which would
  decide JAX's compilation cache before the bench sets it)."""
  return jax.random.key(42)


# Reference variants: one jitted apply (one mask) with each dropout layer.
SINGLE_APPLIES = ("apply_flax", "apply_jaxuq")


def variant_names(case: Case, num_devices: int) -> list[str]:
  names = ["sequential", "loop_flax_default", "eager", "mc_auto", "mc_shared"]
  names += [f"mc_chunk{c}" for c in (1, 10, 100) if c < case.masks]
  if num_devices > 1:
    names.append("mc_sharded")
  if case.model in ("mlp-last", "cnn"):
    names.append("closed_form")
  return names + list(SINGLE_APPLIES)


@dataclasses.dataclass
class Variant:
  run: Callable[[], Any]  # returns the samples (or moments), blocking not included
  calls: int | None = None  # how many of the case's masks one run computes (None: all)
  compare: str = "sequential"  # what its output is checked against, "" for nothing
  single: bool = False  # one forward pass: its time is not scaled to the case's T


def loop_masks(case: Case, loop_cap: int | None) -> int:
  """How many masks a loop variant runs: all T, or ``loop_cap`` (its time is scaled to T)."""
  return case.masks if loop_cap is None else max(1, min(case.masks, loop_cap))


def build_variant(name: str, case: Case, loop_cap: int | None = None) -> Variant:
  """The zero-argument function that runs variant ``name`` on ``case``.

  Loops (``sequential``, ``loop_flax_default``) run ``loop_masks(case,
  loop_cap)`` masks; a loop's time is linear in its calls, so the bench scales
  it to T and marks the row as extrapolated. ``apply_flax`` and ``apply_jaxuq``
  are one jitted forward pass (one mask) with Flax's and jaxuq's dropout.
  """
  model, variables, x = setup(case)
  predict = jaxuq.from_linen(model, variables)
  t = case.masks
  n_loop = loop_masks(case, loop_cap)
  if name in SINGLE_APPLIES:
    apply = single_apply(case, flax_dropout=name == "apply_flax")
    return Variant(lambda: apply(variables, x, sample_key()), calls=1, compare="", single=True)
  if name == "sequential":
    # Capped, it runs the first keys of split(key, cap), not of split(key, T):
    # the same loop, so the same time, but not the reference samples.
    return Variant(
      lambda: jaxuq.sequential_sample(predict, sample_key(), x, num_samples=n_loop),
      calls=n_loop,
      compare="sequential" if n_loop == t else "",
    )
  if name == "eager":
    calls = min(t, 3)
    keys = jax.random.split(sample_key(), t)

    def eager():
      with jax.disable_jit():
        return jnp.stack([predict(keys[i], x) for i in range(calls)])

    return Variant(eager, calls=calls, compare="sequential_prefix")
  if name == "loop_flax_default":
    # What people write today: flax.linen.Dropout, the default threefry key,
    # a jitted apply called in a Python loop.
    apply = single_apply(case, flax_dropout=True)

    def loop():
      keys = jax.random.split(sample_key(), n_loop)
      return jnp.stack([apply(variables, x, keys[i]) for i in range(n_loop)])

    return Variant(loop, calls=n_loop, compare="")
  if name == "mc_auto":
    return Variant(lambda: jaxuq.mc_sample(predict, sample_key(), x, num_samples=t))
  if name.startswith("mc_chunk"):
    c = int(name.removeprefix("mc_chunk"))
    return Variant(lambda: jaxuq.mc_sample(predict, sample_key(), x, num_samples=t, chunk_size=c))
  if name == "mc_shared":
    shared = jaxuq.from_linen(model, variables, shared_mask=True)
    return Variant(
      lambda: jaxuq.mc_sample(shared, sample_key(), x, num_samples=t), compare="sequential_shared"
    )
  if name == "mc_sharded":
    return Variant(
      lambda: jaxuq.mc_sample(predict, sample_key(), x, num_samples=t, devices=jax.devices())
    )
  if name == "closed_form":
    from jaxuq import exact  # noqa: PLC0415 - only where a closed form exists

    return Variant(lambda: exact.closed_form_moments(predict, x).mean, compare="moments")
  raise ValueError(f"unknown variant {name!r}")


@functools.lru_cache(maxsize=8)
def reference(kind: str, case: Case, limit: int | None = None) -> Any:
  """What a variant's output is compared against: the loop's first ``limit`` samples.

  Sample ``i`` is the jitted single-key call on ``jax.random.split(key, T)[i]``,
  as in ``sequential_sample``; checking a prefix keeps big cases cheap.
  """
  model, variables, x = setup(case)
  f = jaxuq.from_linen(model, variables, shared_mask=kind == "sequential_shared")
  keys = jax.random.split(sample_key(), case.masks)[: limit or case.masks]
  single = jax.jit(lambda fn, k, xx: fn(k, xx))  # fn is a pytree: weights as arguments
  return np.stack([np.asarray(single(f, k, x)) for k in keys])


def max_abs_diff(a: Any, b: Any) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
