"""Figures of the digits-vs-letters experiment: score histograms, ROC, per-class bars,
reliability and accuracy-coverage curves.

Every function takes plain arrays and dictionaries (scores per input, curves as
lists) and returns the ``matplotlib.figure.Figure``, saved to ``path`` if given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxuq import metrics
from jaxuq._src.plot.figure import finish, new_figure

Path = str | os.PathLike | None


def score_histograms(scores: Mapping[str, Mapping[str, np.ndarray]],
                     labels: Mapping[str, str], *, title: str = "", path: Path = None) -> Any:  # fmt: skip
  """One panel per score, one histogram (density) per data set.

  Each panel's 40 bins span the smallest to the largest score of all sets
  (negative scores included), so each set's histogram integrates to 1.

  Args:
    scores: ``{set name: {score name: (n,) finite scores}}``, ``n >= 1``.
    labels: ``{score name: axis label}``: the scores drawn, in order.
    title: the figure's title.
    path: where to save the figure, or None.

  Raises:
    ValueError: no set or no score to draw, an empty set of scores, or a NaN or
      infinite score.
  """
  if not labels:
    raise ValueError(
      "labels must name at least one score to draw, got {}; pass {score: axis label}"
    )
  drawn = {score: _finite_scores(scores, score) for score in labels}
  fig, axes = new_figure((5 * len(labels), 3.6), who="jaxuq.plot.score_histograms",
                         ncols=len(labels), squeeze=False)  # fmt: skip
  for ax, (score, label) in zip(axes[0], labels.items(), strict=True):
    lo = min(float(s.min()) for s in drawn[score].values())
    hi = max(float(s.max()) for s in drawn[score].values())
    span = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)  # all equal: one bar, width 1
    for name, s in drawn[score].items():
      ax.hist(s, bins=40, range=span, density=True, alpha=0.5, label=name)
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend()
  fig.suptitle(title)
  return finish(fig, path, dpi=90)


def _finite_scores(scores: Mapping[str, Mapping[str, Any]], score: str) -> dict[str, np.ndarray]:
  """``{set name: (n,) float64}`` of ``score``, checked: some sets, none empty, all finite."""
  if not scores:
    raise ValueError("scores must hold at least one data set, got {}; pass {set: {score: values}}")
  out = {}
  for name, s in scores.items():
    values = np.asarray(s[score], np.float64).reshape(-1)
    if values.size == 0:
      raise ValueError(f"scores[{name!r}][{score!r}] is empty; pass at least one score per set")
    if not np.isfinite(values).all():
      bad = int((~np.isfinite(values)).sum())
      raise ValueError(
        f"scores[{name!r}][{score!r}] holds {bad} NaN or infinite value(s); drop or fix them first"
      )
    out[name] = values
  return out


def roc_curves(curves: Mapping[str, Mapping[str, tuple[Any, Any, float]]], *, title: str = "",
               path: Path = None) -> Any:  # fmt: skip
  """ROC curves: one panel per OOD set, one line per (model, score).

  Args:
    curves: ``{OOD set: {line label: (fpr, tpr, auroc)}}``, at least one set.
    title: the figure's title.
    path: where to save the figure, or None.

  Raises:
    ValueError: ``curves`` is empty.
  """
  if not curves:
    raise ValueError(
      "curves must hold at least one OOD set, got {}; pass {set: {label: (fpr, tpr, auroc)}}"
    )
  fig, axes = new_figure((5 * len(curves), 4.4), who="jaxuq.plot.roc_curves", ncols=len(curves),
                         squeeze=False)  # fmt: skip
  for ax, (ood, lines) in zip(axes[0], curves.items(), strict=True):
    for label, (fpr, tpr, auc) in lines.items():
      ax.plot(fpr, tpr, lw=1.3, label=f"{label} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate (digits rejected)")
    ax.set_ylabel(f"true positive rate ({ood} rejected)")
    ax.set_title(f"digits vs {ood}")
    ax.legend(fontsize=7, loc="lower right")
  fig.suptitle(title, fontsize=9)
  return finish(fig, path, dpi=72)


def per_class_bars(breakdown: Mapping[str, Mapping[str, Mapping[str, float]]], *,
                   title: str = "", path: Path = None) -> Any:  # fmt: skip
  """Mean class std per class, one panel per data set (and the rejected share when given).

  Args:
    breakdown: ``{set name: {class name: {'mean_class_std': float, 'mean_rejected'?: float}}}``,
      at least one set and one class per set; ``'mean_rejected'`` in every
      class of a set or in none.
    title: the figure's title.
    path: where to save the figure, or None.

  Raises:
    ValueError: no set, a set without classes, a class without
      ``'mean_class_std'``, or ``'mean_rejected'`` in some classes of a set only.
  """
  if not breakdown:
    raise ValueError(
      "breakdown must hold at least one data set, got {}; pass {set: {class: {...}}}"
    )
  rejected = {name: _check_breakdown(name, rows) for name, rows in breakdown.items()}
  fig, axes = new_figure((10, 2.8 * len(breakdown)), who="jaxuq.plot.per_class_bars",
                         nrows=len(breakdown), squeeze=False)  # fmt: skip
  for ax, (name, rows) in zip(axes[:, 0], breakdown.items(), strict=True):
    keys = list(rows)
    ax.bar(keys, [rows[k]["mean_class_std"] for k in keys], color="C0", label="mean class std")
    if rejected[name]:
      twin = ax.twinx()
      twin.plot(keys, [rows[k]["mean_rejected"] for k in keys], "o-", color="C3", ms=3)
      twin.set_ylabel("rejected", color="C3")
      twin.set_ylim(0, 1.05)
    ax.set_ylabel("mean class std")
    ax.set_title(name, fontsize=9)
  fig.suptitle(title, fontsize=9)
  return finish(fig, path, dpi=80)


def _check_breakdown(name: str, rows: Mapping[str, Mapping[str, float]]) -> bool:
  """Whether the set ``name``'s classes have ``'mean_rejected'`` (all of them); raises if some lack it."""
  if not rows:
    raise ValueError(f"breakdown[{name!r}] has no classes; pass at least one class per set")
  for key in ("mean_class_std", "mean_rejected"):
    lacking = [c for c, row in rows.items() if key not in row]
    if lacking and (key == "mean_class_std" or len(lacking) < len(rows)):
      raise ValueError(
        f"breakdown[{name!r}][{lacking[0]!r}] has no {key!r} (classes without it: {lacking}); "
        f"give {key!r} for every class of the set"
        + (" or for none" if key == "mean_rejected" else "")
      )
  return "mean_rejected" in next(iter(rows.values()))


