"""The computations of ``jaxuq regression``: data split, training, MC prediction, summaries.

No plotting and no argument parsing here. One setting (dropout rate,
activation, placement) is trained with :func:`jaxuq.train.train` and sampled
with one :func:`jaxuq.mc_sample` call over the test grid, with one mask
shared across the batch (each sample is one coherent network; the per-input
marginals, hence every std below, are those of per-example masks).

Keys: ``data, holdout, train, sample = jax.random.split(jax.random.key(seed), 4)``;
every setting of a sweep uses the same four keys (same data, same initial key,
same sample keys), so settings differ only by the model.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxuq
import jaxuq.exact
import jaxuq.metrics
from jaxuq.data import (
  in_training_range,
  regression_target,
  regression_test_inputs,
  regression_train_data,
)
from jaxuq.experiments._calibration_eval import regression_intervals
from jaxuq.models import MLP
from jaxuq.train import train

# The seed's five settings: (rate, activation, placement).
SWEEP: tuple[tuple[float, str, str], ...] = (
  (0.75, "relu", "all"),
  (0.5, "relu", "all"),
  (0.1, "relu", "all"),
  (0.5, "tanh", "all"),
  (0.5, "relu", "last"),
)
GAP = (-1.5, -1.0)  # no training data in [-1.5, -1)
BEYOND = 0.5  # nor from 0.5 on
LEVEL = 0.9


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run (with the seed, enough to repeat it bit for bit)."""

  seed: int = 0
  width: int = 1024
  depth: int = 4
  epochs: int = 30
  batch_size: int = 32
  learning_rate: float = 1e-3
  samples: int = 100
  noise: float = 0.0
  holdout_fraction: float = 0.1
  val_fraction: float = 0.1
  sweep_stride: int = 5  # sweep settings are sampled on every k-th test input


def setting_name(rate: float, activation: str, placement: str) -> str:
  return f"rate{rate:g}-{activation}-{placement}"


@dataclasses.dataclass(frozen=True)
class Data:
  """Training rows, held-out rows (from the training range) and the test grid."""

  x_train: np.ndarray  # (n_train, 1) float32
  y_train: np.ndarray
  x_hold: np.ndarray  # (n_hold, 1), never trained on
  y_hold: np.ndarray
  x_test: np.ndarray  # (5000, 1): [-2, 3), step 0.001


def make_data(key: jax.Array, holdout_key: jax.Array, cfg: Config) -> Data:
  """The seed's 2000 points (noise from ``key``), a random ``holdout_fraction`` held out."""
  x, y = regression_train_data(key, noise=cfg.noise)
  n_hold = round(len(x) * cfg.holdout_fraction)
  perm = np.asarray(jax.random.permutation(holdout_key, len(x)))
  hold, rows = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
  return Data(x[rows], y[rows], x[hold], y[hold], regression_test_inputs())


def _mean(a: np.ndarray, where: np.ndarray) -> float:
  return float(a[where].mean())


def region_masks(x: np.ndarray) -> dict[str, np.ndarray]:
  """Boolean masks over ``x (n, 1)``: inside the training range, the gap, beyond 0.5."""
  x = np.asarray(x)[:, 0]
  inside = in_training_range(x)
  return {
    "inside": inside,
    "gap": (x >= GAP[0]) & (x < GAP[1]),
    "beyond": x >= BEYOND,
    "outside": ~inside,
  }


def std_summary(std: np.ndarray, x: np.ndarray) -> dict[str, Any]:
  """Mean predictive std per region and the ratios to the inside one."""
  regions = region_masks(x)
  means = {name: _mean(std, m) for name, m in regions.items()}
  ratios = {f"{n}_over_inside": means[n] / means["inside"] for n in ("gap", "beyond", "outside")}
  return {"mean_std": means, "ratios": ratios}


