"""Every example that declares itself quick runs to completion, so none rots."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = sorted(
  p for p in (ROOT / "examples").glob("*.py") if "# jaxuq-example: quick" in p.read_text()
)


def test_quickstart_is_quick():
  assert ROOT / "examples" / "quickstart.py" in QUICK


@pytest.mark.slow
@pytest.mark.parametrize("path", QUICK, ids=[p.name for p in QUICK])
def test_example_runs(path, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
  proc = subprocess.run(
    [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-4000:]


def test_examples_and_experiments_use_public_names_only():
  files = [*(ROOT / "examples").glob("*.py"), *(ROOT / "jaxuq" / "experiments").glob("*.py")]
  private = [p.name for p in files if "jaxuq._src" in p.read_text()]
  assert len(files) > 10 and private == []
