"""``jaxuq active``'s outputs: the table of images needed per test error, the figure, the summary.

The paper's Table 1 counts the acquired images (the 20-image seed set not
included) a function needs before the model's test error reaches 10 % and
5 %; here a function reaches a threshold at the first round where its test
error, averaged over the repeats, is at or below it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# Gal, Islam & Ghahramani (2017), Table 1: acquired images to reach 10 % / 5 % test error on MNIST.
PAPER_TABLE = {
  "bald": (145, 335),
  "variation_ratios": (120, 295),
  "max_entropy": (165, 355),
  "mean_std": (230, 695),
  "random": (255, 835),
}
THRESHOLDS = (0.10, 0.05)
LABELS = {
  "bald": "BALD",
  "variation_ratios": "Var Ratios",
  "max_entropy": "Max Entropy",
  "mean_std": "Mean STD",
  "random": "Random",
  "batchbald": "BatchBALD",
}


def images_to_reach(acquired: np.ndarray, error: np.ndarray, threshold: float) -> int | None:
  """The first number of acquired images at which ``error`` (per round) is ``<= threshold``."""
  hits = np.flatnonzero(np.asarray(error) <= threshold)
  return int(acquired[hits[0]]) if hits.size else None


def table(functions: list[str], history: dict[str, np.ndarray], seed_size: int) -> dict[str, Any]:
  """Per function: images to reach each threshold (mean error over repeats), and the final error.

  Args:
    functions: the acquisition functions' names, in the order of the history's axis 1.
    history: the loop's history, entries ``(rounds, functions, repeats)``.
    seed_size: the seed set's size (subtracted: only acquired images count).
  """
  acquired = history["num_labelled"][:, 0, 0] - seed_size
  rows = {}
  for f, name in enumerate(functions):
    error = history["test_error"][:, f, :]
    mean = error.mean(axis=1)
    rows[name] = {
      "images_to_10pct": images_to_reach(acquired, mean, THRESHOLDS[0]),
      "images_to_5pct": images_to_reach(acquired, mean, THRESHOLDS[1]),
      "final_error_mean": float(mean[-1]),
      "final_error_per_repeat": error[-1].tolist(),
      "paper_images_to_10pct_5pct": PAPER_TABLE.get(name),
    }
  return {"acquired_images": acquired.tolist(), "rows": rows}


def format_table(result: dict[str, Any], rounds_done: int) -> str:
  """A short plain-text table of :func:`table`'s result, ours beside the paper's."""

  def cell(v: int | None) -> str:
    return "-" if v is None else str(v)

  lines = [
    f"acquired images to reach a test error (mean over repeats; {rounds_done} rounds run)",
    f"{'function':<12} {'10% ours':>9} {'paper':>6} {'5% ours':>8} {'paper':>6} {'final err':>9}",
  ]
  for name, row in result["rows"].items():
    paper = row["paper_images_to_10pct_5pct"] or (None, None)
    lines.append(
      f"{LABELS.get(name, name):<12} {cell(row['images_to_10pct']):>9} {cell(paper[0]):>6} "
      f"{cell(row['images_to_5pct']):>8} {cell(paper[1]):>6} {row['final_error_mean']:>9.4f}"
    )
  return "\n".join(lines)


def error_figure(
  functions: list[str], history: dict[str, np.ndarray], seed_size: int,
  path: str | os.PathLike | None = None,
) -> Any:  # fmt: skip
  """Test error (%) against acquired images per function: the repeats' mean and their range."""
  from jaxuq import plot

  acquired = history["num_labelled"][:, 0, 0] - seed_size
  names = [LABELS.get(name, name) for name in functions]
  return plot.active_learning_curves(
    acquired, history["test_error"], names, thresholds=THRESHOLDS, path=path
  )
