"""The benchmark's figure: speedup over ``sequential_sample`` against the number of masks."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from jaxuq._src.extras import MissingDependencyError
from jaxuq._src.plot.figure import new_figure, output_path


def speedup_figure(
  rows: Sequence[dict],
  path: pathlib.Path,
  models: Sequence[str],
  variants: Sequence[tuple[str, str]],
) -> bool:
  """Draws one panel per model, one colour per variant, into ``path``.

  Args:
    rows: the bench's result rows; those with ``speedup_vs_sequential`` are
      drawn (keys ``model``, ``batch``, ``masks``, ``variant``).
    path: the PNG to write (``~`` expanded, ``.png`` added without a suffix,
      a missing folder made; an existing folder is refused).
    models: the panels, in order (models without such rows are left out).
    variants: ``(variant, label)`` pairs, one line each. Solid lines are the
      smallest batch, dashed the others.

  Returns:
    Whether a figure was written: False without matplotlib, or when no row
    of ``models`` has ``speedup_vs_sequential`` (nothing is written then).

  Raises:
    ValueError: ``path`` is an existing folder.

  Examples:
    >>> import pathlib, tempfile
    >>> import jaxuq.plot
    >>> rows = [{"model": "mlp", "batch": 8, "masks": t, "variant": "mc_auto",
    ...          "speedup_vs_sequential": 0.1 * t} for t in (10, 100)]
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "speedup.png"
    >>> jaxuq.plot.speedup_figure(rows, out, ["mlp"], [("mc_auto", "mc_sample")])
    True
  """
  rows = [r for r in rows if "speedup_vs_sequential" in r]
  panels = [m for m in models if any(r["model"] == m for r in rows)]
  batches = sorted({r["batch"] for r in rows})
  if not panels:
    return False
  path = output_path(path)
  try:
    fig, axes = new_figure(
      (4.2 * len(panels), 4), who="jaxuq.plot.speedup_figure", ncols=len(panels), squeeze=False
    )
  except MissingDependencyError:
    return False
  colours = [f"C{i}" for i in range(10)]  # matplotlib's default colour cycle
  for ax, model in zip(axes[0], panels, strict=True):
    for (variant, label), colour in zip(variants, colours, strict=False):
      for j, batch in enumerate(batches):
        pts = sorted(
          (r["masks"], r["speedup_vs_sequential"])
          for r in rows
          if (r["model"], r["batch"], r["variant"]) == (model, batch, variant)
        )
        if pts:
          ax.plot(
            *zip(*pts, strict=True),
            marker="o",
            color=colour,
            linestyle="-" if j == 0 else "--",
            label=label if j == 0 else None,
          )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(model)
    ax.set_xlabel("masks T")
  axes[0][0].set_ylabel("speedup over sequential_sample")
  handles, labels = [], []
  for ax in axes[0]:
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
      if lab not in labels:
        handles.append(h)
        labels.append(lab)
  if handles:
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
  style = ", ".join(f"{b}: {'solid' if j == 0 else 'dashed'}" for j, b in enumerate(batches))
  fig.suptitle(f"batch {style}", fontsize=9)
  fig.tight_layout(rect=(0, 0.12, 1, 1))
  fig.savefig(path, dpi=100)
  return True
