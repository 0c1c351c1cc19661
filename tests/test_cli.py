"""The jaxuq command: help lists the subcommands, quickstart writes its summary."""

import json
import subprocess
import sys

from jaxuq import cli


def test_help_lists_every_subcommand(capsys):
  assert cli.main([]) == 0
  out = capsys.readouterr().out
  for name in cli.SUBCOMMANDS:
    assert name in out


def test_python_dash_m_and_subcommand_help():
  proc = subprocess.run(
    [sys.executable, "-m", "jaxuq", "quickstart", "--help"], capture_output=True, text=True
  )
  assert proc.returncode == 0 and "--samples" in proc.stdout


def test_quickstart_agrees_with_the_loop(tmp_path):
  args = [
    "quickstart",
    "--samples",
    "6",
    "--batch",
    "8",
    "--width",
    "16",
    "--repeats",
    "1",
    "--out",
    str(tmp_path),
  ]
  assert cli.main(args) == 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["max_abs_diff"] < 1e-5
  assert summary["mean_std"] > 0
  assert summary["settings"]["samples"] == 6