def heldout_metrics(samples: np.ndarray, y: np.ndarray) -> dict[str, float]:
  """Accuracy and calibration of the MC predictive on held-out points, ``samples (S, n)``."""
  mean, std = samples.mean(0), samples.std(0, ddof=1)
  return {
    "points": int(y.shape[0]),
    "rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
    "gaussian_nll": float(jaxuq.metrics.gaussian_nll(mean, std, y)),
    "crps": float(jaxuq.metrics.crps(samples, y)),
    "coverage_90": float(jaxuq.metrics.interval_coverage(samples, y, LEVEL)),
    "interval_width_90": float(jaxuq.metrics.mean_interval_width(samples, LEVEL)),
  }


@dataclasses.dataclass
class Result:
  """One trained and sampled setting; ``summary`` is what goes into ``summary.json``."""

  name: str
  history: dict[str, np.ndarray]
  x: np.ndarray  # the inputs sampled, (n, 1)
  samples: np.ndarray  # (S, n)
  deterministic: np.ndarray  # (n,)
  closed_form: tuple[np.ndarray, np.ndarray] | None  # (mean, std) for placement 'last'
  summary: dict[str, Any]


def run_setting(
  keys: dict[str, jax.Array],
  data: Data,
  cfg: Config,
  rate: float,
  activation: str,
  placement: str,
  *,
  checkpoint: pathlib.Path,
  resume: bool,
  progress: bool,
  stride: int = 1,
) -> Result:
  """Trains (or restores) one setting, samples it, and summarises it.

  With ``resume`` an existing checkpoint is read back (training goes on only
  if it holds fewer than ``cfg.epochs`` epochs); without it the checkpoint is
  replaced by a fresh training run.
  """
  name = setting_name(rate, activation, placement)
  model = MLP(
    depth=cfg.depth, width=cfg.width, activation=activation, rate=rate, placement=placement
  )
  if not resume:  # a fresh run: its metadata goes too, or it would count old epochs
    checkpoint.unlink(missing_ok=True)
    checkpoint.with_name(checkpoint.name + ".json").unlink(missing_ok=True)
  before = checkpoint_epochs(checkpoint)
  start = time.perf_counter()
  state, history = train(
    keys["train"], model, optax.adam(cfg.learning_rate), data.x_train, data.y_train,
    epochs=cfg.epochs, batch_size=cfg.batch_size, val_fraction=cfg.val_fraction,
    checkpoint=checkpoint, checkpoint_every=10, progress=None if progress else False,
  )  # fmt: skip
  jax.block_until_ready(state.params)
  train_s = time.perf_counter() - start
  fresh = int(history["loss"].shape[0]) - before

  x = data.x_test[::stride]
  hold_idx = np.rint((data.x_hold[:, 0] - data.x_test[0, 0]) * 1000).astype(np.int64)
  assert np.array_equal(data.x_test[hold_idx], data.x_hold)  # the same grid points, bit for bit
  x_all = np.concatenate([x, data.x_test[hold_idx]]) if stride > 1 else x
  hold_pos = np.arange(len(x), len(x_all)) if stride > 1 else hold_idx
  predict = jaxuq.from_linen(model, state.variables, shared_mask=True, train=False)
  start = time.perf_counter()
  # One jitted call: the bar shows that it runs and how long it took, not per-sample steps.
  # On a terminal only, unless --no-progress: logs are not flooded.
  with tqdm(
    total=cfg.samples, desc="MC samples", unit="sample", disable=None if progress else True
  ) as bar:
    out = jaxuq.mc_sample(predict, keys["sample"], jnp.asarray(x_all), num_samples=cfg.samples)
    all_samples = np.asarray(jax.block_until_ready(out))[..., 0]
    bar.update(cfg.samples)
  sample_s = time.perf_counter() - start
  samples = all_samples[:, : len(x)]
  det = np.asarray(model.apply(state.variables, jnp.asarray(x), train=False))[:, 0]
  mean, std = samples.mean(0), samples.std(0, ddof=1)
  inside = region_masks(x)["inside"]

  summary: dict[str, Any] = {
    "name": name,
    "rate": rate,
    "activation": activation,
    "placement": placement,
    "parameters": int(sum(p.size for p in jax.tree.leaves(state.params))),
    "epochs": int(history["loss"].shape[0]),
    "epochs_trained_this_run": fresh,
    "final_loss": float(history["loss"][-1]),
    "final_val_loss": float(history["val_loss"][-1]),
    "test_points": int(len(x)),
    **std_summary(std, x),
    "rmse_mc_mean_vs_deterministic": {
      "all": float(np.sqrt(np.mean((mean - det) ** 2))),
      "inside": float(np.sqrt(np.mean((mean - det)[inside] ** 2))),
    },
    "rmse_mc_mean_vs_target_inside": float(
      np.sqrt(np.mean((mean - regression_target(x[:, 0]))[inside] ** 2))
    ),
    "heldout": heldout_metrics(all_samples[:, hold_pos], data.y_hold[:, 0]),
    "intervals_90": regression_intervals(
      cfg.seed,
      all_samples[:, hold_pos],
      data.y_hold[:, 0],
      samples,
      regression_target(x[:, 0]),
      region_masks(x),
    ),  # fmt: skip
    "wall_s": {"train": train_s, "sample": sample_s},
  }
  closed = None
  if placement == "last":
    closed = closed_form(model, state.variables, x)
    summary["closed_form"] = compare_closed_form(closed, mean, std, x)
  return Result(name, history, x, samples, det, closed, summary)


