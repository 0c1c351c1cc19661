"""``jaxuq active --quick``: the table, the figure, the summary, a stopped and a resumed run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxuq.cli import main
from jaxuq.experiments import _active_report as report

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_quick_run_writes_its_outputs_and_resumes(tmp_path, capsys):
  out = tmp_path / "active"
  first = ["active", "--quick", "--out", str(out), "--no-progress", "--no-compile-cache"]
  assert main([*first, "--stop-after", "2"]) == 0  # a time-boxed first job: 2 rounds of 4
  part = json.loads((out / "summary.json").read_text())
  assert np.shape(part["history"]["test_error"]) == (2, 2, 1)
  assert "2 rounds run" in capsys.readouterr().out
  assert main(["active", "--quick", "--out", str(out), "--no-progress", "--resume"]) == 0
  printed = capsys.readouterr().out
  assert "BALD" in printed and "Random" in printed
  summary = json.loads((out / "summary.json").read_text())
  assert (out / "active_error.png").stat().st_size > 0
  history = {k: np.asarray(v) for k, v in summary["history"].items()}
  assert history["test_error"].shape == (4, 2, 1)  # rounds, functions, repeats
  # progress.json keeps the first job's rounds (it held only the last invocation's)
  # (one by one on the CPU: run 0 then run 1 in each job; each entry names its runs)
  rounds = json.loads((out / "progress.json").read_text())["rounds"]
  assert sorted((p["runs"], p["round"]) for p in rounds) == [
    ([i], r) for i in (0, 1) for r in range(4)
  ]
  for p in rounds:
    assert p["test_error"] == [history["test_error"][p["round"], p["runs"][0], 0]]
  assert history["acquired"].shape == (3, 2, 1, 10)
  assert summary["data"]["pool"]["synthetic"] is True
  for f in range(2):
    rows = history["acquired"][:, f, 0].ravel()
    assert len(np.unique(rows)) == len(rows)
  rows = summary["table"]["rows"]
  assert rows["bald"]["paper_images_to_10pct_5pct"] == [145, 335]
  # Resuming a finished run trains nothing and returns the same history.
  assert main(["active", "--quick", "--out", str(out), "--no-progress", "--resume"]) == 0
  again = json.loads((out / "summary.json").read_text())
  assert again["history"] == summary["history"]


def test_even_batches_reach_the_runs_and_the_summary(tmp_path):
  out = tmp_path / "even"
  args = ["active", "--quick", "--out", str(out), "--no-progress", "--no-compile-cache"]
  assert main([*args, "--even-batches", "--stop-after", "1"]) == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["settings"]["even_batches"] is True
  # Its checkpoints carry the option: resuming without it is another run's checkpoint.
  with pytest.raises(ValueError, match="even_batches"):
    main([*args, "--resume", "--stop-after", "2"])


def test_bad_options_are_refused_by_the_parser(capsys):
  with pytest.raises(SystemExit):
    main(["active", "--quick", "--acquisition-size", "0"])
  assert "must be a positive int, got 0" in capsys.readouterr().err
  # An unknown function name was a Python traceback from deep inside the loop.
  with pytest.raises(SystemExit):
    main(["active", "--quick", "--functions", "bald,foo"])
  assert "unknown acquisition function 'foo': name must be one of 'bald'" in capsys.readouterr().err


def test_weight_decay_zero_is_a_setting():
  # c = 0 (no decay) was refused as "must be a positive number"
  import argparse

  from jaxuq.experiments import active

  parser = argparse.ArgumentParser()
  active.add_arguments(parser)
  assert parser.parse_args(["--quick", "--weight-decay", "0"]).weight_decay == 0.0
  with pytest.raises(SystemExit):
    parser.parse_args(["--weight-decay", "-1"])


def test_progress_entries_redone_or_of_the_older_format_are_replaced():
  from jaxuq.experiments.active import _redone

  assert _redone({"round": 3}, [0], 5)  # no runs named: an older file's entry
  assert _redone({"round": 5, "runs": [0, 1]}, [1], 5)  # run 1 at round 5 again
  assert not _redone({"round": 4, "runs": [0, 1]}, [1], 5)
  assert not _redone({"round": 7, "runs": [2]}, [1], 5)


def test_images_to_reach_counts_the_first_round_at_or_below():
  acquired = np.array([0, 10, 20, 30])
  assert report.images_to_reach(acquired, np.array([0.3, 0.1, 0.04, 0.02]), 0.10) == 10
  assert report.images_to_reach(acquired, np.array([0.3, 0.1, 0.04, 0.02]), 0.05) == 20
  assert report.images_to_reach(acquired, np.array([0.3, 0.2, 0.2, 0.2]), 0.05) is None


@pytest.mark.slow
def test_side_by_side_runs_the_cnn_as_one_by_one(tmp_path):
  # Accelerators default to --runs side-by-side (vmapped convolutions over runs); the CPU to one
  # by one. Both run the experiment's CNN to the same acquisitions and test errors.
  histories = {}
  for mode in ("side-by-side", "one-by-one"):
    out = tmp_path / mode
    args = ["active", "--quick", "--out", str(out), "--no-progress", "--no-compile-cache"]
    assert main([*args, "--runs", mode, "--stop-after", "2"]) == 0
    histories[mode] = json.loads((out / "summary.json").read_text())["history"]
  together, apart = histories["side-by-side"], histories["one-by-one"]
  np.testing.assert_array_equal(together["acquired"], apart["acquired"])
  np.testing.assert_allclose(together["test_error"], apart["test_error"], atol=1e-6)
  np.testing.assert_allclose(together["train_loss"], apart["train_loss"], rtol=1e-4)
