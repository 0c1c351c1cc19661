"""Figures of ``jaxuq regression``: losses, sampled curves, scatter, band, GIF, sweep panels.

matplotlib is imported inside the functions that draw, never at import time.
Each function takes a :class:`~jaxuq.experiments._regression_core.Result` (or
several) and a path, writes the file and returns nothing.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from jaxuq.data import regression_target
from jaxuq.experiments._regression_core import TRAIN_RANGES, Data, Result


def _plt() -> Any:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _mark_training_range(ax: Any) -> None:
  for i, (lo, hi) in enumerate(TRAIN_RANGES):
    ax.axvspan(lo, hi, color="tab:green", alpha=0.08, label="training range" if i == 0 else None)


def _truth(ax: Any, x: np.ndarray) -> None:
  ax.plot(x, regression_target(x), color="black", lw=1, ls="--", label="sin(2πx) − x")


def losses(result: Result, path: pathlib.Path) -> None:
  """Training loss (dropout on) and validation loss (dropout off) per epoch."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 3.5))
  epochs = np.arange(1, len(result.history["loss"]) + 1)
  ax.plot(epochs, result.history["loss"], label="training (dropout on)")
  ax.plot(epochs, result.history["val_loss"], label="validation (dropout off)")
  ax.set(xlabel="epoch", ylabel="MSE", yscale="log", title=f"losses, {result.name}")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def curves(result: Result, data: Data, path: pathlib.Path, max_curves: int = 100) -> None:
  """The sampled curves (one network each) over the training data, training range marked."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(8, 4))
  x = result.x[:, 0]
  for s in result.samples[:max_curves]:
    ax.plot(x, s, color="tab:blue", alpha=0.08, lw=0.8)
  ax.scatter(data.x_train[:, 0], data.y_train[:, 0], s=1, color="tab:orange", label="training data")
  _mark_training_range(ax)
  _truth(ax, x)
  n = min(max_curves, len(result.samples))
  ax.set(xlabel="x", ylabel="y", title=f"{n} MC dropout samples, {result.name}")
  ax.legend(loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def scatter(result: Result, path: pathlib.Path) -> None:
  """The deterministic prediction (dropout off) against the MC mean."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  mean = result.samples.mean(0)
  ax.scatter(mean, result.deterministic, s=2, alpha=0.2)
  lo, hi = min(mean.min(), result.deterministic.min()), max(mean.max(), result.deterministic.max())
  ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
  ax.set(xlabel="MC mean (dropout on)", ylabel="deterministic (dropout off)", title=result.name)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _band(ax: Any, result: Result, data: Data | None) -> None:
  x = result.x[:, 0]
  mean, std = result.samples.mean(0), result.samples.std(0, ddof=1)
  ax.fill_between(
    x, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.3, label="MC mean ± 2 std"
  )
  ax.plot(x, mean, color="tab:blue", lw=1, label="MC mean")
  if result.closed_form is not None:
    cf_mean, cf_std = result.closed_form
    for sign in (-1, 1):
      ax.plot(x, cf_mean + sign * 2 * cf_std, color="tab:red", lw=0.8, ls=":",
              label="closed form ± 2 std" if sign < 0 else None)  # fmt: skip
  if data is not None:
    ax.scatter(
      data.x_train[:, 0], data.y_train[:, 0], s=1, color="tab:orange", label="training data"
    )
  _mark_training_range(ax)
  _truth(ax, x)


def band(result: Result, data: Data, path: pathlib.Path, dpi: int = 100) -> None:
  """The MC mean ± 2 std band over the test grid, training range marked."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(8, 4))
  _band(ax, result, data)
  s = result.summary["ratios"]
  ax.set(
    xlabel="x", ylabel="y",
    title=f"{result.name}: std gap/inside {s['gap_over_inside']:.1f}×, "
    f"beyond 0.5/inside {s['beyond_over_inside']:.1f}×",
  )  # fmt: skip
  ax.legend(loc="lower left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def gif(result: Result, data: Data, path: pathlib.Path, fps: int = 10) -> int:
  """An animated GIF, one frame per MC sample (one coherent network each); returns the frames."""
  plt = _plt()
  from matplotlib.animation import FuncAnimation, PillowWriter

  x = result.x[:, 0]
  lo, hi = np.percentile(result.samples, [0.5, 99.5])
  fig, ax = plt.subplots(figsize=(6, 3.2))
  ax.scatter(data.x_train[:, 0], data.y_train[:, 0], s=1, color="tab:orange")
  _mark_training_range(ax)
  (line,) = ax.plot(x, result.samples[0], color="tab:blue", lw=1.2)
  ax.set(xlabel="x", ylabel="y", ylim=(lo, hi))
  n = len(result.samples)
  title = ax.set_title(f"{result.name}: sample 1/{n}")  # before tight_layout: room for it

  def frame(i: int) -> tuple[Any, ...]:
    line.set_ydata(result.samples[i])
    title.set_text(f"{result.name}: sample {i + 1}/{n}")
    return line, title

  fig.tight_layout()
  FuncAnimation(fig, frame, frames=n, blit=False).save(path, writer=PillowWriter(fps=fps), dpi=80)
  plt.close(fig)
  return n


def sweep(results: list[Result], data: Data, path: pathlib.Path) -> None:
  """One panel per setting: 20 sampled curves and the ± 2 std band, on shared axes."""
  plt = _plt()
  cols = min(3, len(results))
  rows = -(-len(results) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.3 * rows), sharex=True, sharey=True,
                           squeeze=False)  # fmt: skip
  for ax, r in zip(axes.flat, results, strict=False):
    for s in r.samples[:20]:
      ax.plot(r.x[:, 0], s, color="tab:blue", alpha=0.15, lw=0.6)
    _band(ax, r, None)
    s = r.summary
    ax.set_title(f"{r.name}: std inside {s['mean_std']['inside']:.3f}, "
                 f"outside {s['mean_std']['outside']:.3f}", fontsize=9)  # fmt: skip
  for ax in list(axes.flat)[len(results) :]:
    ax.axis("off")
  axes.flat[0].set_ylim(-10, 4)
  axes.flat[0].legend(loc="lower left", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
