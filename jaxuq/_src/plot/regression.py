"""Figures of the regression experiment: losses, sampled curves, scatter, band, animation, sweep.

Every function takes plain arrays: inputs ``x`` of shape ``(n,)`` on the test
grid, MC samples ``(samples, n)`` (one coherent network per row), and the
training rows ``(x_train, y_train)``; the training range and the target
``sin(2 pi x) - x`` are those of :mod:`jaxuq.data`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxuq._src.data.regression import TRAIN_INTERVALS, regression_target
from jaxuq._src.extras import require
from jaxuq._src.plot.figure import finish, new_figure

Train = tuple[np.ndarray, np.ndarray]
Path = str | os.PathLike | None


def _mark_training_range(ax: Any) -> None:
  for i, (lo, hi) in enumerate(TRAIN_INTERVALS):
    ax.axvspan(lo / 1000, hi / 1000, color="tab:green", alpha=0.08,
               label="training range" if i == 0 else None)  # fmt: skip


def _truth(ax: Any, x: np.ndarray) -> None:
  ax.plot(x, regression_target(x), color="black", lw=1, ls="--", label="sin(2πx) − x")


def _train_points(ax: Any, train: Train, label: str | None = "training data") -> None:
  x, y = (np.asarray(a).reshape(-1) for a in train)
  ax.scatter(x, y, s=1, color="tab:orange", label=label)


def regression_losses(
  history: Mapping[str, Any], *, title: str = "losses", path: Path = None
) -> Any:
  """Training loss (dropout on) and validation loss (dropout off) per epoch, log scale.

  Args:
    history: ``{'loss': (epochs,), 'val_loss': (epochs,)}`` as ``train`` returns it.
    title: the title.
    path: where to save the figure (PNG), or None.

  Returns:
    the ``matplotlib.figure.Figure``.

  Examples:
    >>> from jaxuq import plot
    >>> fig = plot.regression_losses({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})
    >>> fig.axes[0].get_yscale(), len(fig.axes[0].lines)
    ('log', 2)
  """
  fig, ax = new_figure((6, 3.5), who="jaxuq.plot.regression_losses")
  epochs = np.arange(1, len(history["loss"]) + 1)
  ax.plot(epochs, history["loss"], label="training (dropout on)")
  ax.plot(epochs, history["val_loss"], label="validation (dropout off)")
  ax.set(xlabel="epoch", ylabel="MSE", yscale="log", title=title)
  return finish(fig, path, dpi=100, legend=ax)


def regression_curves(x: np.ndarray, samples: np.ndarray, train: Train, *, title: str = "",
                      max_curves: int = 100, path: Path = None) -> Any:  # fmt: skip
  """The first ``max_curves`` sampled curves over the training data, training range marked.

  Args:
    x: ``(n,)`` inputs.
    samples: ``(samples, n)`` MC outputs, one network per row.
    train: ``(x_train, y_train)``.
    title: the title.
    max_curves: at most this many curves.
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.
  """
  fig, ax = new_figure((8, 4), who="jaxuq.plot.regression_curves")
  for s in samples[:max_curves]:
    ax.plot(x, s, color="tab:blue", alpha=0.08, lw=0.8)
  _train_points(ax, train)
  _mark_training_range(ax)
  _truth(ax, x)
  ax.set(xlabel="x", ylabel="y", title=title)
  return finish(fig, path, dpi=100, legend=ax, legend_kwargs={"loc": "lower left"})


def regression_scatter(mc_mean: np.ndarray, deterministic: np.ndarray, *, title: str = "",
                       path: Path = None) -> Any:  # fmt: skip
  """The deterministic prediction (dropout off) against the MC mean, with the diagonal.

  Returns:
    the ``Figure``.
  """
  fig, ax = new_figure((4.5, 4.5), who="jaxuq.plot.regression_scatter")
  ax.scatter(mc_mean, deterministic, s=2, alpha=0.2)
  lo, hi = min(mc_mean.min(), deterministic.min()), max(mc_mean.max(), deterministic.max())
  ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
  ax.set(xlabel="MC mean (dropout on)", ylabel="deterministic (dropout off)", title=title)
  return finish(fig, path, dpi=100)


def _band(ax: Any, x: np.ndarray, samples: np.ndarray, train: Train | None,
          closed_form: tuple[np.ndarray, np.ndarray] | None) -> None:  # fmt: skip
  mean, std = samples.mean(0), samples.std(0, ddof=1)
  ax.fill_between(
    x, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.3, label="MC mean ± 2 std"
  )
  ax.plot(x, mean, color="tab:blue", lw=1, label="MC mean")
  if closed_form is not None:
    cf_mean, cf_std = closed_form
    for sign in (-1, 1):
      ax.plot(x, cf_mean + sign * 2 * cf_std, color="tab:red", lw=0.8, ls=":",
              label="closed form ± 2 std" if sign < 0 else None)  # fmt: skip
  if train is not None:
    _train_points(ax, train)
  _mark_training_range(ax)
  _truth(ax, x)


def regression_band(x: np.ndarray, samples: np.ndarray, train: Train | None = None, *,
                    closed_form: tuple[np.ndarray, np.ndarray] | None = None, title: str = "",
                    dpi: int = 100, path: Path = None) -> Any:  # fmt: skip
  """The MC mean ± 2 std band (and the closed-form ± 2 std if given), training range marked.

  Args:
    x: ``(n,)`` inputs.
    samples: ``(samples, n)``.
    train: ``(x_train, y_train)`` to draw, or None.
    closed_form: ``(mean, std)`` of shape ``(n,)`` each, or None.
    title: the title.
    dpi: resolution of the saved file.
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.
  """
  fig, ax = new_figure((8, 4), who="jaxuq.plot.regression_band")
  _band(ax, x, samples, train, closed_form)
  ax.set(xlabel="x", ylabel="y", title=title)
  return finish(fig, path, dpi=dpi, legend=ax, legend_kwargs={"loc": "lower left", "fontsize": 8})


def regression_animation(x: np.ndarray, samples: np.ndarray, train: Train, path: str | os.PathLike,
                         *, name: str = "", fps: int = 10) -> int:  # fmt: skip
  """An animated GIF at ``path``, one frame per sampled network.

  Args:
    x: ``(n,)`` inputs.
    samples: ``(samples, n)``.
    train: ``(x_train, y_train)``.
    path: the GIF file.
    name: the run's name, in each frame's title.
    fps: frames per second.

  Returns:
    the number of frames.

  Raises:
    MissingDependencyError: matplotlib or Pillow is not installed.
  """
  require("PIL", "plot", who="jaxuq.plot.regression_animation")
  fig, ax = new_figure((6, 3.2), who="jaxuq.plot.regression_animation")
  from matplotlib.animation import FuncAnimation, PillowWriter

  lo, hi = np.percentile(samples, [0.5, 99.5])
  _train_points(ax, train, label=None)
  _mark_training_range(ax)
  (line,) = ax.plot(x, samples[0], color="tab:blue", lw=1.2)
  ax.set(xlabel="x", ylabel="y", ylim=(lo, hi))
  n = len(samples)
  title = ax.set_title(f"{name}: sample 1/{n}")  # before tight_layout: room for it

  def frame(i: int) -> tuple[Any, ...]:
    line.set_ydata(samples[i])
    title.set_text(f"{name}: sample {i + 1}/{n}")
    return line, title

  fig.tight_layout()
  FuncAnimation(fig, frame, frames=n, blit=False).save(
    pathlib.Path(path), writer=PillowWriter(fps=fps), dpi=80
  )
  return n


def regression_sweep(panels: Sequence[Mapping[str, Any]], *, path: Path = None) -> Any:
  """One panel per setting: 20 sampled curves and the ± 2 std band, on shared axes.

  Args:
    panels: each ``{'x': (n,), 'samples': (samples, n), 'title': str}`` and
      optionally ``'closed_form': (mean, std)``.
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.
  """
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = new_figure((5 * cols, 3.3 * rows), who="jaxuq.plot.regression_sweep", nrows=rows,
                         ncols=cols, sharex=True, sharey=True, squeeze=False)  # fmt: skip
  for ax, p in zip(axes.flat, panels, strict=False):
    for s in p["samples"][:20]:
      ax.plot(p["x"], s, color="tab:blue", alpha=0.15, lw=0.6)
    _band(ax, p["x"], p["samples"], None, p.get("closed_form"))
    ax.set_title(p["title"], fontsize=9)
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis("off")
  axes.flat[0].set_ylim(-10, 4)
  return finish(fig, path, dpi=90, legend=axes.flat[0],
                legend_kwargs={"loc": "lower left", "fontsize": 7})  # fmt: skip
