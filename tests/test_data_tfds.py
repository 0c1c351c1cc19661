"""The tensorflow-datasets path under tfds.testing.mock_data: no network, no TensorFlow."""

import sys

import numpy as np
import pytest

from jaxuq.data import DataNotFoundError, bounded_downloads, load_dataset

tfds = pytest.importorskip("tensorflow_datasets")


def test_mnist_through_data_source_with_random_mock(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    ds = load_dataset("mnist", "test", data_dir=tmp_path, source="tfds")
  assert ds.images.shape == (12, 28, 28, 1) and ds.images.dtype == np.float32
  assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
  assert ds.labels.shape == (12,) and ds.labels.dtype == np.int32
  assert ds.source.startswith("tfds:mnist") and not ds.synthetic
  assert "tensorflow" not in sys.modules  # data_source reads without TensorFlow


def _emnist_examples(n=26):
  """EMNIST-like records as tfds stores them: transposed images, letters labelled 1..26."""
  rng = np.random.default_rng(0)
  upright = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
  labels = np.arange(1, n + 1) % 26 + 1
  records = [
    {"image": im.T[..., None], "label": np.int64(lab)}
    for im, lab in zip(upright, labels, strict=True)
  ]
  return upright, labels, records


def test_emnist_letters_are_transposed_back_and_relabelled(tmp_path):
  upright, labels, records = _emnist_examples()
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: records):
    ds = load_dataset("letters", "train", data_dir=tmp_path, source="tfds")
  np.testing.assert_array_equal(np.rint(ds.images[..., 0] * 255).astype(np.uint8), upright)
  np.testing.assert_array_equal(ds.labels, labels - 1)
  assert ds.source.startswith("tfds:emnist/letters") and not ds.synthetic


def test_letter_labels_out_of_range_are_refused(tmp_path):
  _, _, records = _emnist_examples()
  records[0]["label"] = np.int64(0)  # 0 is "N/A" in EMNIST letters, never a letter
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: records):
    with pytest.raises(ValueError, match="labels must run 1..26"):
      load_dataset("letters", "test", data_dir=tmp_path, source="tfds")


def test_unprepared_tfds_data_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  with pytest.raises(
    DataNotFoundError, match=r"(?s)Sources tried:.*tfds: tfds mnist is not prepared"
  ):
    load_dataset("mnist", "test", data_dir=tmp_path, source="tfds")


def test_bounded_downloads_sets_and_restores_retries():
  import socket

  from tensorflow_datasets.core.download import downloader

  before, timeout = downloader.MAX_RETRIES, socket.getdefaulttimeout()
  with bounded_downloads(max_retries=1, timeout=5.0):
    assert downloader.MAX_RETRIES == 1 and socket.getdefaulttimeout() == 5.0
  assert downloader.MAX_RETRIES == before and socket.getdefaulttimeout() == timeout
