"""Figures of the regression experiment: losses, sampled curves, scatter, band, animation, sweep.

Every function takes plain arrays: inputs ``x`` of shape ``(n,)`` on the test
grid, MC samples ``(samples, n)`` (one coherent network per row), and the
training rows ``(x_train, y_train)``; the training range and the target
``sin(2 pi x) - x`` are those of :mod:`jaxuq.data`. ``x`` of shape ``(n, 1)``
and samples ``(samples, n, 1)`` (as ``regression_test_inputs`` and
``mc_sample`` return them) are accepted too: the trailing axis of 1 is dropped.
"""

from __future__ import annotations

import numbers
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxuq._src.data.regression import TRAIN_INTERVALS, regression_target
from jaxuq._src.extras import require
from jaxuq._src.plot.figure import finish, new_figure, output_path

Train = tuple[np.ndarray, np.ndarray]
Path = str | os.PathLike | None


def _mark_training_range(ax: Any) -> None:
  for i, (lo, hi) in enumerate(TRAIN_INTERVALS):
    ax.axvspan(lo / 1000, hi / 1000, color="tab:green", alpha=0.08,
               label="training range" if i == 0 else None)  # fmt: skip


def _truth(ax: Any, x: np.ndarray) -> None:
  ax.plot(x, regression_target(x), color="black", lw=1, ls="--", label="sin(2πx) − x")


