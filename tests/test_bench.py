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


def test_variants_run_in_processes_of_their_own(tmp_path):
  # Each variant in its own worker process, timed in alternating rounds.
  args = ["bench", "--models", "mlp", "--batches", "8", "--masks", "4", "--width", "16"]
  args += [
    "--variants",
    "sequential,mc_auto",
    "--no-peers",
    "--repeats",
    "2",
    "--out",
    str(tmp_path),
  ]
  assert cli.main(args) == 0
  rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
  assert [r["variant"] for r in rows] == ["sequential", "mc_auto"]
  for r in rows:
    assert r["repeats"] == 2 and len(r["times_s"]) == 2 and r["check"]["ok"]
    assert r["peak_rss_mib"] > 0 and r["matmul_flops_per_s"] > 0
  # --append replaces the same (case, variant) and keeps the rest.
  args2 = args[:-2] + ["--masks", "2", "--variants", "sequential", "--in-process"]
  assert cli.main(args2 + ["--out", str(tmp_path), "--append"]) == 0
  rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
  assert sorted(r["case"] for r in rows) == ["mlp b8 T2", "mlp b8 T4", "mlp b8 T4"]
  (tmp_path / "bench.md").unlink()
  assert cli.main(["bench", "--render", "--out", str(tmp_path)]) == 0
  table = (tmp_path / "bench.md").read_text()
  assert "| mlp b8 T4 | " in table and "`mc_sample`" in table


def test_loops_can_be_capped_and_scaled():
  from jaxuq.experiments import bench_cases, bench_peers

  case = bench_cases.Case("mlp", 8, 50, width=16)
  assert bench_cases.loop_masks(case, None) == 50
  assert bench_cases.loop_masks(case, 10) == 10
  assert bench_cases.loop_masks(case, 100) == 50
  variant = bench_cases.build_variant("sequential", case, loop_cap=10)
  assert variant.calls == 10 and variant.run().shape == (10, 8, 1)
  big = bench_cases.Case("mlp", 5000, 1000)
  assert bench_peers.repeat_bytes(big) == 4 * 1000 * 5000 * 1024
  assert bench_peers.repeat_bytes(big) > bench_peers.REPEAT_LIMIT_BYTES
