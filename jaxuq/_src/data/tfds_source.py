"""MNIST, Fashion-MNIST and EMNIST letters through tensorflow-datasets.

Reading uses ``tfds.data_source`` (random access to prepared ``array_record``
files), which needs neither TensorFlow nor the network. Preparing (downloading
and encoding) needs both; it runs only when asked (`make data TFDS=1`, or
``prepare_tfds``), with the downloader's retries bounded so that an offline
machine fails in seconds instead of retrying for minutes.

EMNIST's quirks are handled here: its images are stored transposed (they are
transposed back), and its ``letters`` split labels letters 1..26 (shifted to
0..25; both cases of a letter share a label).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jaxuq._src.data.errors import SourceUnavailable

# jaxuq name -> (tfds name, images transposed, label offset)
TFDS_DATASETS: dict[str, tuple[str, bool, int]] = {
  "mnist": ("mnist", False, 0),
  "fashion_mnist": ("fashion_mnist", False, 0),
  "letters": ("emnist/letters", True, 1),
}
MAX_RETRIES = 2
SOCKET_TIMEOUT_S = 60.0


def _import_tfds() -> Any:
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise SourceUnavailable(
      "tensorflow-datasets is not installed (pip install 'jaxuq[data]')"
    ) from e
  return tfds


@contextlib.contextmanager
def bounded_downloads(
  max_retries: int = MAX_RETRIES, timeout: float = SOCKET_TIMEOUT_S
) -> Iterator[None]:
  """Within this context tfds retries a download at most ``max_retries`` times
  (instead of 10 with back-off, ~205 s offline) and no socket waits longer
  than ``timeout`` seconds."""
  from tensorflow_datasets.core.download import downloader

  old_retries, old_timeout = downloader.MAX_RETRIES, socket.getdefaulttimeout()
  downloader.MAX_RETRIES = max_retries
  socket.setdefaulttimeout(timeout)
  try:
    yield
  finally:
    downloader.MAX_RETRIES = old_retries
    socket.setdefaulttimeout(old_timeout)


def _examples_to_arrays(examples: list[dict[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
  _, transposed, offset = TFDS_DATASETS[name]
  images = (
    np.stack([np.asarray(ex["image"]) for ex in examples]) if examples else np.zeros((0, 28, 28, 1))
  )
  labels = np.asarray([int(ex["label"]) for ex in examples], dtype=np.int64)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.shape[1:] != (28, 28) or images.dtype != np.uint8:
    raise ValueError(
      f"tfds {name}: expected uint8 images of 28x28, got {images.dtype} {images.shape}"
    )
  if transposed:
    images = np.ascontiguousarray(images.transpose(0, 2, 1))
  return images, labels - offset


def _read_all(source: Any) -> list[dict[str, Any]]:
  """All records of a data source: batched ``__getitems__`` where it works, else one by one."""
  n = len(source)
  getitems = getattr(source, "__getitems__", None)
  if getitems is not None:
    try:
      return [
        ex
        for start in range(0, n, 4096)
        for ex in getitems(list(range(start, min(n, start + 4096))))
      ]
    except TypeError:  # tfds 4.9.10's mocked array_record source breaks __getitems__
      pass
  return [source[i] for i in range(n)]


def load_tfds(
  name: str, split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
  """Reads a prepared tfds dataset with ``tfds.data_source`` (no download).

  Args:
    name: ``'mnist'``, ``'fashion_mnist'`` or ``'letters'`` (EMNIST letters).
    split: ``'train'`` or ``'test'``.
    data_dir: tfds's data folder; ``None`` for tfds's default
      (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

  Returns:
    ``(images, labels, description)``: uint8 ``(N, 28, 28)`` upright images,
    int64 labels (letters 0..25), and where they came from.

  Raises:
    SourceUnavailable: tensorflow-datasets is missing or the data are not prepared.
    ValueError: labels outside the expected range for ``letters``.
  """
  tfds = _import_tfds()
  tfds_name = TFDS_DATASETS[name][0]
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # tfds warns about each missing folder it probes
  try:
    source = tfds.data_source(
      tfds_name, split=split, data_dir=None if data_dir is None else str(data_dir), download=False
    )
  except (RuntimeError, AssertionError, OSError, ValueError, KeyError) as e:
    where = data_dir or "tfds's default data folder ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    raise SourceUnavailable(
      f"tfds {tfds_name} is not prepared in {where} ({type(e).__name__})"
    ) from e
  finally:
    absl_logger.setLevel(level)
  examples = _read_all(source)
  images, labels = _examples_to_arrays(examples, name)
  if name == "letters" and labels.size and (labels.min() < 0 or labels.max() > 25):
    raise ValueError(
      f"tfds emnist/letters: labels must run 1..26, got {labels.min() + 1}..{labels.max() + 1}"
    )
  version = getattr(getattr(source, "dataset_info", None), "version", "?")
  return images, labels, f"tfds:{tfds_name}:{version} split={split}"


def prepare_tfds(tfds_name: str, data_dir: str | os.PathLike | None = None) -> str:
  """Downloads and prepares a tfds dataset as array_record (internet and TensorFlow).

  Args:
    tfds_name: e.g. ``'mnist'`` or ``'emnist/letters'`` (a 536 MiB download).
    data_dir: tfds's data folder; ``None`` for tfds's default.

  Returns:
    the prepared dataset's name and folder.

  Raises:
    SourceUnavailable: tensorflow-datasets or TensorFlow is missing.
  """
  tfds = _import_tfds()
  if importlib.util.find_spec("tensorflow") is None:
    raise SourceUnavailable(
      "preparing tfds data needs TensorFlow (pip install tensorflow-cpu, ~1.3 GB installed); "
      "reading prepared data does not"
    )
  folder = None if data_dir is None else str(Path(data_dir))
  with bounded_downloads():
    builder = tfds.builder(tfds_name, data_dir=folder)
    builder.download_and_prepare(file_format="array_record")
  return f"{tfds_name} in {builder.data_dir}"
