"""jaxuq bench --quick: every variant returns the samples of sequential_sample."""

import json

import pytest

from jaxuq import cli


@pytest.mark.slow
def test_quick_bench_checks_every_variant(tmp_path):
  code = cli.main(["bench", "--quick", "--in-process", "--no-peers", "--out", str(tmp_path)])
  summary = json.loads((tmp_path / "bench.json").read_text())
  rows = summary["rows"]
  assert code == 0
  variants = {(r["model"], r["variant"]) for r in rows}
  for model in ("mlp", "mlp-last", "cnn"):
    for v in ("sequential", "mc_auto", "mc_shared", "mc_chunk1", "eager", "loop_flax_default"):
      assert (model, v) in variants
  assert ("mlp-last", "closed_form") in variants
  checked = [r for r in rows if "check" in r]
  assert len(checked) >= 15 and all(r["check"]["ok"] for r in checked)
  assert all(r["time_s"] > 0 and r["flops"] > 0 for r in rows)
  # Whole-run timings are not scaled by the mask count; only the eager loop,
  # which runs a few masks, is extrapolated.
  for r in rows:
    assert (r["extrapolated_from"] is not None) == (r["variant"] == "eager"), r
  assert (tmp_path / "bench.md").read_text().count("\n|") >= len(rows)
