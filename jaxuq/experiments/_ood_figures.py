"""Figures of ``jaxuq ood`` (matplotlib is imported inside each function, only when drawing)."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from jaxuq import metrics

SCORE_LABELS = {
  "class_std": "class std (seed)",
  "predictive_entropy": "predictive entropy",
  "mutual_information": "mutual information",
  "max_probability": "1 - max probability",
}


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def histograms(path: pathlib.Path, sets: dict[str, dict[str, np.ndarray]], title: str) -> None:
  """Histograms of class std and predictive entropy, one colour per data set."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for ax, score in zip(axes, ("class_std", "predictive_entropy"), strict=True):
    hi = max(float(s[score].max()) for s in sets.values()) or 1.0
    for name, s in sets.items():
      ax.hist(s[score], bins=40, range=(0, hi), density=True, alpha=0.5, label=name)
    ax.set_xlabel(SCORE_LABELS[score])
    ax.set_ylabel("density")
    ax.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def roc_curves(path: pathlib.Path, curves: dict[str, dict[str, Any]], title: str) -> None:
  """ROC curves: one panel per OOD set, one line per (model, score)."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.4), squeeze=False)
  for ax, (ood, lines) in zip(axes[0], curves.items(), strict=True):
    for label, (fpr, tpr, auc) in lines.items():
      ax.plot(fpr, tpr, lw=1.3, label=f"{label} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate (digits rejected)")
    ax.set_ylabel(f"true positive rate ({ood} rejected)")
    ax.set_title(f"digits vs {ood}")
    ax.legend(fontsize=7, loc="lower right")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=72)
  plt.close(fig)


def per_class_bars(path: pathlib.Path, breakdown: dict[str, dict[str, dict]], title: str) -> None:
  """Mean class std per digit and per letter (and rejection rate per letter when known)."""
  plt = _pyplot()
  fig, axes = plt.subplots(len(breakdown), 1, figsize=(10, 2.8 * len(breakdown)), squeeze=False)
  for ax, (name, rows) in zip(axes[:, 0], breakdown.items(), strict=True):
    keys = list(rows)
    ax.bar(keys, [rows[k]["mean_class_std"] for k in keys], color="C0", label="mean class std")
    if "mean_rejected" in rows[keys[0]]:
      twin = ax.twinx()
      twin.plot(keys, [rows[k]["mean_rejected"] for k in keys], "o-", color="C3", ms=3)
      twin.set_ylabel("rejected", color="C3")
      twin.set_ylim(0, 1.05)
    ax.set_ylabel("mean class std")
    ax.set_title(name, fontsize=9)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def reliability(path: pathlib.Path, probs: dict[str, np.ndarray], labels: np.ndarray) -> None:
  """Reliability diagram of the mean prediction on digits, one line per model."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.6, 4.4))
  ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
  for name, p in probs.items():
    d = metrics.reliability_diagram(p, labels, num_bins=15)
    keep = np.asarray(d.counts) > 0
    ax.plot(np.asarray(d.confidence)[keep], np.asarray(d.accuracy)[keep], "o-", ms=3, label=name)
  ax.set_xlabel("confidence (max mean probability)")
  ax.set_ylabel("accuracy")
  ax.set_title("reliability on digit test images", fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def coverage(path: pathlib.Path, curves: dict[str, dict[str, list]]) -> None:
  """Selective accuracy against coverage (inputs kept by lowest predictive entropy)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.6, 4.0))
  for name, c in curves.items():
    ax.plot(c["coverage"], c["accuracy"], lw=1.3, label=name)
  ax.set_xlabel("coverage (digits kept, most certain first)")
  ax.set_ylabel("accuracy on kept digits")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
