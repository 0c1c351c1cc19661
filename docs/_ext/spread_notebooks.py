"""Spreads the pages that run code over Sphinx's parallel reading processes.

Sphinx reads a build's pages in sorted order, cut into chunks (225 pages on 2
processes: chunks of 33), one process per chunk at a time; myst-nb runs a page's
code cells while that page is read. Sorted, the ten pages with code cells sit
together after the ~180 API pages, in one or two chunks, so one process ran
every tutorial after another while the other had nothing left to read (the
site took 3-4 minutes on the 2-core CPU, one Jupyter kernel at a time).
Interleaving them with the other pages before Sphinx cuts the chunks lets both
processes run tutorials.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  from sphinx.application import Sphinx
  from sphinx.environment import BuildEnvironment

CODE_CELL = "```{code-cell}"


def spread(names: Sequence[str], executed: Collection[str]) -> list[str]:
  """``names`` with those in ``executed`` spaced evenly among the others (orders kept)."""
  heavy = [n for n in names if n in executed]
  light = [n for n in names if n not in executed]
  if not heavy:
    return light
  out: list[str] = []
  for k, name in enumerate(heavy):
    out.append(name)
    out.extend(light[len(light) * k // len(heavy) : len(light) * (k + 1) // len(heavy)])
  return out


def runs_code(path: Path) -> bool:
  """Whether the page at ``path`` is a MyST notebook with code cells."""
  return path.suffix == ".md" and CODE_CELL in path.read_text(encoding="utf-8")


def _reorder(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
  executed = {d for d in docnames if runs_code(Path(env.doc2path(d)))}
  docnames[:] = spread(docnames, executed)


def setup(app: Sphinx) -> dict[str, object]:
  app.connect("env-before-read-docs", _reorder)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
