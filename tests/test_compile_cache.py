"""The jaxuq command keeps compiled programs: a second run compiles nothing new."""

import os
import pathlib
import subprocess
import sys

import pytest

from jaxuq._src import compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = ["quickstart", "--samples", "4", "--batch", "8", "--width", "16", "--depth", "1"]


def _run(args, env):
  proc = subprocess.run(
    [sys.executable, "-m", "jaxuq", *args, "--repeats", "1"],
    env=env,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]


def _env(cache: pathlib.Path, **extra: str) -> dict:
  env = dict(os.environ, JAXUQ_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
  env.pop(compile_cache.ENV_OFF, None)
  env.update(extra)
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  return env


@pytest.mark.slow
def test_second_run_loads_every_program_from_the_cache(tmp_path):
  cache = tmp_path / "cache"
  _run(QUICK, _env(cache))
  first = sorted(p.name for p in cache.iterdir())
  assert first, "the first run wrote no compiled program"
  _run(QUICK, _env(cache))
  # Every compilation is cached (no minimum compile time), so a program that
  # missed the cache would have added an entry.
  assert sorted(p.name for p in cache.iterdir()) == first


def test_flag_and_environment_turn_the_cache_off(tmp_path):
  _run([*QUICK, "--no-compile-cache"], _env(tmp_path / "a"))
  assert not (tmp_path / "a").exists()
  _run(QUICK, _env(tmp_path / "b", JAXUQ_NO_COMPILE_CACHE="1"))
  assert not (tmp_path / "b").exists()


def test_a_file_in_the_way_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(ValueError, match="JAXUQ_CACHE_DIR"):
    compile_cache.enable_compilation_cache(blocker)


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV_DIR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compile_cache.default_cache_dir() == tmp_path / "jaxuq" / "jax"
  monkeypatch.setenv(compile_cache.ENV_DIR, str(tmp_path / "x"))
  assert compile_cache.default_cache_dir() == tmp_path / "x"
