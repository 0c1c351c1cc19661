"""What every figure shares: a figure made without pyplot, and one way to save it.

Figures are ``matplotlib.figure.Figure`` objects made directly, not through
``pyplot``: no global backend is switched and no figure is left open, so
drawing works in scripts, notebooks and headless machines alike. matplotlib is
imported here, when a figure is made, never when ``jaxuq`` is imported.
"""

from __future__ import annotations

import os
import pathlib
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


def output_path(path: Any, *, suffix: str = ".png") -> Any:
  """``path`` made ready to write a figure to: ``~`` expanded, ``suffix`` added, folder made.

  A path without a suffix gets ``suffix`` (``'.png'``: ``out`` is saved as
  ``out.png``); a missing parent folder is created. Anything other than a
  ``str`` or ``os.PathLike`` (a file object) is returned as it is.

  Raises:
    ValueError: ``path`` is an existing folder.
  """
  if not isinstance(path, (str, os.PathLike)):
    return path
  out = pathlib.Path(path).expanduser()
  if out.is_dir():
    raise ValueError(
      f"path must be a file to write, got the existing folder {str(path)!r}; "
      f"pass a file in it, e.g. {str(out / ('figure' + suffix))!r}"
    )
  if not out.suffix:
    out = out.with_suffix(suffix)
  out.parent.mkdir(parents=True, exist_ok=True)
  return out


def finish(fig: Any, path: str | os.PathLike | None, *, dpi: int, legend: Any = None,
           legend_kwargs: dict[str, Any] | None = None) -> Any:  # fmt: skip
  """Adds the legend of ``legend`` (an Axes) if given, lays out, saves to ``path`` if given.

  ``path`` goes through :func:`output_path`: ``~`` is expanded, a path without
  a suffix gets ``'.png'``, a missing folder is created, a folder is refused.

  Returns:
    ``fig``.
  """
  if legend is not None:
    legend.legend(**(legend_kwargs or {}))
  fig.tight_layout()
  if path is not None:
    fig.savefig(output_path(path), dpi=dpi)
  return fig
