"""benchmarks/active_tables.py: a grid read back from its checkpoints, in parts and folders."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import numpy as np
import optax
import pytest

from jaxuq.active import active_learning_runs
from jaxuq.experiments._active_report import images_to_reach
from jaxuq.models import MLP

REPO = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("active_tables", REPO / "benchmarks/active_tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)

NET = MLP(out_features=3, depth=1, width=8, rate=0.3)
SEEDS = np.stack([np.arange(6), np.arange(6, 12)])  # 2 repeats
SETTINGS = dict(acquisitions=3, epochs=1, acquisition_size=4, pool_subset=20, num_samples=3,
                batch_size=8, progress=False)  # fmt: skip


def _data():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 90).astype(np.int32)
  x = (np.eye(3)[y] * 2 + rng.normal(size=(90, 3))).astype(np.float32)
  return x[:60], y[:60], x[60:], y[60:]


def _grid(folder, selects, side_by_side, stop_after=None, resume=False):
  path = folder / "checkpoints" / "active.msgpack"
  path.parent.mkdir(parents=True, exist_ok=resume)
  _, history = active_learning_runs(
    jax.random.key(0), NET, optax.adam(1e-2), *_data(), selects=selects, seed_indices=SEEDS,
    side_by_side=side_by_side, checkpoint=path, stop_after=stop_after, **SETTINGS,
  )  # fmt: skip
  return history


@pytest.mark.slow
def test_grids_in_parts_and_folders_read_back_as_run(tmp_path):
  # BALD side by side and stopped after 2 of 4 rounds; random one by one, all rounds.
  bald = _grid(tmp_path / "a", ["bald"], True, stop_after=2)
  rand = _grid(tmp_path / "b", ["random"], False)
  runs = tables.read_grid(tmp_path / "a", ["bald"], 2)
  runs += tables.read_grid(tmp_path / "b", ["random=Random (folder b)"], 2)
  tables.check_common_numbers(runs)
  error, labelled = tables.error_array(runs, ["bald", "Random (folder b)"], 2)
  assert error.shape == (4, 2, 2)
  np.testing.assert_array_equal(error[:2, 0], bald["test_error"][:, 0])
  assert np.isnan(error[2:, 0]).all()  # rounds BALD has not run
  np.testing.assert_array_equal(error[:, 1], rand["test_error"][:, 0])
  np.testing.assert_array_equal(labelled, rand["num_labelled"][:, 0, 0])
  acquired = labelled - 6
  got = tables.thresholds(acquired, error[:, 1])
  mean = rand["test_error"][:, 0].mean(axis=1)
  for t, name in zip(tables.THRESHOLDS, got, strict=True):
    want = images_to_reach(acquired, mean, t)
    assert got[name] == (f"not reached by {acquired[-1]}" if want is None else str(want))
  # BALD's thresholds see its 2 rounds only: "not reached by 4" acquired, not by 12
  bald_mean = bald["test_error"][:, 0].mean(axis=1)
  for t, cell in zip(
    tables.THRESHOLDS, tables.thresholds(acquired, error[:, 0]).values(), strict=True
  ):
    want = images_to_reach(acquired[:2], bald_mean, t)
    assert cell == ("not reached by 4" if want is None else str(want))
  text = tables.markdown(["bald", "Random (folder b)"], error, acquired, [0, 4, 8, 12], {
    "bald": tables.thresholds(acquired, error[:, 0]), "Random (folder b)": got})  # fmt: skip
  assert "| BALD | 2 |" in text and "| Random (folder b) | 4 |" in text


def test_a_grid_listed_in_another_order_or_size_is_refused(tmp_path):
  _grid(tmp_path / "g", ["bald", "random"], False, stop_after=1)
  with pytest.raises(SystemExit, match=r"holds \['bald'\], not \['random'\]"):
    tables.read_grid(tmp_path / "g", ["random", "bald"], 2)
  with pytest.raises(SystemExit, match="run4 is missing"):
    tables.read_grid(tmp_path / "g", ["bald", "random", "max_entropy"], 2)


def test_a_side_by_side_grid_with_batchbald_reads_back_from_its_groups(tmp_path):
  history = _grid(tmp_path / "g", ["bald", "batchbald", "random"], True)
  runs = tables.read_grid(tmp_path / "g", ["bald", "batchbald", "random"], 2)
  error, _ = tables.error_array(runs, ["bald", "batchbald", "random"], 2)
  np.testing.assert_array_equal(error, history["test_error"])


def test_cut_reads_runs_up_to_a_common_round():
  runs = [
    {"rounds": 5, "test_error": [5, 4, 3, 2, 1], "num_labelled": [6, 10, 14, 18, 22],
     "acquired": [[1], [2], [3], [4]]},
    {"rounds": 2, "test_error": [5, 4], "num_labelled": [6, 10], "acquired": [[1]]},
  ]  # fmt: skip
  cut = tables.cut(runs, 3)
  assert [r["rounds"] for r in cut] == [3, 2]
  assert cut[0]["test_error"] == [5, 4, 3] and cut[0]["acquired"] == [[1], [2]]
  assert cut[1] == runs[1]
