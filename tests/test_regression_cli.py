"""``jaxuq regression``: a small run end to end, --resume, bad options, the sweep's findings."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxuq import cli
from jaxuq.data import regression_test_inputs
from jaxuq.experiments import _calibration_eval as ce
from jaxuq.experiments import _regression_core as core

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--quick", "--width", "32", "--epochs", "8", "--samples", "12", "--no-progress"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("regression")
  assert cli.main(["regression", *SMALL, "--out", str(out)]) == 0
  return out, json.loads((out / "summary.json").read_text())


def test_quick_run_writes_every_file(quick_run):
  out, _ = quick_run
  for name in ["losses.png", "curves.png", "scatter.png", "band.png", "samples.gif"]:
    assert (out / name).stat().st_size > 1000, name
  assert (out / "checkpoints" / "rate0.5-relu-all.msgpack").exists()


def test_summary_has_the_fields_and_more_spread_outside(quick_run):
  _, s = quick_run
  main = s["main"]
  assert s["key"]["seed"] == 0 and s["config"]["samples"] == 12 and s["config"]["width"] == 32
  assert set(main["mean_std"]) == {"inside", "gap", "beyond", "outside"}
  assert set(main["ratios"]) == {"gap_over_inside", "beyond_over_inside", "outside_over_inside"}
  assert set(main["heldout"]) >= {"gaussian_nll", "crps", "coverage_90", "rmse"}
  assert main["heldout"]["points"] == 200 and main["epochs"] == 8
  assert 0 <= main["heldout"]["coverage_90"] <= 1
  assert main["rmse_mc_mean_vs_deterministic"]["all"] >= 0
  assert main["wall_s"]["train"] > 0 and s["wall_s"]["sample"] > 0
  assert main["mean_std"]["outside"] > main["mean_std"]["inside"]
  assert s["data"] == {**s["data"], "train": 1620, "validation": 180, "heldout": 200, "test": 5000}


def test_summary_has_the_90_percent_intervals(quick_run):
  _, s = quick_run
  iv = s["main"]["intervals_90"]
  assert iv["level"] == 0.9 and iv["calibration_points"] == iv["test_points"] == 100
  assert iv["std_scaling_factor"] > 0
  assert set(iv["methods"]) == set(ce.METHODS)
  for name, m in iv["methods"].items():
    assert set(m["grid"]) == {"inside", "gap", "beyond", "outside"}
    for cell in (m["heldout_test"], *m["grid"].values()):
      assert 0 <= cell["coverage"] <= 1 and cell["width"] >= 0, name
    r = m["heldout_random_splits"]
    assert r["splits"] == 100 and 0 <= r["coverage_mean"] <= 1 and r["coverage_sd"] >= 0
  # The MC interval is what heldout_metrics reports, on the test half only.
  assert iv["methods"]["mc"]["heldout_test"]["width"] > 0


def test_interval_methods_reach_the_level_on_exchangeable_data():
  # Gaussian predictive whose std is 1/1.3 of the truth: the raw MC interval covers about 79 %;
  # every calibrated method, fit on one half, covers about 90 % of the other half. (Not much
  # wider: isotonic recalibration cannot reach beyond the samples' range.)
  rng = np.random.default_rng(1)
  n, samples = 400, 400
  mu, sigma = rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)
  y = mu + 1.3 * sigma * rng.normal(size=n)
  draws = mu + sigma * rng.normal(size=(samples, n))
  grid = {"inside": np.ones(n, bool)}
  iv = ce.regression_intervals(0, draws, y, draws, y, grid, splits=20)
  cover = {k: m["heldout_random_splits"]["coverage_mean"] for k, m in iv["methods"].items()}
  assert abs(cover["mc"] - 0.79) < 0.04
  for name in ("conformal_residual", "conformal_std", "cqr", "std_scaling", "isotonic"):
    assert abs(cover[name] - 0.9) < 0.04, (name, cover)
  width = {k: m["heldout_test"]["width"] for k, m in iv["methods"].items()}
  assert width["conformal_std"] < width["conformal_residual"]  # adapts to the known spread


def test_gif_has_one_frame_per_sample(quick_run):
  out, s = quick_run
  with Image.open(out / "samples.gif") as gif:
    assert gif.n_frames == 12 == s["gif_frames"]


def test_resume_reuses_the_checkpoint(quick_run, tmp_path, capsys):
  out, first = quick_run
  assert cli.main(["regression", *SMALL, "--out", str(out), "--resume", "--no-gif"]) == 0
  second = json.loads((out / "summary.json").read_text())
  assert second["main"]["epochs_trained_this_run"] == 0
  assert first["main"]["epochs_trained_this_run"] == 8
  drop = lambda d: {k: v for k, v in d.items() if k not in ("wall_s", "epochs_trained_this_run")}  # noqa: E731
  assert drop(second["main"]) == drop(first["main"])  # bit for bit: same numbers
  with pytest.raises(SystemExit, match="other settings.*width"):
    cli.main(["regression", *SMALL, "--width", "16", "--out", str(out), "--resume"])
  with pytest.raises(SystemExit, match="more epochs than --epochs 4"):
    cli.main(["regression", *SMALL, "--epochs", "4", "--out", str(out), "--resume"])
  with pytest.raises(SystemExit, match="no checkpoint"):
    cli.main(["regression", *SMALL, "--out", str(tmp_path), "--resume"])


@pytest.mark.parametrize(
  "flags, message",
  [
    (
      ["--samples", "1"],
      r"argument --samples: must be an int >= 2 \(a std needs two samples\), got 1",
    ),
    (["--width", "0"], "argument --width: must be a positive int, got 0"),
    (["--epochs", "-3"], "argument --epochs: must be a positive int, got -3"),
    (["--batch-size", "x"], "argument --batch-size: must be an int, got 'x'"),
    (["--rate", "1.0"], r"argument --rate: must be in \(0, 1\)"),
    (["--noise", "-0.1"], "argument --noise: must be a number >= 0"),
    (["--lr", "nan"], "argument --lr: must be a finite number"),
    (["--seed", "-1"], "argument --seed: must be a non-negative int, got -1"),
    (["--seed", "99999999999999999999"], r"argument --seed: must be an int in \[0, 2\*\*63\)"),
  ],
)
def test_bad_options_fail_clearly(flags, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as info:
    cli.main(["regression", "--quick", *flags, "--out", str(tmp_path)])
  assert info.value.code == 2
  assert re.search(message, capsys.readouterr().err), message
  assert not any(tmp_path.iterdir())  # refused before any work


def test_unknown_activation_is_refused_by_argparse(capsys):
  with pytest.raises(SystemExit):
    cli.main(["regression", "--activation", "sigmoid"])
  assert "invalid choice" in capsys.readouterr().err


def test_regions_of_the_test_grid():
  m = core.region_masks(regression_test_inputs())
  assert (m["inside"].sum(), m["gap"].sum(), m["beyond"].sum()) == (2000, 500, 2500)
  assert m["outside"].sum() == 3000 and not (m["inside"] & m["gap"]).any()


def test_findings_read_the_numbers():
  def result(inside, outside):
    return {"mean_std": {"inside": inside, "outside": outside},
            "ratios": {"outside_over_inside": outside / inside, "gap_over_inside": 1.0}}  # fmt: skip

  results = {
    "rate0.1-relu-all": result(0.1, 0.5),
    "rate0.5-relu-all": result(0.2, 1.0),
    "rate0.75-relu-all": result(0.3, 2.0),
    "rate0.5-tanh-all": result(0.1, 1.5),
  }
  f = core.findings(results)
  assert f["higher_rate_larger_spread"]["holds"]
  assert f["more_uncertain_away_from_data"]["holds"]
  assert not f["tanh_narrower_than_relu"]["holds"]
  results["rate0.75-relu-all"] = result(0.3, 0.2)
  f = core.findings(results)
  assert not f["higher_rate_larger_spread"]["holds"]
  assert not f["more_uncertain_away_from_data"]["holds"]


@pytest.mark.slow
def test_quick_sweep_with_closed_form(tmp_path):
  flags = ["--quick", "--width", "32", "--epochs", "8", "--samples", "400", "--no-progress"]
  assert cli.main(["regression", *flags, "--sweep", "--no-gif", "--out", str(tmp_path)]) == 0
  s = json.loads((tmp_path / "summary.json").read_text())
  assert (tmp_path / "sweep.png").stat().st_size > 1000
  assert set(s["sweep"]["results"]) == {core.setting_name(*x) for x in core.SWEEP}
  assert set(s["sweep"]["findings"]) == {
    "higher_rate_larger_spread", "more_uncertain_away_from_data", "more_uncertain_in_gap",
    "tanh_narrower_than_relu",
  }  # fmt: skip
  cf = s["sweep"]["results"]["rate0.5-relu-last"]["closed_form"]
  # 400 samples: a std estimate's relative standard error is about 1/sqrt(2*399) = 3.5 %
  # for near-Gaussian outputs; the errors are correlated over x (one network per
  # sample), so the median over the grid is about one such error: 4 SE = 14 %,
  # widened to 20 % for the heavier tails of a few dominant units.
  assert cf["median_relative_error_of_mc_std"] < 0.2
  closed = np.asarray([cf["mean_std"][k] for k in ("inside", "gap", "beyond")])
  mc = np.asarray(
    [s["sweep"]["results"]["rate0.5-relu-last"]["mean_std"][k] for k in ("inside", "gap", "beyond")]
  )
  np.testing.assert_allclose(mc, closed, rtol=0.2)


@pytest.mark.slow
def test_example_runs_small(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAXUQ_EXAMPLE_SMALL="1")
  proc = subprocess.run([sys.executable, str(ROOT / "examples" / "regression_gap.py")], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "mean predictive std: inside" in proc.stdout


@pytest.mark.parametrize("budget", [None, 3 * 40 * 30 * 4])
def test_split_coverage_counts_match_one_split_at_a_time(monkeypatch, budget):
  # The random splits run in one program (in batches when a budget is small: here 3 splits
  # per batch, 7 splits, so a short last batch); each count must be what scoring that split
  # alone gives.
  if budget is not None:
    monkeypatch.setattr(ce, "SPLIT_BYTES", budget)
  rng = np.random.default_rng(3)
  n, samples, splits = 30, 40, 7
  y = rng.normal(size=n).astype(np.float32)
  draws = (rng.normal(size=(samples, n)) * rng.uniform(0.5, 2, n)).astype(np.float32)
  perms = np.stack([rng.permutation(n) for _ in range(splits)])
  cal, test = perms[:, :12], perms[:, 12:]
  counts = ce.split_coverage_counts(draws, y, cal, test)
  assert list(counts) == list(ce.METHODS)
  for i in range(splits):
    found = ce.intervals(draws[:, cal[i]], y[cal[i]], draws[:, test[i]])
    for name, (lo, hi) in found.items():
      want = int(((lo <= y[test[i]]) & (y[test[i]] <= hi)).sum())
      assert counts[name][i] == want, (name, i)


def test_regression_intervals_refuses_no_splits():
  y = np.zeros(4, np.float32)
  with pytest.raises(ValueError, match="splits must be a positive int, got 0"):
    ce.regression_intervals(0, np.zeros((3, 4), np.float32), y, np.zeros((3, 4)), y, {}, splits=0)


def test_a_too_large_batch_is_refused_before_the_folder_changes(tmp_path):
  # It raised a traceback after writing train_config.json and deleting the checkpoint.
  with pytest.raises(SystemExit, match="--batch-size: 100000 is more than the 1620 training rows"):
    cli.main(["regression", *SMALL, "--batch-size", "100000", "--out", str(tmp_path)])
  assert not any(tmp_path.iterdir())


def test_a_fresh_run_over_an_old_one_counts_its_own_epochs(quick_run, tmp_path):
  # The old checkpoint's metadata file stayed behind: the retrained run said 0 epochs.
  out = tmp_path / "again"
  for _ in range(2):
    assert cli.main(["regression", *SMALL, "--epochs", "2", "--no-gif", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["main"]["epochs_trained_this_run"] == 2
