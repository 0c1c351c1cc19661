"""benchmarks/active_rebuild.py: a grid rebuilt from its JSON goes on as the original did."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from tests.test_active_tables import _grid, tables

REPO = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
  "active_rebuild", REPO / "benchmarks/active_rebuild.py"
)
rebuild = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rebuild)


@pytest.mark.slow
def test_a_rebuilt_grid_continues_bit_for_bit(tmp_path):
  # The original: 4 rounds (3 acquisitions) of BALD, one run after another, 2 repeats.
  full = _grid(tmp_path / "a", ["bald"], False)
  # What a table cut at 3 rounds commits: 3 test errors and 2 acquisitions per run.
  runs = tables.cut(tables.read_grid(tmp_path / "a", ["bald"], 2), 3)
  runs = [{k: v for k, v in r.items() if k not in ("seeds", "key")} | {"seed_set": r["seeds"]}
          for r in runs]  # fmt: skip
  # A new checkout: round-1 checkpoints, rebuilt from the JSON, then run to the end.
  _grid(tmp_path / "b", ["bald"], False, stop_after=1)
  for i, run in enumerate(runs):
    said = rebuild.rebuild(tmp_path / "b" / "checkpoints" / f"active.msgpack.run{i}", run)
    assert "rebuilt at round 2, 14 labelled" in said, said  # 6 seeds + 2 x 4 acquired
  again = _grid(tmp_path / "b", ["bald"], False, resume=True)
  np.testing.assert_array_equal(again["acquired"], full["acquired"])
  np.testing.assert_array_equal(again["num_labelled"], full["num_labelled"])
  np.testing.assert_array_equal(again["test_error"], full["test_error"])
  np.testing.assert_array_equal(again["train_loss"][2:], full["train_loss"][2:])
  assert np.isnan(again["train_loss"][1]).all()  # not kept in the JSON
