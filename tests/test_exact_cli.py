"""``jaxuq exact``: the table (text and JSON), MC columns, files, convergence data."""

import json

import numpy as np

from jaxuq import cli
from jaxuq.experiments import _exact_convergence


def test_exact_prints_the_four_row_table(capsys):
  assert cli.main(["exact"]) == 0
  out = capsys.readouterr().out
  for line in ["none", "0.49", "11", "-355.666666667", "511", "144.333333333", "80733.3333333"]:
    assert line in out


def test_exact_json_with_samples(capsys):
  assert cli.main(["exact", "--json", "--samples", "2000", "--key", "3"]) == 0
  summary = json.loads(capsys.readouterr().out)
  rows = summary["rows"]
  assert [r["kept"] for r in rows] == ["none", "h1", "h2", "h1 h2"]
  np.testing.assert_allclose([r["probability"] for r in rows], [0.49, 0.21, 0.21, 0.09], rtol=1e-15)
  np.testing.assert_allclose(
    [r["output"] for r in rows], [11, 11 - 110 / 0.3, 11 + 150 / 0.3, 11 + 40 / 0.3], atol=1e-9
  )
  assert abs(summary["probability_sum"] - 1) < 1e-15
  assert abs(sum(r["mc_frequency"] for r in rows) - 1) < 1e-12
  for r in rows:  # 4 standard errors, fixed key
    assert abs(r["mc_frequency"] - r["probability"]) < 4 * r["standard_error"]
  assert summary["closed_form_variance"] == summary["exact_variance"] or np.isclose(
    summary["closed_form_variance"], summary["exact_variance"], rtol=1e-12
  )


def test_exact_out_writes_summary_and_histogram(tmp_path, capsys):
  assert cli.main(["exact", "--samples", "100", "--out", str(tmp_path)]) == 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["samples"] == 100 and len(summary["rows"]) == 4
  assert (tmp_path / "histogram.png").stat().st_size > 1000
  assert "MC frequency" in capsys.readouterr().out


def test_convergence_follows_one_over_sqrt_t():
  data = _exact_convergence.convergence_data(0, max_log2=10, repeats=16)
  t = np.asarray(data["T"])
  for net in data["networks"].values():
    ratio = np.asarray(net["rel_rmse_mean"]) * np.sqrt(t)  # ~1, RMS over 16 runs
    assert np.all((ratio > 0.4) & (ratio < 1.8)), ratio
    v = (
      np.asarray(net["rel_rmse_variance"])[t >= 64] * np.sqrt(t[t >= 64]) / net["variance_constant"]
    )
    assert np.all((v > 0.4) & (v < 1.8)), v
