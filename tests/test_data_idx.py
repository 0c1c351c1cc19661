"""The IDX reader on small files written here: plain, .gz, zip of .gz; checksums."""

import gzip
import hashlib
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxuq.data import ChecksumError, load_dataset, parse_idx, read_idx, write_idx

# An IDX file written by hand: uint8, 2 x 3, values 0..5.
HAND = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])


def test_parse_hand_written_bytes():
  out = parse_idx(HAND)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, [[0, 1, 2], [3, 4, 5]])


def test_big_endian_int32_and_float64():
  data = (
    bytes([0, 0, 0x0C, 1, 0, 0, 0, 2])
    + (258).to_bytes(4, "big")
    + (-1).to_bytes(4, "big", signed=True)
  )
  np.testing.assert_array_equal(parse_idx(data), [258, -1])
  data = bytes([0, 0, 0x0E, 1, 0, 0, 0, 1]) + np.array([1.5], dtype=">f8").tobytes()
  assert parse_idx(data).dtype == np.float64 and parse_idx(data)[0] == 1.5


@pytest.mark.parametrize(
  "data, message",
  [
    (b"\x00\x00", "fewer than the 4-byte magic"),
    (b"\x1f\x8b\x08\x00", "still gzip-compressed"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), "unknown IDX type code 0x07"),
    (bytes([0, 0, 0x08, 2, 0, 0, 0, 1]), "truncated IDX header"),
    (HAND[:-1], "holds 5 bytes after the header"),
    (HAND + b"\x00", "holds 7 bytes after the header"),
  ],
)
def test_invalid_files_are_refused(data, message):
  with pytest.raises(ValueError, match=message):
    parse_idx(data)


@settings(max_examples=25, deadline=None)
@given(
  hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
  )
)
def test_write_read_roundtrip(array):
  import tempfile
  from pathlib import Path

  with tempfile.TemporaryDirectory() as tmp:
    for name in ("a-idx", "a-idx.gz"):
      path = Path(tmp) / name
      write_idx(path, array)
      back = read_idx(path)
      assert back.dtype == array.dtype and back.shape == array.shape
      np.testing.assert_array_equal(back, array)


def test_plain_gz_and_zip_of_gz_agree(tmp_path):
  images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
  write_idx(tmp_path / "plain-idx3-ubyte", images)
  write_idx(tmp_path / "gz-idx3-ubyte.gz", images)
  assert gzip.decompress((tmp_path / "gz-idx3-ubyte.gz").read_bytes())[:4] == bytes([0, 0, 8, 3])
  with zipfile.ZipFile(tmp_path / "gzip.zip", "w") as z:
    z.write(tmp_path / "gz-idx3-ubyte.gz", "gzip/gz-idx3-ubyte.gz")
  for out in (
    read_idx(tmp_path / "plain-idx3-ubyte"),
    read_idx(tmp_path / "gz-idx3-ubyte.gz"),
    read_idx(tmp_path / "gzip.zip", "gzip/gz-idx3-ubyte.gz"),
  ):
    np.testing.assert_array_equal(out, images)


def test_checksum_is_of_the_decompressed_bytes(tmp_path):
  (tmp_path / "f.gz").write_bytes(gzip.compress(HAND))
  good = hashlib.sha256(HAND).hexdigest()
  np.testing.assert_array_equal(read_idx(tmp_path / "f.gz", sha256=good), parse_idx(HAND))
  bad = "0" * 64
  with pytest.raises(
    ChecksumError, match=f"SHA-256 mismatch for .*f.gz: expected {bad}, got {good}"
  ):
    read_idx(tmp_path / "f.gz", sha256=bad)
  assert issubclass(ChecksumError, ValueError)


def _write_mnist_like(folder, n=3, gz=True):
  folder.mkdir(parents=True, exist_ok=True)
  suffix = ".gz" if gz else ""
  for split in ("train", "t10k"):
    write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", np.full((n, 28, 28), 7, np.uint8))
    write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8))


def test_loader_refuses_files_that_are_not_the_known_mnist(tmp_path):
  _write_mnist_like(tmp_path / "mnist")
  with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte.gz.*run `make data`"):
    load_dataset("mnist", "test", data_dir=tmp_path, source="idx")


@pytest.mark.parametrize("layout", ["zip", "gz-files"])
def test_emnist_letters_from_a_zip_of_gz_or_its_files(tmp_path, layout):
  # NIST stores EMNIST transposed, letters labelled 1..26: the loader undoes both.
  upright = np.zeros((2, 28, 28), np.uint8)
  upright[0, 2, :] = 255  # a horizontal bar at the top
  upright[1, :, 3] = 255  # a vertical bar at the left
  labels = np.array([1, 26], np.uint8)
  (tmp_path / "emnist" / "gzip").mkdir(parents=True)
  for kind, arr in (("images-idx3", upright.transpose(0, 2, 1)), ("labels-idx1", labels)):
    write_idx(tmp_path / "emnist" / "gzip" / f"emnist-letters-test-{kind}-ubyte.gz", arr)
  if layout == "zip":  # NIST's gzip.zip holds gzip/*.gz
    with zipfile.ZipFile(tmp_path / "emnist" / "gzip.zip", "w") as z:
      for f in sorted((tmp_path / "emnist" / "gzip").iterdir()):
        z.write(f, f"gzip/{f.name}")
        f.unlink()
  ds = load_dataset("letters", "test", data_dir=tmp_path, source="idx")
  np.testing.assert_array_equal(ds.images[..., 0], upright / 255.0)
  np.testing.assert_array_equal(ds.labels, [0, 25])
  assert ds.class_names[25] == "Z" and not ds.synthetic
  assert "EMNIST" in ds.source and "unchecked" in ds.source


def test_corrupt_gzip_is_a_clear_error(tmp_path):
  data = gzip.compress(HAND)
  (tmp_path / "cut.gz").write_bytes(data[:-6])
  with pytest.raises(ValueError, match="cut.gz is not a valid gzip file.*make data"):
    read_idx(tmp_path / "cut.gz")


@pytest.mark.parametrize(
  "dims, size",
  [((65536,) * 4, 2**64), ((2**32 - 1,) * 2, (2**32 - 1) ** 2)],  # 2**64 wraps to 0 in int64
)
def test_huge_dimensions_are_counted_without_overflow(dims, size):
  header = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
  with pytest.raises(ValueError, match=rf"\({size} bytes of data\), but the file holds 0 bytes"):
    parse_idx(header)
