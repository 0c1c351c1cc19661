"""The calibration figure of ``jaxuq ood``: reliability before and after temperature scaling,
and the sizes of conformal prediction sets in and out of distribution.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxuq import metrics
from jaxuq._src.plot.figure import finish, new_figure

Path = str | os.PathLike | None


def calibration_and_sets(reliability: Mapping[str, Any], set_sizes: Mapping[str, Mapping[str, Any]],
                         labels: Any, *, num_bins: int = 15, title: str = "",
                         path: Path = None) -> Any:  # fmt: skip
  """A reliability panel, then one panel of set-size histograms per conformal method.

  Args:
    reliability: ``{name: (n, classes) probabilities}`` of the in-distribution
      test inputs (e.g. before and after temperature scaling).
    set_sizes: ``{panel title: {data set name: (m,) set sizes}}``, ``m >= 1``
      non-negative whole numbers (ints, or floats such as ``2.0``); each panel
      draws the fraction of each data set's inputs per set size.
    labels: ``(n,)`` int labels of the reliability inputs.
    num_bins: confidence bins of the reliability panel.
    title: the figure's title.
    path: where to save the figure, or None.

  Raises:
    ValueError: a panel without data sets, an empty set of sizes, or a size
      that is negative, fractional or not finite.
  """
  counts = {panel: _set_sizes(panel, sizes) for panel, sizes in set_sizes.items()}
  panels = 1 + len(set_sizes)
  fig, axes = new_figure((4.3 * panels, 3.8), who="jaxuq.plot.calibration_and_sets",
                         ncols=panels, squeeze=False)  # fmt: skip
  ax = axes[0, 0]
  ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
  y = np.asarray(labels)
  for name, p in reliability.items():
    d = metrics.reliability_diagram(p, y, num_bins=num_bins)
    keep = np.asarray(d.counts) > 0
    ece = float(metrics.expected_calibration_error(p, y, num_bins=num_bins))
    ax.plot(np.asarray(d.confidence)[keep], np.asarray(d.accuracy)[keep], "o-", ms=3,
            label=f"{name} (ECE {ece:.4f})")  # fmt: skip
  ax.set_xlabel("confidence (max probability)")
  ax.set_ylabel("accuracy")
  ax.set_title("reliability on test digits", fontsize=9)
  ax.legend(fontsize=7)
  for ax, (panel, sizes) in zip(axes[0, 1:], counts.items(), strict=True):
    top = max(int(np.max(s)) for s in sizes.values())
    k = np.arange(top + 1)
    width = 0.8 / len(sizes)
    for i, (name, s) in enumerate(sizes.items()):
      frac = np.bincount(s, minlength=top + 1) / len(s)
      ax.bar(k + (i - (len(sizes) - 1) / 2) * width, frac, width=width, label=name)
    ax.set_xticks(k)
    ax.set_xlabel("set size (classes)")
    ax.set_ylabel("fraction of inputs")
    ax.set_title(panel, fontsize=9)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  return finish(fig, path, dpi=80)


def _set_sizes(panel: str, sizes: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """``{data set: (m,) int64}`` of one panel, checked: some sets, none empty, whole numbers >= 0."""
  if not sizes:
    raise ValueError(f"set_sizes[{panel!r}] holds no data set; pass {{name: (m,) set sizes}}")
  out = {}
  for name, s in sizes.items():
    a = np.asarray(s).reshape(-1)
    where = f"set_sizes[{panel!r}][{name!r}]"
    if a.size == 0:
      raise ValueError(f"{where} is empty; pass at least one set size")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number):
      raise ValueError(f"{where} must hold whole numbers >= 0, got dtype {a.dtype}")
    bad = a[~(np.isfinite(a) & (a >= 0) & (a == np.round(a)))]
    if bad.size:
      raise ValueError(
        f"{where} must hold whole numbers >= 0 (classes per set), got {bad.size} other value(s) "
        f"such as {bad[:3].tolist()}; pass each input's number of classes in its set"
      )
    out[name] = a.astype(np.int64)
  return out
