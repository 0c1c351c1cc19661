"""The active-learning loop: resume bit for bit, no repeated labels, runs side by side, errors."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxuq._src.active import loop as loop_module
from jaxuq._src.active import runs as runs_module
from jaxuq._src.active.fit_labelled import fit_labelled, padded_size
from jaxuq._src.active.labelled import balanced_seed, labelled_set
from jaxuq._src.losses import resolve_loss
from jaxuq.active import acquisition, active_learning, active_learning_runs, checkpoint_history
from jaxuq.metrics import mutual_information
from jaxuq.models import MLP
from jaxuq.train import cross_entropy, init_state, train

NET = MLP(out_features=3, depth=1, width=16, rate=0.3)


def bald(key, probs, k):
  del key
  return jax.lax.top_k(mutual_information(probs), k)[1]


def random_select(key, probs, k):
  return jax.random.choice(key, probs.shape[1], (k,), replace=False)


def _data(n_pool=90, n_test=30):
  key = jax.random.key(42)
  centres = jnp.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
  y = jax.random.randint(key, (n_pool + n_test,), 0, 3)
  x = centres[y] + 1.2 * jax.random.normal(jax.random.fold_in(key, 1), (n_pool + n_test, 2))
  x, y = np.asarray(x), np.asarray(y, np.int32)
  return x[:n_pool], y[:n_pool], x[n_pool:], y[n_pool:]


DATA = _data()
SETTINGS = dict(
  acquisitions=3, epochs=2, acquisition_size=4, pool_subset=25, num_samples=4, batch_size=8,
  progress=False,
)  # fmt: skip


def _run(select=bald, key=0, **overrides):
  settings = SETTINGS | overrides
  return active_learning(
    jax.random.key(key), NET, optax.adam(1e-2), *DATA, select=select,
    seed_indices=np.arange(6), **settings,
  )  # fmt: skip


@contextlib.contextmanager
def _interrupted_after_saves(monkeypatch, saves: int):
  """Within the block, the loop is interrupted right after its ``saves``-th checkpoint."""
  real_save, done = runs_module.save_checkpoint, []

  def save_then_maybe_interrupt(*args, **kwargs):
    real_save(*args, **kwargs)
    done.append(1)
    if len(done) == saves:
      raise KeyboardInterrupt

  with monkeypatch.context() as m:
    m.setattr(runs_module, "save_checkpoint", save_then_maybe_interrupt)
    yield


def test_history_shapes_and_labels_never_repeat():
  for select in (bald, random_select):
    _, h = _run(select, acquisitions=5, acquisition_size=5)
    assert h["acquired"].shape == (5, 5)
    assert h["test_error"].shape == h["num_labelled"].shape == (6,)
    np.testing.assert_array_equal(h["num_labelled"], 6 + 5 * np.arange(6))
    rows = np.concatenate([np.arange(6), h["acquired"].ravel()])
    assert len(np.unique(rows)) == len(rows)
    np.testing.assert_allclose(h["test_error"], 1.0 - h["test_accuracy"], atol=1e-6)


def test_pool_subset_none_offers_every_row_left_at_the_end():
  _, h = _run(bald, acquisitions=2, pool_subset=None)  # 90 - 6 - 4 = 80 rows scored a round
  assert h["acquired"].shape == (2, 4)
  assert len(np.unique(h["acquired"])) == 8


def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch):
  full_state, full = _run(checkpoint=tmp_path / "a.msgpack")
  with _interrupted_after_saves(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
    _run(checkpoint=tmp_path / "b.msgpack")
  state, history = _run(checkpoint=tmp_path / "b.msgpack")
  assert history.keys() == full.keys()
  for name in full:
    assert history[name].dtype == full[name].dtype
    np.testing.assert_array_equal(history[name], full[name])
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(full_state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  # A finished checkpoint returns the same again; another configuration is refused.
  _, again = _run(checkpoint=tmp_path / "b.msgpack")
  np.testing.assert_array_equal(again["acquired"], full["acquired"])
  with pytest.raises(ValueError, match="different active-learning run"):
    _run(checkpoint=tmp_path / "b.msgpack", num_samples=5)


def test_stop_after_splits_a_run_into_calls_that_continue_bit_for_bit(tmp_path):
  full_state, full = _run(checkpoint=tmp_path / "a.msgpack")
  path = tmp_path / "b.msgpack"
  _, first = _run(checkpoint=path, stop_after=2)
  assert first["test_error"].shape == (2,) and first["acquired"].shape == (2, 4)
  np.testing.assert_array_equal(first["acquired"], full["acquired"][:2])
  _, same = _run(checkpoint=path, stop_after=1)  # the checkpoint is past it: nothing runs
  np.testing.assert_array_equal(same["test_error"], first["test_error"])
  state, rest = _run(checkpoint=path, stop_after=10)  # past the last round: runs to the end
  for name in full:
    np.testing.assert_array_equal(rest[name], full[name])
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(full_state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="stop_after must be a positive int"):
    _run(stop_after=0)


def test_resuming_with_other_settings_names_them_before_restoring(tmp_path):
  # Another number of acquisitions or another pool size failed in restore_checkpoint with a
  # raw shape error ("(1, 18) where the target has (1, 15)") before the settings were read.
  path = tmp_path / "c.msgpack"
  _run(checkpoint=path, stop_after=1)
  with pytest.raises(ValueError, match=r"options \(acquisitions: 3 in the checkpoint, 5 now\)"):
    _run(checkpoint=path, acquisitions=5)
  with pytest.raises(ValueError, match="differs in data"):
    active_learning(
      jax.random.key(0), NET, optax.adam(1e-2), DATA[0][:80], DATA[1][:80], *DATA[2:],
      select=bald, seed_indices=np.arange(6), checkpoint=path, **SETTINGS,
    )  # fmt: skip


def test_checkpoint_history_reads_the_rounds_done_without_the_model(tmp_path):
  path = tmp_path / "c.msgpack"
  _, first = _run(checkpoint=path, stop_after=2)
  got = checkpoint_history(path)
  assert set(got) == set(first)
  for name in first:
    assert got[name].shape == (first[name].shape[0], 1, *first[name].shape[1:])  # one run
    np.testing.assert_array_equal(got[name][:, 0], first[name])
    assert got[name].dtype == first[name].dtype
  # Side by side: every function x repeat, run f * repeats + r.
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  grid = tmp_path / "grid.msgpack"
  _, full = active_learning_runs(jax.random.key(3), NET, optax.adam(1e-2), *DATA, checkpoint=grid,
                                 selects=[bald, random_select], seed_indices=seeds, **SETTINGS)  # fmt: skip
  got = checkpoint_history(grid)
  np.testing.assert_array_equal(got["test_error"].reshape(-1, 2, 2), full["test_error"])
  np.testing.assert_array_equal(got["acquired"].reshape(-1, 2, 2, 4), full["acquired"])


def test_checkpoint_history_refuses_other_files(tmp_path):
  with pytest.raises(FileNotFoundError):
    checkpoint_history(tmp_path / "none.msgpack")
  other = tmp_path / "train.msgpack"
  train(jax.random.key(0), NET, optax.adam(1e-2), DATA[0], DATA[1], loss="cross_entropy",
        epochs=1, batch_size=30, progress=False, checkpoint=other)  # fmt: skip
  with pytest.raises(ValueError, match="not one of the active-learning loop"):
    checkpoint_history(other)
  bad = tmp_path / "bad.msgpack"
  bad.write_bytes(other.read_bytes()[:-5])
  with pytest.raises(ValueError, match="corrupted or truncated"):
    checkpoint_history(bad)


def test_stop_after_one_by_one_takes_every_run_to_the_same_round(tmp_path):
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  common = dict(selects=[bald, random_select], seed_indices=seeds, side_by_side=False, **SETTINGS)
  key, path = jax.random.key(3), tmp_path / "grid.msgpack"
  _, full = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, **common)
  _, part = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=path,
                                 stop_after=2, **common)  # fmt: skip
  assert part["test_error"].shape == (2, 2, 2)
  np.testing.assert_array_equal(part["acquired"], full["acquired"][:2])
  _, rest = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=path, **common)
  for name in full:
    np.testing.assert_array_equal(rest[name], full[name])


def test_one_by_one_history_stops_where_every_run_got_to(tmp_path, monkeypatch):
  # An interrupted grid leaves run 0 at 2 rounds and run 1 at 1: a later call with stop_after=1
  # reports one round for every run (the history as far as all went), not a ragged array.
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  common = dict(selects=[bald], seed_indices=seeds, side_by_side=False, **SETTINGS)
  key, path = jax.random.key(3), tmp_path / "grid.msgpack"
  with _interrupted_after_saves(monkeypatch, 3), pytest.raises(KeyboardInterrupt):
    active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=path, stop_after=2, **common)
  _, h = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=path, stop_after=1,
                              **common)  # fmt: skip
  assert h["test_error"].shape == (1, 1, 2)
  assert h["acquired"].shape == (1, 1, 2, 4)


def test_side_by_side_equals_runs_one_by_one():
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  common = dict(selects=[bald, random_select], seed_indices=seeds, **SETTINGS)
  key = jax.random.key(3)
  states, together = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, **common)
  _, apart = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, side_by_side=False, **common)
  assert together["test_error"].shape == (4, 2, 2)
  assert jax.tree.leaves(states.params)[0].shape[:2] == (2, 2)
  np.testing.assert_array_equal(together["acquired"], apart["acquired"])
  for name in ("test_error", "test_nll", "train_loss"):
    np.testing.assert_allclose(together[name], apart[name], rtol=1e-4, atol=1e-6)
  # Run (f, r) is active_learning with the repeat's key and seed set.
  _, one = active_learning(
    jax.random.split(key, 2)[1], NET, optax.adam(1e-2), *DATA, select=random_select,
    seed_indices=seeds[1], **SETTINGS,
  )  # fmt: skip
  np.testing.assert_array_equal(one["acquired"], together["acquired"][:, 1, 1])
  np.testing.assert_allclose(one["test_nll"], together["test_nll"][:, 1, 1], rtol=1e-4)


def test_batchbald_beside_others_leaves_their_samples_alone(tmp_path):
  # One BatchBALD in a side-by-side grid switched every function to shared-mask samples, so
  # BALD beside it acquired other rows than BALD alone (and than one-by-one runs).
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  selects = ["bald", "batchbald", "max_entropy"]
  key = jax.random.key(3)
  common = dict(selects=selects, seed_indices=seeds, **SETTINGS)
  seen: dict[str, list] = {"together": [], "apart": []}
  states, together = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, **common,
                                          callback=lambda r, rec: seen["together"].append((r, rec)))  # fmt: skip
  _, apart = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, side_by_side=False, **common,
                                  callback=lambda r, rec: seen["apart"].append((r, rec)))  # fmt: skip
  assert together["acquired"].shape == apart["acquired"].shape == (3, 3, 2, 4)
  # Each callback record names the grid runs of its columns (groups and one-by-one runs alike
  # call it in turns): every (round, run) comes once, with that run's numbers.
  for mode, history in (("together", together), ("apart", apart)):
    cells = [(r, int(i)) for r, rec in seen[mode] for i in rec["run"]]
    assert sorted(cells) == [(r, i) for r in range(4) for i in range(6)], mode
    for r, rec in seen[mode]:
      f, rep = np.divmod(rec["run"], 2)
      np.testing.assert_array_equal(rec["test_error"], history["test_error"][r, f, rep])
  assert jax.tree.leaves(states.params)[0].shape[:2] == (3, 2)
  np.testing.assert_array_equal(together["acquired"], apart["acquired"])
  np.testing.assert_allclose(together["test_nll"], apart["test_nll"], rtol=1e-4, atol=1e-6)
  for f, name in enumerate(selects):
    _, alone = active_learning(
      jax.random.split(key, 2)[1], NET, optax.adam(1e-2), *DATA, select=name,
      seed_indices=seeds[1], **SETTINGS,
    )  # fmt: skip
    np.testing.assert_array_equal(alone["acquired"], together["acquired"][:, f, 1])
  # Each group keeps its own checkpoint; a stopped grid resumes to the same history.
  path = tmp_path / "grid.msgpack"
  active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=path, stop_after=1, **common)
  _, resumed = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=path, **common)
  assert {p.name.split(".msgpack")[1][:7] for p in tmp_path.iterdir()} >= {".group0", ".group1"}
  np.testing.assert_array_equal(resumed["acquired"], together["acquired"])
  np.testing.assert_array_equal(resumed["test_error"], together["test_error"])


def test_one_compilation_for_all_rounds():
  # The training step and the acquisition are traced once for a run whose labelled set grows
  # from 6 to 24 rows (their Python bodies run only when jax traces them).
  selects, losses = [], []

  def counting_select(key, probs, k):
    selects.append(1)
    return bald(key, probs, k)

  def counting_loss(logits, labels):
    losses.append(1)
    return cross_entropy(logits, labels)

  _run(counting_select, acquisitions=6, acquisition_size=3, loss=counting_loss)
  assert len(selects) == 1
  assert len(losses) == 1


def test_warm_start_differs_from_scratch_and_runs():
  _, scratch = _run()
  _, warm = _run(warm_start=True)
  assert not np.array_equal(scratch["train_loss"][1:], warm["train_loss"][1:])


def test_injected_weight_decay_follows_the_labelled_set_size():
  tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, weight_decay=0.0)
  final, _ = active_learning(
    jax.random.key(0), NET, tx, *DATA, select=bald, seed_indices=np.arange(6),
    hyperparams=lambda n: {"weight_decay": 1.0 / n}, **SETTINGS,
  )  # fmt: skip
  np.testing.assert_allclose(final.opt_state.hyperparams["weight_decay"], 1.0 / 18, rtol=1e-6)


def test_full_labelled_set_trains_as_the_engine_does():
  x, y = DATA[0][:32], DATA[1][:32]
  key = jax.random.key(7)
  engine, _ = train(key, NET, optax.adam(1e-2), x, y, loss="cross_entropy", epochs=3,
                    batch_size=8, progress=False)  # fmt: skip
  state = init_state(key, NET, optax.adam(1e-2), jnp.asarray(x[:1]))
  labelled = labelled_set(jnp.arange(32), 32, 32)
  stacked = jax.tree.map(lambda a: a[None], (state, labelled))
  ours, _ = fit_labelled(
    *stacked[:1], jnp.asarray(x), jnp.asarray(y), stacked[1],
    objective=resolve_loss("cross_entropy"), epochs=3, batch_size=8,
  )  # fmt: skip
  for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(engine.params), strict=True):
    np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)


def test_partial_batch_padded_to_a_power_of_two_is_the_mean_over_its_rows():
  # 20 labelled rows, batch 128: one step an epoch on 32 rows (12 of them padding, weight 0).
  # Without dropout the step is the engine's full-batch step on the 20 rows.
  net = MLP(out_features=3, depth=1, width=16, rate=0.0)
  x, y = DATA[0][:20], DATA[1][:20]
  key = jax.random.key(8)
  engine, _ = train(key, net, optax.adam(1e-2), x, y, loss="cross_entropy", epochs=3,
                    batch_size=20, progress=False)  # fmt: skip
  state = init_state(key, net, optax.adam(1e-2), jnp.asarray(x[:1]))
  stacked = jax.tree.map(lambda a: a[None], (state, labelled_set(jnp.arange(20), 90, 40)))
  ours, _ = fit_labelled(
    stacked[0], jnp.asarray(DATA[0]), jnp.asarray(DATA[1]), stacked[1],
    objective=resolve_loss("cross_entropy"), epochs=3, batch_size=128,
  )  # fmt: skip
  for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(engine.params), strict=True):
    np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)
  assert [padded_size(r, 128) for r in (1, 8, 9, 20, 33, 64, 65, 128)] == [
    8, 8, 16, 32, 64, 64, 128, 128,
  ]  # fmt: skip
  assert padded_size(20, 16) == 16


def test_balanced_seed():
  y = np.repeat(np.arange(3), 10)
  rows = balanced_seed(jax.random.key(0), y, 2)
  assert np.bincount(y[rows]).tolist() == [2, 2, 2]
  with pytest.raises(ValueError, match="fewer than per_class"):
    balanced_seed(jax.random.key(0), y, 11)


@pytest.mark.parametrize(
  ("overrides", "error", "match"),
  [
    ({"seed_indices": np.arange(90)}, ValueError, "smaller than the pool"),
    ({"acquisition_size": 0}, ValueError, "acquisition_size must be a positive int, got 0"),
    ({"pool_subset": 80}, ValueError, "pool_subset=80 is bigger than the pool"),
    ({"select": "no-such-function"}, ValueError, "unknown acquisition function"),
    ({"acquisitions": 30}, ValueError, "the pool has 90"),
    ({"seed_indices": np.array([1, 1, 2])}, ValueError, "distinct"),
    ({"seed_indices": np.array([0, 95])}, ValueError, r"\[0, 90\)"),
    ({"warm_start": 1}, TypeError, "warm_start must be True or False"),
    ({"hyperparams": lambda n: {"weight_decay": n}}, ValueError, "inject_hyperparams"),
    ({"key": 0}, TypeError, "typed PRNG key"),
    ({"select": "bald", "num_samples": 1}, ValueError, "num_samples must be at least 2 for bald"),
  ],
)
def test_bad_input_is_refused_eagerly(overrides, error, match):
  args = dict(key=jax.random.key(0), select=bald, seed_indices=np.arange(6), **SETTINGS) | overrides
  key = args.pop("key")
  with pytest.raises(error, match=match):
    active_learning(key, NET, optax.adam(1e-2), *DATA, **args)


def test_ensemble_members_are_the_samples():
  state, h = _run(members=3, acquisitions=2)
  assert jax.tree.leaves(state.params)[0].shape[0] == 3
  rows = np.concatenate([np.arange(6), h["acquired"].ravel()])
  assert len(np.unique(rows)) == len(rows)
  assert np.all(np.isfinite(h["test_nll"]))
  # Members start from different weights, so they disagree: BALD on them is not all zero.
  first = jax.tree.leaves(state.params)[0]
  assert not np.allclose(first[0], first[1])
  with pytest.raises(ValueError, match="members must be at least 2"):
    _run(members=1)


@pytest.mark.parametrize("name", ["max_entropy", "variation_ratios", "mean_std", "batchbald"])
def test_named_acquisition_functions_run_in_the_loop(name):
  _, h = _run(name, acquisitions=1, acquisition_size=3)
  rows = np.concatenate([np.arange(6), h["acquired"].ravel()])
  assert len(np.unique(rows)) == len(rows)


def test_an_acquisition_object_is_accepted():
  _, h = _run(acquisition("bald", stochastic="power"), acquisitions=1)
  assert h["acquired"].shape == (1, 4)


def test_one_by_one_resume_refuses_another_run_key(tmp_path, monkeypatch):
  # Repeat r's run key is split(key, repeats)[r]. With JAX's older, non-partitionable threefry
  # that key depends on the repeat count, so a grid of 2 repeats resumed as 1 would continue
  # repeat 0's checkpoint (same key, seed set and function) with another run key, silently.
  # (With partitionable threefry, JAX's default, the keys agree and the resume is exact.)
  legacy_split = getattr(jax, "threefry_partitionable", None)
  if legacy_split is None:
    pytest.skip("this JAX has only partitionable threefry: run keys cannot depend on repeats")
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  common = dict(selects=[bald], side_by_side=False, **SETTINGS)
  key, path = jax.random.key(3), tmp_path / "grid.msgpack"
  with legacy_split(False):
    active_learning_runs(key, NET, optax.adam(1e-2), *DATA, seed_indices=seeds, checkpoint=path,
                         stop_after=2, **common)  # fmt: skip
    with pytest.raises(ValueError, match="differs in run_keys"):
      active_learning_runs(key, NET, optax.adam(1e-2), *DATA, seed_indices=seeds[:1],
                           checkpoint=path, **common)  # fmt: skip


def test_checkpoints_without_run_keys_still_resume(tmp_path, monkeypatch):
  # Checkpoints written before the run keys entered the fingerprint are checked on the rest.
  seeds = np.stack([np.arange(6), np.arange(6, 12)])
  common = dict(selects=[bald], side_by_side=False, seed_indices=seeds, **SETTINGS)
  key, old = jax.random.key(3), tmp_path / "old.msgpack"
  real = loop_module.fingerprint
  monkeypatch.setattr(loop_module, "fingerprint",
                      lambda *a: {n: v for n, v in real(*a).items() if n != "run_keys"})  # fmt: skip
  active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=old, stop_after=2, **common)
  monkeypatch.undo()
  _, done = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, checkpoint=old, **common)
  _, full = active_learning_runs(key, NET, optax.adam(1e-2), *DATA, **common)
  for name in full:
    np.testing.assert_array_equal(done[name], full[name])


@pytest.mark.parametrize(
  ("select", "match"),
  [
    (lambda key, probs, k: jnp.zeros(k, jnp.int32), "repeat or lie outside the scored subset"),
    (lambda key, probs, k: jnp.arange(k) + 1000, "repeat or lie outside the scored subset"),
    (lambda key, probs, k: -jnp.ones(k, jnp.int32), "repeat or lie outside the scored subset"),
    (lambda key, probs, k: jnp.arange(k + 2), r"return acquisition_size = 4 integer .* \(6,\)"),
    (lambda key, probs, k: jnp.arange(k) * 1.5, "returned float32"),
  ],
)
def test_a_users_select_returning_bad_positions_is_refused(select, match):
  # Repeated positions were added twice (num_labelled grew by k, the history held duplicates)
  # and out-of-range ones were clamped by JAX to real rows; longer outputs overran the set.
  with pytest.raises(ValueError, match=match):
    _run(select=select)


def test_resume_fingerprint_reads_the_values_a_schedule_reads():
  # A schedule reading cfg.lr digested alike whatever cfg.lr was: a resumed run would
  # have continued with another learning rate.
  from jaxuq._src.active import setup

  class Cfg:
    lr = 1e-3

  cfg = Cfg()
  opt = optax.adam(lambda step: cfg.lr)
  args = (jax.random.key(0), MLP(depth=1, width=4, rate=0.5), opt, [np.zeros((2, 1))],
          np.zeros(2, np.int32), ["random"], {"loss": "cross_entropy", "hyperparams": None},
          jax.random.split(jax.random.key(0), 2))  # fmt: skip
  first = setup.fingerprint(*args)
  assert {"optimizer_values", "loss_values", "model_values", "python_code"} <= set(first)
  cfg.lr = 1e-2
  assert setup.fingerprint(*args)["optimizer_values"] != first["optimizer_values"]
