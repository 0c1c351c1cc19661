"""Finding and reading MNIST-format IDX datasets in local folders.

Each loader returns uint8 images ``(N, 28, 28)`` (upright, ink bright), int64
labels, and a description of where they came from, or raises
``SourceUnavailable`` saying what it looked for.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from jaxuq._src.data import paths
from jaxuq._src.data.errors import SourceUnavailable
from jaxuq._src.data.idx import KNOWN_SHA256, read_idx

# EMNIST's archive and the name stem of its letters files.
EMNIST_ZIP = "gzip.zip"
EMNIST_LETTERS = "emnist-letters-{split}-{kind}-idx{n}-ubyte"


def _find(folder: Path, stem: str) -> Path | None:
  for candidate in (folder / stem, folder / f"{stem}.gz"):
    if candidate.is_file():
      return candidate
  return None


def read_idx_pair(
  folder: Path, split: str, dataset: str | None
) -> tuple[np.ndarray, np.ndarray, bool]:
  """Images and labels of ``split`` from the MNIST-named IDX files in ``folder``.

  Args:
    folder: a folder holding ``train-images-idx3-ubyte`` etc., plain or ``.gz``.
    split: ``'train'`` or ``'test'`` (files ``t10k-*``).
    dataset: the key into ``KNOWN_SHA256`` whose checksums the files must match,
      or None for no check.

  Returns:
    ``(images, labels, verified)``.

  Raises:
    SourceUnavailable: a file is missing.
    ChecksumError: a file does not match its recorded SHA-256.
    ValueError: the files are not valid or disagree in length.
  """
  arrays = []
  for stem in paths.IDX_STEMS[split]:
    found = _find(folder, stem)
    if found is None:
      raise SourceUnavailable(f"no {stem}[.gz] in {folder}")
    digest = KNOWN_SHA256[dataset][stem] if dataset else None
    arrays.append(read_idx(found, sha256=digest))
  images, labels = arrays
  _check_pair(images, labels, str(folder))
  return images, labels.astype(np.int64), dataset is not None


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
  if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
    raise ValueError(
      f"{where}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
    )
  if labels.shape != images.shape[:1]:
    raise ValueError(f"{where}: {images.shape[0]} images but labels of shape {labels.shape}")


def load_emnist_letters_idx(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, str]:
  """EMNIST letters from NIST's ``gzip.zip`` or its unpacked ``.gz``/plain files in ``folder``.

  Images are transposed back to upright and labels 1..26 shifted to 0..25. No
  SHA-256 is recorded for EMNIST here, so none is checked (the description says so).

  Raises:
    SourceUnavailable: neither the archive nor the files are in ``folder``.
  """
  stems = [
    EMNIST_LETTERS.format(split=split, kind=k, n=n) for k, n in (("images", 3), ("labels", 1))
  ]
  archive = folder / EMNIST_ZIP
  if archive.is_file():
    with zipfile.ZipFile(archive) as z:
      by_base = {Path(n).name: n for n in z.namelist()}  # NIST's members sit in gzip/
    missing = [f"{s}.gz" for s in stems if f"{s}.gz" not in by_base]
    if missing:
      raise SourceUnavailable(f"{archive} has no {', '.join(missing)}")
    images, labels = (read_idx(archive, by_base[f"{s}.gz"]) for s in stems)
    where = f"{archive}"
  else:
    image_file, label_file = (_find(folder, s) or _find(folder / "gzip", s) for s in stems)
    if image_file is None or label_file is None:
      raise SourceUnavailable(f"no {EMNIST_ZIP} nor {stems[0]}[.gz] in {folder}")
    images, labels = read_idx(image_file), read_idx(label_file)
    where = str(image_file.parent)
  _check_pair(images, labels, where)
  labels = labels.astype(np.int64)
  if labels.size and (labels.min() < 1 or labels.max() > 26):
    raise ValueError(
      f"{where}: EMNIST letters labels must run 1..26, got {labels.min()}..{labels.max()}"
    )
  images = np.ascontiguousarray(images.transpose(0, 2, 1))
  return images, labels - 1, f"idx:EMNIST letters at {where} (sha256 not recorded, unchecked)"