def _curves(x: Any, samples: Any, *, least: int) -> tuple[np.ndarray, np.ndarray]:
  """``x`` as ``(n,)`` and ``samples`` as ``(samples, n)`` float64 (a trailing axis of 1 dropped).

  Raises:
    ValueError: other shapes, or fewer than ``least`` samples.
  """
  xs, ss = np.asarray(x, np.float64), np.asarray(samples, np.float64)
  if xs.ndim == 2 and xs.shape[1] == 1:
    xs = xs[:, 0]
  if ss.ndim == 3 and ss.shape[2] == 1:
    ss = ss[..., 0]
  if xs.ndim != 1 or ss.ndim != 2 or ss.shape[1] != xs.shape[0]:
    raise ValueError(
      f"x must have shape (n,) or (n, 1) and samples (samples, n) or (samples, n, 1), got x "
      f"{np.shape(x)} and samples {np.shape(samples)}; pass one row of outputs per sample"
    )
  if len(ss) < least:
    raise ValueError(
      f"samples must hold at least {least} sample(s) (rows), got {len(ss)}; draw more samples"
    )
  return xs, ss


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
    samples: ``(samples, n)`` MC outputs, one network per row, at least one.
    train: ``(x_train, y_train)``.
    title: the title.
    max_curves: at most this many curves, an int >= 1.
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.

  Raises:
    ValueError: ``max_curves < 1``, no sample, or shapes that disagree.
  """
  if isinstance(max_curves, bool) or not isinstance(max_curves, numbers.Integral) or max_curves < 1:
    raise ValueError(f"max_curves must be an int >= 1, got {max_curves!r}; pass e.g. 100")
  x, samples = _curves(x, samples, least=1)
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

  Args:
    mc_mean: ``(n,)`` MC means (any array-like, e.g. a list or ``(n, 1)``).
    deterministic: ``(n,)`` deterministic predictions, as many as ``mc_mean``.
    title: the title.
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.

  Raises:
    ValueError: no points, or different numbers of points.
  """
  mc_mean = np.asarray(mc_mean, np.float64).reshape(-1)
  deterministic = np.asarray(deterministic, np.float64).reshape(-1)
  if mc_mean.size == 0 or mc_mean.size != deterministic.size:
    raise ValueError(
      f"mc_mean and deterministic must hold the same number (>= 1) of points, got "
      f"{mc_mean.size} and {deterministic.size}; pass one value per input of each"
    )
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

  The std is the samples' standard deviation with ``ddof=1`` (the unbiased
  variance over the samples), so at least 2 samples are needed.

  Args:
    x: ``(n,)`` inputs (or ``(n, 1)``).
    samples: ``(samples, n)`` (or ``(samples, n, 1)``), at least 2 samples.
    train: ``(x_train, y_train)`` to draw, or None.
    closed_form: ``(mean, std)`` of shape ``(n,)`` each, or None.
    title: the title.
    dpi: resolution of the saved file.
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.

  Raises:
    ValueError: fewer than 2 samples, or shapes that disagree.
  """
  x, samples = _curves(x, samples, least=2)
  fig, ax = new_figure((8, 4), who="jaxuq.plot.regression_band")
  _band(ax, x, samples, train, closed_form)
  ax.set(xlabel="x", ylabel="y", title=title)
  return finish(fig, path, dpi=dpi, legend=ax, legend_kwargs={"loc": "lower left", "fontsize": 8})


def regression_animation(x: np.ndarray, samples: np.ndarray, train: Train, path: str | os.PathLike,
                         *, name: str = "", fps: int = 10) -> int:  # fmt: skip
  """An animated GIF at ``path``, one frame per sampled network.

  Args:
    x: ``(n,)`` inputs (or ``(n, 1)``).
    samples: ``(samples, n)`` (or ``(samples, n, 1)``), at least one sample
      and one finite value; NaN values are left out of the y-range.
    train: ``(x_train, y_train)``.
    path: the GIF file: ``.gif`` or no suffix (``.gif`` is then added); ``~``
      is expanded and a missing folder created.
    name: the run's name, in each frame's title.
    fps: frames per second, > 0.

  Returns:
    the number of frames.

  Raises:
    MissingDependencyError: matplotlib or Pillow is not installed.
    ValueError: ``path`` has another suffix or is a folder, ``fps <= 0``, no
      sample, no finite value, or shapes that disagree.
  """
  gif = _gif_path(path)
  if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps < np.inf:
    raise ValueError(f"fps must be a number > 0, got {fps!r}; pass e.g. 10")
  x, samples = _curves(x, samples, least=1)
  if not np.isfinite(samples).any():
    raise ValueError("samples holds no finite value (all NaN or infinite); nothing to draw")
  require("PIL", "plot", who="jaxuq.plot.regression_animation")
  fig, ax = new_figure((6, 3.2), who="jaxuq.plot.regression_animation")
  from matplotlib.animation import FuncAnimation, PillowWriter

  lo, hi = np.nanpercentile(np.where(np.isfinite(samples), samples, np.nan), [0.5, 99.5])
  lo, hi = (lo, hi) if hi > lo else (lo - 1.0, hi + 1.0)  # constant samples: a range of 2
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
  FuncAnimation(fig, frame, frames=n, blit=False).save(gif, writer=PillowWriter(fps=fps), dpi=80)
  return n


def _gif_path(path: str | os.PathLike) -> pathlib.Path:
  suffix = pathlib.Path(path).suffix
  if suffix and suffix.lower() != ".gif":
    raise ValueError(
      f"path must name a GIF file (suffix .gif), got {str(path)!r}; pass e.g. "
      f"{str(pathlib.Path(path).with_suffix('.gif'))!r}"
    )
  return output_path(path, suffix=".gif")


def regression_sweep(panels: Sequence[Mapping[str, Any]], *,
                     ylim: tuple[float, float] | None = None, path: Path = None) -> Any:  # fmt: skip
  """One panel per setting: 20 sampled curves and the ± 2 std band, on shared axes.

  Args:
    panels: at least one, each ``{'x': (n,), 'samples': (samples, n), 'title': str}``
      (at least 2 samples) and optionally ``'closed_form': (mean, std)``.
    ylim: the y-range ``(low, high)`` of every panel, or None to fit all
      panels' curves and bands (one range shared by the panels).
    path: where to save the figure, or None.

  Returns:
    the ``Figure``.

  Raises:
    ValueError: no panel, a panel with fewer than 2 samples or shapes that
      disagree, or ``ylim`` not two finite numbers, low < high.
  """
  if not panels:
    raise ValueError(
      "panels must hold at least one panel, got none; pass [{'x', 'samples', 'title'}]"
    )
  if ylim is not None and not (len(ylim) == 2 and np.isfinite(ylim).all() and ylim[0] < ylim[1]):
    raise ValueError(f"ylim must be (low, high), finite with low < high, or None, got {ylim!r}")
  curves = [_curves(p["x"], p["samples"], least=2) for p in panels]
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = new_figure((5 * cols, 3.3 * rows), who="jaxuq.plot.regression_sweep", nrows=rows,
                         ncols=cols, sharex=True, sharey=True, squeeze=False)  # fmt: skip
  for ax, p, (x, samples) in zip(axes.flat, panels, curves, strict=False):
    for s in samples[:20]:
      ax.plot(x, s, color="tab:blue", alpha=0.15, lw=0.6)
    _band(ax, x, samples, None, p.get("closed_form"))
    ax.set_title(p["title"], fontsize=9)
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis("off")
  if ylim is not None:
    axes.flat[0].set_ylim(*ylim)  # shared: every panel
  return finish(fig, path, dpi=90, legend=axes.flat[0],
                legend_kwargs={"loc": "lower left", "fontsize": 7})  # fmt: skip
