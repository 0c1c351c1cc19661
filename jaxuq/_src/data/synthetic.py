"""Datasets made here: font-rendered letters (cached) and scikit-learn's 8x8 digits.

Neither is the real thing: the letters are printed glyphs standing in for
EMNIST's handwriting, and ``load_digits`` is a small 8x8 digit set upsampled to
MNIST's format for fast smoke tests. Their descriptions say so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np

from jaxuq._src.data.errors import SourceUnavailable
from jaxuq._src.data.fonts import LETTERS, find_fonts
from jaxuq._src.data.letters import RENDER_SIZE, render_letters
from jaxuq._src.data.mnist_like import to_mnist_like

SPLIT_INDEX = {"train": 0, "test": 1}
LETTERS_CACHE_SUBDIR = Path("letters")
RENDERER_VERSION = 2  # bump when rendering changes, to invalidate caches


def _cache_path(
  data_dir: Path, split: str, fonts: list[Path], key: jax.Array, variants: int
) -> Path:
  spec = {
    "version": RENDERER_VERSION,
    "size": RENDER_SIZE,
    "split": split,
    "variants": variants,
    "key": np.asarray(jax.random.key_data(key)).tolist(),
    "fonts": [[f.name, f.stat().st_size] for f in fonts],
  }
  digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
  return data_dir / LETTERS_CACHE_SUBDIR / f"fonts-{split}-{digest}.npz"


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
      np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    os.replace(f.name, path)
  except OSError:  # a read-only data folder: rendering still worked, just not cached
    pass


def _read_cache(cache: Path, size: int) -> tuple[np.ndarray, np.ndarray] | None:
  """The cached ``(images, labels)`` of ``size`` glyphs, or None (and a warning) if unreadable or wrong."""
  try:
    with open(cache, "rb") as file, np.load(file) as stored:  # closed even if not a zip
      images, labels, chars = stored["images"], stored["labels"], stored["chars"]
    problem = _cache_problem(images, labels, chars, size)
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    problem = f"it cannot be read ({type(e).__name__}: {e})"
  if problem is None:
    return images, labels.astype(np.int64)
  warnings.warn(
    f"the letters cache {cache} is invalid: {problem}; rendering the letters again and "
    "overwriting it",
    stacklevel=3,
  )
  return None


def _cache_problem(
  images: np.ndarray, labels: np.ndarray, chars: np.ndarray, size: int
) -> str | None:
  if images.dtype != np.uint8 or images.shape != (size, 28, 28):
    return f"images must be uint8 ({size}, 28, 28), got {images.dtype} {images.shape}"
  if labels.shape != images.shape[:1] or chars.shape != images.shape[:1]:
    return f"{len(images)} images but labels {labels.shape} and chars {chars.shape}"
  if not np.issubdtype(labels.dtype, np.integer) or chars.dtype.kind != "U":
    return f"labels must be integers and chars str, got {labels.dtype} and {chars.dtype}"
  if not all(len(c) == 1 and c.isascii() and c.isalpha() for c in chars.tolist()):
    return "chars must be the letters A-Z and a-z"
  expected = np.array([ord(c.upper()) - ord("A") for c in chars.tolist()], np.int64)
  if not np.array_equal(labels, expected):
    return "labels must be the index 0..25 of each letter in chars"
  return None


def load_font_letters(
  split: str,
  data_dir: Path | None,
  *,
  key: jax.Array | None = None,
  variants: int = 1,
  system_fonts: bool = True,
  max_fonts: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
  """Font-rendered letters for ``split`` (a different random key per split).

  Args:
    split: ``'train'`` or ``'test'``; the same fonts, different distortions.
    data_dir: the data folder (fonts from `make data`, and the render cache), or None.
    key: a typed key; default ``jax.random.key(0)``. Folded with the split.
    variants: renderings per (font, letter).
    system_fonts: also use the system's fonts.
    max_fonts: use at most this many fonts (the first found), e.g. for quick runs.

  Returns:
    ``(images uint8 (N, 28, 28), labels 0..25, description)``.

  Raises:
    SourceUnavailable: Pillow or fontTools is missing, or no usable font exists.

  Warns:
    UserWarning: the cache file in ``data_dir`` cannot be read or holds wrong
      arrays (shapes, labels not 0..25 or not those of the letters drawn); the
      letters are rendered again and the cache overwritten.
  """
  for module in ("PIL", "fontTools"):
    if importlib.util.find_spec(module) is None:
      raise SourceUnavailable(f"rendering letters needs {module} (pip install 'jaxuq[plot]')")
  found = find_fonts(data_dir, system=system_fonts)
  fonts = [f for files in found.values() for f in files][:max_fonts]
  if not fonts:
    raise SourceUnavailable(
      "no font with all 52 letters found (install matplotlib, or run `make data`)"
    )
  key = jax.random.fold_in(jax.random.key(0) if key is None else key, SPLIT_INDEX[split])
  counts = ", ".join(f"{len(v)} {k}" for k, v in found.items())
  description = (
    f"SYNTHETIC font-rendered letters, not EMNIST: A-Z and a-z from {len(fonts)} fonts ({counts}) "
    f"x {variants} variant(s), random rotation/shear/stroke"
  )
  cache = _cache_path(data_dir, split, fonts, key, variants) if data_dir is not None else None
  size = variants * len(fonts) * len(LETTERS)
  stored = _read_cache(cache, size) if cache is not None and cache.is_file() else None
  if stored is not None:
    return *stored, f"{description} (cached {cache})"
  rendered = render_letters(key, fonts, variants=variants)
  if cache is not None and data_dir is not None and data_dir.is_dir():
    _save_atomic(
      cache, {"images": rendered.images, "labels": rendered.labels, "chars": rendered.chars}
    )
  return rendered.images, rendered.labels.astype(np.int64), description


def load_sklearn_digits(split: str) -> tuple[np.ndarray, np.ndarray, str]:
  """scikit-learn's 1,797 8x8 digits, upsampled to MNIST's format.

  Every fifth image (index % 5 == 0) is the test split (360), the rest train
  (1,437). Values 0..16 are scaled to 0..255, then fit in 20x20 and centred by
  mass in 28x28 like MNIST.

  Raises:
    SourceUnavailable: scikit-learn is not installed.
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise SourceUnavailable("scikit-learn is not installed (pip install scikit-learn)") from e
  digits = load_digits()
  index = np.arange(len(digits.target))
  keep = index % 5 == 0 if split == "test" else index % 5 != 0
  small = np.rint(digits.images[keep] * (255.0 / 16.0)).astype(np.uint8)
  images = np.stack([to_mnist_like(im) for im in small])
  description = "sklearn:load_digits (8x8 digits upsampled to 28x28; a smoke-test set, not MNIST)"
  return images, digits.target[keep].astype(np.int64), description
