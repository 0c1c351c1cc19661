"""Finding font files that can draw the letters A-Z and a-z.

Three places are searched: the fonts bundled with matplotlib (always there when
matplotlib is installed), the fonts `make data` unpacked into ``DATA/fonts``,
and the system's fonts (``fc-list``, else the usual folders). A font is kept if
its character map covers all 52 letters; symbol fonts that map letters to
symbols are listed by name in ``EXCLUDED``. Files with the same name are kept
once (the first found).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import string
import subprocess
from collections.abc import Iterable
from pathlib import Path

from jaxuq._src.data import paths

LETTERS = string.ascii_uppercase + string.ascii_lowercase
FONT_SUFFIXES = (".ttf", ".otf")
# Fonts whose cmaps claim the letters but draw symbols or boxes.
EXCLUDED = ("cmex10", "cmsy10", "LastResort")
SYSTEM_FONT_DIRS = (
  Path("/usr/share/fonts"),
  Path("/usr/local/share/fonts"),
  Path.home() / ".local" / "share" / "fonts",
  Path.home() / ".fonts",
)


def matplotlib_font_dir() -> Path | None:
  """matplotlib's bundled TrueType folder, found without importing matplotlib."""
  spec = importlib.util.find_spec("matplotlib")
  if spec is None or not spec.submodule_search_locations:
    return None
  folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
  return folder if folder.is_dir() else None


def _font_files(folder: Path) -> list[Path]:
  if not folder.is_dir():
    return []
  return sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def system_font_files(timeout: float = 10.0) -> list[Path]:
  """The system's font files: ``fc-list : file`` when fontconfig is there, else a folder scan."""
  if shutil.which("fc-list"):
    try:
      done = subprocess.run(
        ["fc-list", ":", "file"], capture_output=True, text=True, timeout=timeout, check=False
      )
      files = {
        Path(line.split(":")[0].strip()) for line in done.stdout.splitlines() if line.strip()
      }
      return sorted(p for p in files if p.suffix.lower() in FONT_SUFFIXES and p.is_file())
    except (OSError, subprocess.TimeoutExpired):
      pass
  return [p for folder in SYSTEM_FONT_DIRS for p in _font_files(folder)]


def covers_letters(path: Path, letters: str = LETTERS) -> bool:
  """Whether the font's character map has every one of ``letters`` (read with fontTools).

  Remembered per file (path, size and modification time) for the process: a font
  takes ~14 ms to read, and an experiment loads its fonts more than once.
  """
  try:
    stat = Path(path).stat()
  except OSError:
    return False
  return _covers_letters(str(path), stat.st_size, stat.st_mtime_ns, letters)


@functools.lru_cache(maxsize=4096)
def _covers_letters(path: str, size: int, mtime_ns: int, letters: str) -> bool:
  """:func:`covers_letters` for one version of a file (``size`` and ``mtime_ns`` key the cache)."""
  del size, mtime_ns
  from fontTools.ttLib import TTFont, TTLibError

  try:
    # Opened here, not by fontTools, so that a file it cannot parse is closed too.
    with open(path, "rb") as file, TTFont(file, lazy=True, fontNumber=0) as font:
      cmap = font.getBestCmap() or {}
  except (TTLibError, OSError, ValueError, KeyError, AssertionError):
    return False
  return all(ord(c) in cmap for c in letters)


def _unique_usable(candidates: Iterable[Path]) -> list[Path]:
  seen: set[str] = set()
  kept = []
  for path in candidates:
    if path.name in seen or any(x in path.name for x in EXCLUDED):
      continue
    seen.add(path.name)
    if covers_letters(path):
      kept.append(path)
  return kept


def find_fonts(data_dir: Path | None = None, *, system: bool = True) -> dict[str, list[Path]]:
  """Usable font files, by origin: ``'matplotlib'``, ``'data_dir'``, ``'system'``.

  Args:
    data_dir: the jaxuq data folder whose ``fonts/`` `make data` filled, or None.
    system: also search the system's fonts.

  Returns:
    ``{origin: [paths]}``, each font file once over all origins, in that order.
  """
  origins = {
    "matplotlib": _font_files(matplotlib_font_dir() or Path("/nonexistent")),
    "data_dir": _font_files(data_dir / paths.FONTS_SUBDIR) if data_dir is not None else [],
    "system": system_font_files() if system else [],
  }
  found: dict[str, list[Path]] = {}
  seen: list[Path] = []
  for origin, candidates in origins.items():
    names = {p.name for p in seen}
    found[origin] = _unique_usable(p for p in candidates if p.name not in names)
    seen += found[origin]
  return found
