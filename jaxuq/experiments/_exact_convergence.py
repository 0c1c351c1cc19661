"""The convergence data of ``jaxuq exact --convergence``: MC error against exact moments.

Two networks (the tiny one and a random 1-6-6-1 MLP) are enumerated exactly in
float64 and sampled with ``jaxuq.mc_sample``; :func:`convergence_data` gives
the relative RMS errors that ``jaxuq.plot.mc_convergence`` draws.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxuq
import jaxuq.exact as ex


class SmallNet(nn.Module):
  """1 -> Dense(6) ReLU -> Dropout(0.5) -> Dense(6) ReLU -> Dropout(0.5) -> Dense(1): 12 units."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(6)(x)))
    h = jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(6)(h)))
    return nn.Dense(1)(h)


def _networks() -> dict[str, tuple[Any, Any, jax.Array]]:
  x = jnp.full((1, 1), 0.5)
  small = SmallNet()
  return {
    "tiny network (2 units)": (ex.TinyNet(), ex.tiny_variables(), ex.tiny_input()),
    "random MLP 1-6-6-1 (12 units)": (small, small.init(jax.random.key(0), x), x),
  }


def _exact(module: Any, variables: Any, x: jax.Array) -> tuple[float, float, float]:
  """Exact mean, variance and fourth central moment, in float64."""
  with jax.enable_x64(True):
    f = jaxuq.from_linen(module, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables))
    e = ex.enumerate_outputs(f, jnp.asarray(x, jnp.float64))
  y = e.outputs[:, 0, 0]
  mean = float(e.probs @ y)
  d = y - mean
  return mean, float(e.probs @ d**2), float(e.probs @ d**4)


def convergence_data(seed: int, max_log2: int = 16, repeats: int = 32) -> dict[str, Any]:
  """RMS error of MC mean and variance (relative) over ``repeats`` runs, ``T = 2 .. 2**max_log2``.

  The MC samples come from ``jaxuq.mc_sample`` (float32 network, default key);
  the exact values from enumeration in float64.
  """
  t = 2 ** np.arange(1, max_log2 + 1)
  out: dict[str, Any] = {"T": t.tolist(), "repeats": repeats, "key": seed, "networks": {}}
  key = jax.random.key(seed)
  for name, (module, variables, x) in _networks().items():
    key, sub = jax.random.split(key)
    mean, var, mu4 = _exact(module, variables, x)
    f = jaxuq.from_linen(module, variables)
    s = jaxuq.mc_sample(f, sub, x, num_samples=repeats * int(t[-1]))
    d = np.asarray(s, np.float64).reshape(repeats, -1) - mean
    c1, c2 = np.cumsum(d, axis=1)[:, t - 1], np.cumsum(d * d, axis=1)[:, t - 1]
    mc_mean = c1 / t
    mc_var = (c2 - c1 * c1 / t) / (t - 1)
    out["networks"][name] = {
      "exact_mean": mean,
      "exact_variance": var,
      "rel_rmse_mean": (np.sqrt((mc_mean**2).mean(axis=0)) / np.sqrt(var)).tolist(),
      "rel_rmse_variance": (np.sqrt(((mc_var - var) ** 2).mean(axis=0)) / var).tolist(),
      # Large-T theory: sd(mean)/sd = 1/sqrt(T); sd(var)/var = sqrt(mu4/var^2 - 1)/sqrt(T).
      "variance_constant": float(np.sqrt(mu4 / var**2 - 1)),
    }
  return out
