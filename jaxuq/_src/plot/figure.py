"""What every figure shares: a figure made without pyplot, and one way to save it.

Figures are ``matplotlib.figure.Figure`` objects made directly, not through
``pyplot``: no global backend is switched and no figure is left open, so
drawing works in scripts, notebooks and headless machines alike. matplotlib is
imported here, when a figure is made, never when ``jaxuq`` is imported.
"""

from __future__ import annotations

import os
from typing import Any

from jaxuq._src.extras import require


def new_figure(figsize: tuple[float, float], *, who: str, **subplots: Any) -> tuple[Any, Any]:
  """A new ``Figure`` and its axes (``Figure.subplots(**subplots)``).

  Raises:
    MissingDependencyError: matplotlib is not installed (names ``jaxuq[plot]``).
  """
  require("matplotlib", "plot", who=who)
  from matplotlib.figure import Figure

  fig = Figure(figsize=figsize)
  return fig, fig.subplots(**subplots)


def finish(fig: Any, path: str | os.PathLike | None, *, dpi: int, legend: Any = None,
           legend_kwargs: dict[str, Any] | None = None) -> Any:  # fmt: skip
  """Adds the legend of ``legend`` (an Axes) if given, lays out, saves to ``path`` if given.

  Returns:
    ``fig``.
  """
  if legend is not None:
    legend.legend(**(legend_kwargs or {}))
  fig.tight_layout()
  if path is not None:
    fig.savefig(path, dpi=dpi)
  return fig