def reliability(probs: Mapping[str, np.ndarray], labels: np.ndarray, *, num_bins: int = 15,
                title: str = "reliability", path: Path = None) -> Any:  # fmt: skip
  """Reliability diagram (accuracy against confidence per bin), one line per model.

  Args:
    probs: ``{model name: (n, classes) mean predicted probabilities}``.
    labels: ``(n,)`` int labels.
    num_bins: confidence bins.
    title: the title.
    path: where to save the figure, or None.
  """
  fig, ax = new_figure((4.6, 4.4), who="jaxuq.plot.reliability")
  ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
  for name, p in probs.items():
    d = metrics.reliability_diagram(p, labels, num_bins=num_bins)
    keep = np.asarray(d.counts) > 0
    ax.plot(np.asarray(d.confidence)[keep], np.asarray(d.accuracy)[keep], "o-", ms=3, label=name)
  ax.set_xlabel("confidence (max mean probability)")
  ax.set_ylabel("accuracy")
  ax.set_title(title, fontsize=9)
  return finish(fig, path, dpi=80, legend=ax, legend_kwargs={"fontsize": 8})


def coverage_curves(curves: Mapping[str, Mapping[str, Any]], *, path: Path = None) -> Any:
  """Selective accuracy against coverage, one line per model.

  Args:
    curves: ``{model name: {'coverage': [...], 'accuracy': [...]}}``.
    path: where to save the figure, or None.
  """
  fig, ax = new_figure((4.6, 4.0), who="jaxuq.plot.coverage_curves")
  for name, c in curves.items():
    ax.plot(c["coverage"], c["accuracy"], lw=1.3, label=name)
  ax.set_xlabel("coverage (inputs kept, most certain first)")
  ax.set_ylabel("accuracy on kept inputs")
  return finish(fig, path, dpi=80, legend=ax, legend_kwargs={"fontsize": 8})
