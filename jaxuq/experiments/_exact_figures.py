"""Figures of ``jaxuq exact``: the tiny network's histogram and MC convergence.

matplotlib is imported inside the functions that draw, never at import time.
"""

from __future__ import annotations

import pathlib
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


def convergence(seed: int, path: pathlib.Path) -> dict[str, Any]:
  """Draws ``convergence.png``: relative RMS error vs samples, log-log; returns the data."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  data = convergence_data(seed)
  t = np.asarray(data["T"], np.float64)
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
  for (name, net), color in zip(data["networks"].items(), ["C0", "C1"], strict=True):
    axes[0].loglog(t, net["rel_rmse_mean"], "o", ms=4, color=color, label=name)
    axes[1].loglog(t, net["rel_rmse_variance"], "o", ms=4, color=color, label=name)
    axes[1].loglog(t, net["variance_constant"] / np.sqrt(t), "--", color=color, lw=1)
  axes[0].loglog(t, 1 / np.sqrt(t), "k--", lw=1, label=r"$1/\sqrt{T}$")
  axes[0].set_title("MC mean: RMS error / exact std")
  axes[1].set_title("MC variance: RMS error / exact variance")
  for ax in axes:
    ax.set_xlabel("MC samples T")
    ax.grid(True, which="major", alpha=0.3)
  axes[0].legend(fontsize=8)
  axes[1].text(
    0.03,
    0.05,
    r"dashed: $\sqrt{\mu_4/\sigma^4-1}\,/\sqrt{T}$",
    transform=axes[1].transAxes,
    fontsize=8,
  )
  fig.suptitle(
    f"MC dropout converges to the exact moments ({data['repeats']} runs per T)", fontsize=10
  )
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return data


def histogram(summary: dict[str, Any], path: pathlib.Path) -> None:
  """Draws ``histogram.png``: exact probabilities (and MC frequencies) per output."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = sorted(summary["rows"], key=lambda r: r["output"])
  pos = np.arange(len(rows))
  mc = "samples" in summary
  width = 0.4 if mc else 0.6
  fig, ax = plt.subplots(figsize=(6, 3.6))
  ax.bar(pos - (width / 2 if mc else 0), [r["probability"] for r in rows], width, label="exact")
  if mc:
    ax.bar(
      pos + width / 2,
      [r["mc_frequency"] for r in rows],
      width,
      yerr=[2 * r["standard_error"] for r in rows],
      capsize=3,
      label=f"mc_sample, N={summary['samples']} (±2 SE)",
    )
  ax.set_xticks(pos, [f"{r['output']:.2f}\n({r['kept']})" for r in rows])
  ax.set_xlabel("output (units kept)")
  ax.set_ylabel("probability")
  ax.set_title("tiny network at x = 2: every possible output")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
