"""jaxuq bench: its options, floors, first calls, checks, reports and the GPU script."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxuq import cli
from jaxuq.experiments.bench import args as bench_args
from jaxuq.experiments.bench import cases, peers, report, timing, workers

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["bench", "--models", "mlp", "--batches", "8", "--masks", "4", "--width", "16"]


def _rows(out: pathlib.Path) -> list[dict]:
  return json.loads((out / "bench.json").read_text())["rows"]


@pytest.mark.parametrize(
  "option, value",
  [
    ("--masks", "0"),
    ("--masks", "10,0"),
    ("--batches", "-8"),
    ("--batches", "x"),
    ("--width", "0"),
    ("--repeats", "0"),
    ("--loop-cap", "0"),
    ("--budget", "0"),
    ("--budget", "inf"),  # ended, after the floors and first calls, in "cannot convert NaN"
    ("--time-limit", "-1"),
    ("--models", "resnet"),
  ],
)
def test_bad_numbers_are_refused_naming_the_option(option, value, capsys):
  # `--masks 0` used to end in a ZeroDivisionError after the work had started.
  with pytest.raises(SystemExit) as e:
    cli.main(["bench", "--quick", option, value])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert f"argument {option}" in err and repr(value) in err


def test_grids_and_options():
  parser = bench_args.argparse.ArgumentParser()
  bench_args.add_arguments(parser)
  quick = bench_args.plan(parser.parse_args(["--quick"]))
  assert quick.grid == "quick" and not quick.isolate and len(quick.cases) == 3
  assert quick.variants is not None and "eager" not in quick.variants
  gpu = bench_args.plan(parser.parse_args(["--grid", "gpu"]))
  assert [c.name for c in gpu.cases] == [
    "mlp b256 T100",
    "mlp b256 T1000",
    "mlp b5000 T100",
    "mlp b5000 T1000",
    "mlp-last b256 T100",
    "cnn b1000 T100",
  ]
  assert gpu.loop_cap == 100 and gpu.cases[0].width == 1024 and not gpu.isolate
  assert gpu.variants is not None and {"torch_repeat_tf32", "apply_flax"} <= set(gpu.variants)
  full = bench_args.plan(parser.parse_args(["--batches", "8", "--masks", "2,3", "--isolate"]))
  assert len(full.cases) == 6 and full.isolate and full.variants is None
  # Options override a preset's cases.
  mine = bench_args.plan(parser.parse_args(["--grid", "gpu", "--models", "cnn", "--masks", "7"]))
  assert [c.name for c in mine.cases] == ["cnn b256 T7", "cnn b5000 T7"]


def test_floor_counts_key_independent_layers_once():
  # The old floor was T full passes; with dropout before the last layer only,
  # mc_sample computes the wide layers once and reached "283 % of the floor".
  case = cases.Case("mlp-last", 64, 10, width=128)
  full = cases.forward_flops(case)
  flops = cases.case_flops(case)
  assert flops.one_pass == pytest.approx(full)
  assert flops.shared > 0.9 * full  # three of the four wide layers, the fourth too
  assert flops.samples(10) < 0.2 * 10 * full
  # Dense 1 -> w before the first dropout: 2 * batch * w for the product.
  mlp = cases.case_flops(cases.Case("mlp", 64, 10, width=128))
  assert 2 * 64 * 128 <= mlp.shared < 0.01 * mlp.one_pass
  cnn = cases.case_flops(cases.Case("cnn", 4, 10))
  assert cnn.per_mask >= 2 * 4 * 100 * 10 and cnn.shared > 10 * cnn.per_mask


def test_tolerance_follows_the_precision_in_force():
  assert timing.check_tolerance("float32") == pytest.approx(1e-4)
  assert 1e-3 <= timing.check_tolerance("tf32") <= 5e-3
  assert timing.check_tolerance("bfloat16") > timing.check_tolerance("tf32")
  if jax.devices()[0].platform == "cpu":
    assert timing.matmul_precision() == "float32"
  with jax.default_matmul_precision("highest"):
    assert timing.matmul_precision() == "float32"


def test_peers_say_why_they_do_not_run():
  why = peers.available("torch_repeat_tf32")
  if jax.devices()[0].platform == "cpu":
    assert why is not None and ("not installed" in why or "TF32" in why)
  big = cases.Case("mlp", 5000, 1000)
  assert peers.repeat_bytes(big) == 4 * 1000 * 5000 * 1024
  assert peers.repeat_bytes(big) > peers.REPEAT_LIMIT_BYTES


def test_loops_can_be_capped_and_scaled():
  case = cases.Case("mlp", 8, 50, width=16)
  assert cases.loop_masks(case, None) == 50
  assert cases.loop_masks(case, 10) == 10
  assert cases.loop_masks(case, 100) == 50
  variant = cases.build_variant("sequential", case, loop_cap=10)
  assert variant.calls == 10 and variant.run().shape == (10, 8, 1)


def test_eager_and_single_applies():
  case = cases.Case("mlp", 8, 4, width=16)
  eager = cases.build_variant("eager", case)
  ref = cases.reference("sequential", case, limit=3)
  assert eager.calls == 3
  np.testing.assert_allclose(np.asarray(eager.run()), ref, rtol=1e-5, atol=1e-6)
  for name in cases.SINGLE_APPLIES:
    single = cases.build_variant(name, case)
    assert single.single and single.calls == 1 and single.run().shape == (8, 1)
  assert cases.hlo_chars(case, flax_dropout=True) > 1000


def test_variants_run_in_processes_of_their_own(tmp_path):
  # Each variant in a worker process of its own: its first call is that of a
  # fresh process; then the variants are timed in alternating rounds.
  args = TINY + ["--variants", "mc_auto", "--no-peers", "--repeats", "2", "--isolate"]
  assert cli.main(args + ["--out", str(tmp_path)]) == 0
  summary = json.loads((tmp_path / "bench.json").read_text())
  assert summary["first_call"] == "fresh process" and summary["compilation_cache"] == "off"
  assert jax.config.values["jax_enable_compilation_cache"]  # restored after the run
  rows = summary["rows"]
  assert [r["variant"] for r in rows] == ["mc_auto"]
  for r in rows:
    assert r["repeats"] == 2 and len(r["times_s"]) == 2 and r["check"]["ok"]
    assert r["first_call"] == "fresh process" and r["first_call_s"] > 0
    assert r["peak_rss_mib"] > 0 and r["matmul_flops_per_s"] > 0
  # --append replaces the same (case, variant) and keeps the rest.
  args2 = args + ["--masks", "2", "--variants", "sequential"]  # (one first-call mode per file)
  assert cli.main(args2 + ["--out", str(tmp_path), "--append"]) == 0
  # (an MLP of another width than 1024 says so in its name: rows of two widths never pair up)
  assert sorted(r["case"] for r in _rows(tmp_path)) == ["mlp b8 T2 w16", "mlp b8 T4 w16"]
  (tmp_path / "bench.md").unlink()
  assert cli.main(["bench", "--render", "--out", str(tmp_path)]) == 0
  table = (tmp_path / "bench.md").read_text()
  assert "| mlp b8 T4 w16 | " in table and "`mc_sample`" in table
  # --append onto rows of another machine is refused (its ratios would mix machines)
  summary = json.loads((tmp_path / "bench.json").read_text())
  summary["environment"]["device_kind"] = "NVIDIA H200"
  (tmp_path / "bench.json").write_text(json.dumps(summary))
  with pytest.raises(ValueError, match="--append: .* another device_kind"):
    cli.main(args2 + ["--out", str(tmp_path), "--append"])
  with pytest.raises(ValueError, match="--append: .* another .*first_call"):
    mixed = [*args[:-1], "--masks", "2", "--variants", "sequential", "--in-process"]
    cli.main(mixed + ["--out", str(tmp_path), "--append"])


def test_warm_runs_are_judged_by_a_warm_run():
  # The budget was divided by the first call (seconds of compilation): quick variants got one
  # run, whose median is the slowest warm run's.
  spec = {"budget": 1.0, "repeats": 10}
  assert workers._repeats(spec, 0.001) == 10
  assert workers._repeats(spec, 0.3) == 3  # 3 fit in twice the budget
  assert workers._repeats(spec, 0.9) == 1
  assert workers._repeats(spec, 50.0) == 1
  assert workers._repeats({"budget": 1.0, "repeats": 2}, 0.001) == 2


def test_cache_stays_off_after_earlier_compilations(tmp_path):
  # JAX decides at a process's first compilation whether it uses the cache: a folder set
  # before it (JAX_COMPILATION_CACHE_DIR) made every "first call" of a bench with the cache
  # "off" a cache hit once anything had compiled (an import compiled a key).
  from jaxuq._src import compile_cache

  old = compile_cache.cache_settings()
  folder = tmp_path / "jax_cache"
  try:
    compile_cache.enable_compilation_cache(folder)
    jax.jit(lambda x: x * 3.0)(jnp.ones(7))  # decides: the cache is used
    before = sorted(folder.iterdir())
    args = TINY + ["--variants", "mc_auto", "--no-peers", "--repeats", "1", "--in-process"]
    assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
    assert sorted(folder.iterdir()) == before  # nothing kept while the bench ran
    (row,) = _rows(tmp_path / "b")  # in this process: no peak memory of the variant's own
    assert row["peak_rss_mib"] is None and row["process_peak_rss_mib"] > 0
    assert compile_cache.cache_settings()["jax_compilation_cache_dir"] == str(folder)  # restored
  finally:
    compile_cache.apply_cache_settings(old)


def test_runs_that_cannot_work_stop_before_any_work(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(OSError, match="--out .* not a folder this run can write"):
    cli.main(TINY + ["--no-peers", "--out", str(blocker / "sub")])
  with pytest.raises(ValueError, match="--variants closed_form: the case.* run none"):
    cli.main(TINY + ["--variants", "closed_form", "--out", str(tmp_path / "o")])
  assert not (tmp_path / "o" / "bench.json").exists()


def test_keras_with_another_backend_is_skipped_with_the_reason(monkeypatch):
  monkeypatch.setenv("KERAS_BACKEND", "torch")
  assert "KERAS_BACKEND=torch" in peers.available("keras_loop")


def _check_summary(summary: dict) -> None:
  env = summary["environment"]
  assert env["platform"] == jax.devices()[0].platform and env["device_kind"]
  assert env["matmul_precision"] in ("float32", "tf32", "bfloat16")
  assert {"jax", "jaxlib", "flax", "optax", "torch", "keras", "python"} <= set(env["versions"])
  assert set(summary["matmul_floors"]) == {"default", "highest", "bfloat16"}
  assert all(h["jaxuq"] > 0 and h["flax"] > 0 for h in summary["hlo"])
  timed = [r for r in summary["rows"] if "time_s" in r]
  assert timed and all(r["first_call_s"] > 0 for r in timed)
  # No sampler beats the arithmetic it cannot skip.
  for r in timed:
    assert 0 < r["fraction_of_matmul_floor"] <= 1.0, r
  assert all(r["check"]["ok"] for r in summary["rows"] if "check" in r)
  assert {"apply_flax", "apply_jaxuq"} <= {r["variant"] for r in timed}
  assert any(t["target"].startswith("HLO") for t in summary["targets"])


@pytest.mark.slow
def test_quick_bench_checks_every_variant(tmp_path):
  code = cli.main(["bench", "--quick", "--no-peers", "--out", str(tmp_path)])
  summary = json.loads((tmp_path / "bench.json").read_text())
  _check_summary(summary)
  rows = summary["rows"]
  assert code == 0 and summary["first_call"] == "caches cleared"
  variants = {(r["model"], r["variant"]) for r in rows}
  for model in ("mlp", "mlp-last", "cnn"):
    for v in ("sequential", "mc_auto", "mc_shared", "loop_flax_default", "apply_flax"):
      assert (model, v) in variants
  assert ("mlp-last", "closed_form") in variants
  assert len([r for r in rows if "check" in r]) >= 11
  assert all(r["time_s"] > 0 and r["flops"] > 0 for r in rows)
  assert all(r["extrapolated_from"] is None for r in rows)
  assert any(t["target"].startswith("first call") for t in summary["targets"])
  assert (tmp_path / "bench.md").read_text().count("\n|") >= len(rows)


@pytest.mark.slow
def test_gpu_script_runs_end_to_end_with_the_tiny_grid(tmp_path):
  env = {**os.environ, "SKIP_TESTS": "1", "GRID": "tiny", "PYTHON": sys.executable}
  done = subprocess.run(
    ["bash", str(REPO / "benchmarks" / "gpu.sh"), str(tmp_path)],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr
  tail = done.stdout.strip().splitlines()[-4:]
  assert tail[1] == "tests: skipped (SKIP_TESTS=1)" and tail[2].startswith("bench: rc 0"), tail
  assert {p.name for p in tmp_path.iterdir()} >= {"env.txt", "bench.log", "bench.json", "bench.md"}
  assert len(list(tmp_path.iterdir())) <= 8 and all(p.is_file() for p in tmp_path.iterdir())
  assert "jax devices" in (tmp_path / "env.txt").read_text()
  summary = json.loads((tmp_path / "bench.json").read_text())
  _check_summary(summary)
  assert summary["plan"]["grid"] == "tiny" and len(summary["rows"]) == 6


def test_report_targets_and_tables():
  rows = [
    {"case": "mlp b8 T4", "model": "mlp", "batch": 8, "masks": 4, "variant": v, **res}
    for v, res in [
      ("sequential", {"time_s": 1.0, "first_call_s": 2.0, "first_call_masks": 2}),
      ("mc_auto", {"time_s": 0.1, "first_call_s": 2.6}),
      ("apply_flax", {"time_s": 0.01, "first_call_s": 2.0, "masks_timed": 1}),
      ("torch_loop", {"skipped": "torch is not installed"}),
    ]
  ]
  report.add_speedups(rows)
  assert rows[1]["speedup_vs_sequential"] == pytest.approx(10.0)
  assert "speedup_vs_sequential" not in rows[2]  # one pass, not T masks
  hlo = [{"model": "mlp", "jaxuq": 30, "flax": 20, "ratio": 1.5}]
  got = report.targets({"rows": rows, "hlo": hlo, "environment": {"platform": "cpu"}})
  # first call 2.6 / 2.0; overhead (2.6 - 0.1) / (2.0 - 0.01) = 1.256; HLO 1.5
  assert [(t["value"], t["met"]) for t in got] == [
    (pytest.approx(1.3), True),
    (pytest.approx(2.5 / 1.99), True),
    (1.5, True),
  ]
  assert got[1]["target"].startswith("compile overhead")
  table = report.pivot_table(rows)
  assert "PyTorch" not in table.splitlines()[0] and "torch_loop: torch is not installed" in table
  # a capped loop's first call is of its cap, not of T masks: the table says so
  first = report.pivot_table(rows, first_call=True)
  assert "| 2 s (2 masks) | 2.6 s |" in first


def test_render_reads_a_summary_of_the_earlier_format(tmp_path):
  old = json.loads((REPO / "benchmarks/results/cpu_2core/bench.json").read_text())
  report.render(old, tmp_path, plot=False)
  table = (tmp_path / "bench.md").read_text()
  assert table.startswith("Device: cpu") and "| mlp b256 T100 |" in table
  # what that run never recorded is not stated (it said "fresh process", "cache: off")
  assert "not recorded by this older run" in table and "cache: not recorded" in table
  assert "nanx" not in table


def test_compile_bench_summary_takes_medians_and_ratios_to_flax():
  spec = importlib.util.spec_from_file_location(
    "bench_compile", REPO / "benchmarks/bench_compile.py"
  )
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  rows = [
    {
      "model": "mlp",
      "variant": v,
      "first_s": f,
      "warm_s": w,
      "overhead_s": f - w,
      "trace_s": 0.1,
      "lower_s": 0.1,
      "xla_s": 0.2,
    }
    for v, f, w in [
      ("apply_flax", 0.5, 0.0),
      ("apply_flax", 0.4, 0.0),
      ("apply_flax", 0.9, 0.0),
      ("mc_sample", 2.0, 1.0),
      ("mc_sample", 2.2, 1.0),
      ("mc_sample", 1.9, 1.1),
    ]
  ]
  got = {s["variant"]: s for s in mod.summarize(rows)}
  assert got["apply_flax"]["overhead_s"] == pytest.approx(0.5)  # median of 0.5, 0.4, 0.9
  assert got["mc_sample"]["overhead_s"] == pytest.approx(1.0)  # median of 1.0, 1.2, 0.8
  assert got["mc_sample"]["overhead_vs_apply_flax"] == pytest.approx(2.0)
  assert "| mlp | mc_sample | 2.000 |" in mod.table(list(got.values()))