def checkpoint_epochs(checkpoint: pathlib.Path) -> int:
  """Epochs held by the checkpoint (from its metadata file); 0 if there is none."""
  meta = checkpoint.with_name(checkpoint.name + ".json")
  return int(json.loads(meta.read_text())["epoch"]) if meta.exists() else 0


def closed_form(model: MLP, variables: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Exact MC-dropout mean and std of a last-layer-dropout model (one forward pass)."""
  m = jaxuq.exact.closed_form_moments(jaxuq.from_linen(model, variables, train=False), x)
  return np.asarray(m.mean)[:, 0], np.sqrt(np.asarray(m.var)[:, 0])


def compare_closed_form(
  closed: tuple[np.ndarray, np.ndarray], mean: np.ndarray, std: np.ndarray, x: np.ndarray
) -> dict[str, Any]:
  """The closed-form moments next to the MC estimates."""
  cf_mean, cf_std = closed
  return {
    **std_summary(cf_std, x),
    "rmse_mc_mean_vs_closed_form": float(np.sqrt(np.mean((mean - cf_mean) ** 2))),
    "median_relative_error_of_mc_std": float(np.median(np.abs(std - cf_std) / cf_std)),
  }


def findings(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """The seed's findings, read off the sweep's numbers (each a bool and its evidence).

  Away from the data means the gap and beyond 0.5 together; the gap alone is
  reported separately (the seed saw the spread grow there too).
  """

  def outside(name: str) -> float:
    return results[name]["mean_std"]["outside"]

  rates = [(r, setting_name(r, "relu", "all")) for r in (0.1, 0.5, 0.75)]
  spread = {f"{r:g}": outside(n) for r, n in rates if n in results}
  vals = list(spread.values())
  out: dict[str, Any] = {
    "higher_rate_larger_spread": {
      "holds": len(vals) > 1 and all(a < b for a, b in zip(vals, vals[1:], strict=False)),
      "outside_mean_std_by_rate": spread,
    },
    "more_uncertain_away_from_data": {
      "holds": all(r["ratios"]["outside_over_inside"] > 1 for r in results.values()),
      "outside_over_inside": {n: r["ratios"]["outside_over_inside"] for n, r in results.items()},
    },
  }
  out["more_uncertain_in_gap"] = {
    "holds": all(r["ratios"]["gap_over_inside"] > 1 for r in results.values()),
    "gap_over_inside": {n: r["ratios"]["gap_over_inside"] for n, r in results.items()},
  }
  relu, tanh = setting_name(0.5, "relu", "all"), setting_name(0.5, "tanh", "all")
  if relu in results and tanh in results:
    out["tanh_narrower_than_relu"] = {
      "holds": outside(tanh) < outside(relu),
      "outside_mean_std": {"tanh": outside(tanh), "relu": outside(relu)},
      "inside_mean_std": {
        "tanh": results[tanh]["mean_std"]["inside"],
        "relu": results[relu]["mean_std"]["inside"],
      },
    }
  return out
