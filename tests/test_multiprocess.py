"""Two processes, two CPU devices each, JAX's distributed runtime: the masks of one process."""

import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_sample_and_reduce_like_one():
  port = str(_free_port())
  env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", "tests.multiprocess_worker", str(i), port],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=240))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  for i, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
    assert p.returncode == 0, f"process {i}: {err[-3000:]}"
    assert f"OK {i}" in out
