"""Checkpoints: round trip, atomic writes, exact resume of train and train_ensemble."""

import dataclasses
import os
import pathlib
import stat

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxuq._src.checkpoint as checkpoint_module
from jaxuq.models import MLP
from jaxuq.train import (
  CheckpointError,
  init_state,
  restore_checkpoint,
  save_checkpoint,
  train,
  train_ensemble,
)

SMALL = MLP(depth=2, width=16, rate=0.2)
ADAM = optax.adam(1e-2)


def _assert_trees_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for p, q in zip(la, lb, strict=True):
    if jnp.issubdtype(p.dtype, jax.dtypes.prng_key):
      assert jax.random.key_impl(p) == jax.random.key_impl(q)
      p, q = jax.random.key_data(p), jax.random.key_data(q)
    np.testing.assert_array_equal(p, q)


def _data():
  x = jnp.linspace(-1.0, 1.0, 64)[:, None]
  return x, jnp.sin(3.0 * x)


@pytest.mark.parametrize("impl", ["threefry2x32", "philox4x32"])
def test_round_trip_is_exact(tmp_path, impl):
  key = jax.random.key(0, impl=impl)
  state = init_state(key, SMALL, ADAM, jnp.ones((1, 1)))
  state = state.replace(params=jax.tree.map(lambda p: p + 0.5, state.params), step=jnp.int32(7))
  path = save_checkpoint(tmp_path / "ckpt.msgpack", state, {"epoch": 3, "note": "hi"})
  template = init_state(jax.random.key(1, impl=impl), SMALL, ADAM, jnp.ones((1, 1)))
  restored, meta = restore_checkpoint(path, template)
  _assert_trees_equal(restored, state)
  assert meta["epoch"] == 3 and meta["note"] == "hi"
  assert (tmp_path / "ckpt.msgpack.json").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.msgpack", "ckpt.msgpack.json"]


def test_mismatched_target_is_refused(tmp_path):
  state = init_state(jax.random.key(0), SMALL, ADAM, jnp.ones((1, 1)))
  save_checkpoint(tmp_path / "c", state)
  wider = init_state(jax.random.key(0), MLP(depth=2, width=8), ADAM, jnp.ones((1, 1)))
  with pytest.raises(ValueError, match="does not match"):
    restore_checkpoint(tmp_path / "c", wider)
  (tmp_path / "junk").write_bytes(b"\x93\x01\x02\x03")
  with pytest.raises(ValueError, match="not a jaxuq checkpoint"):
    restore_checkpoint(tmp_path / "junk", state)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_crash_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch, failing):
  path = tmp_path / "ckpt.msgpack"
  old = {"w": jnp.arange(4.0)}
  save_checkpoint(path, old, {"epoch": 1})
  before = path.read_bytes()

  def crash(*args, **kwargs):
    raise OSError("simulated crash")

  monkeypatch.setattr(checkpoint_module.os, failing, crash)
  with pytest.raises(OSError, match="simulated crash"):
    save_checkpoint(path, {"w": jnp.arange(4.0) * 9}, {"epoch": 2})
  monkeypatch.undo()
  assert path.read_bytes() == before
  tree, meta = restore_checkpoint(path, old)
  np.testing.assert_array_equal(tree["w"], old["w"])
  assert meta["epoch"] == 1
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary left behind


def test_resumed_training_equals_uninterrupted(tmp_path):
  x, y = _data()
  settings = {"batch_size": 16, "val_fraction": 0.25, "progress": False}
  full, full_history = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=5, **settings)
  path = tmp_path / "run.msgpack"
  first, _ = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=2, checkpoint=path, **settings)
  assert restore_checkpoint(path, {"state": first})[1]["epoch"] == 2
  resumed, history = train(
    jax.random.key(3), SMALL, ADAM, x, y, epochs=5, checkpoint=path, **settings
  )
  _assert_trees_equal(resumed, full)
  for name in full_history:
    np.testing.assert_array_equal(history[name], full_history[name])
  # A finished checkpoint just returns its state.
  again, _ = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=5, checkpoint=path, **settings)
  _assert_trees_equal(again, full)
  with pytest.raises(ValueError, match="different configuration"):
    train(
      jax.random.key(3), SMALL, ADAM, x, y, epochs=6, checkpoint=path, batch_size=8, progress=False
    )


def test_resumed_ensemble_with_early_stopping_equals_uninterrupted(tmp_path):
  x, y = _data()
  settings = {
    "num_members": 3,
    "subsets": "kfold",
    "batch_size": 16,
    "patience": 1,
    "progress": False,
  }
  full, full_history = train_ensemble(jax.random.key(4), SMALL, ADAM, x, y, epochs=5, **settings)
  assert np.isnan(full_history["val_loss"][-1, 0])  # member 0 stopped after the checkpoint
  path = pathlib.Path(tmp_path) / "ens.msgpack"
  train_ensemble(jax.random.key(4), SMALL, ADAM, x, y, epochs=2, checkpoint=path, **settings)
  resumed, history = train_ensemble(
    jax.random.key(4), SMALL, ADAM, x, y, epochs=5, checkpoint=path, **settings
  )
  _assert_trees_equal(resumed, full)
  assert history.keys() == full_history.keys()
  for name in full_history:
    np.testing.assert_array_equal(history[name], full_history[name])


def test_checkpoint_file_gets_the_usual_mode_not_mkstemps_0600(tmp_path):
  state = init_state(jax.random.key(0), SMALL, ADAM, jnp.ones((1, 1)))
  path = save_checkpoint(tmp_path / "mode.msgpack", state)
  mask = os.umask(0)
  os.umask(mask)
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def _flip(path, position):
  data = bytearray(path.read_bytes())
  data[position] ^= 0x01
  path.write_bytes(bytes(data))


def test_every_flipped_byte_of_a_small_checkpoint_is_caught(tmp_path):
  good = tmp_path / "good.msgpack"
  save_checkpoint(good, {"w": jnp.arange(4.0), "k": jax.random.key(0)}, {"epoch": 1})
  data = good.read_bytes()
  bad = tmp_path / "bad.msgpack"
  for position in range(len(data)):
    bad.write_bytes(data)
    _flip(bad, position)
    with pytest.raises(CheckpointError, match=str(bad)):
      restore_checkpoint(bad, {"w": jnp.zeros(4), "k": jax.random.key(1)})


def test_flipped_bytes_of_a_train_state_checkpoint_are_caught(tmp_path):
  state = init_state(jax.random.key(0), SMALL, ADAM, jnp.ones((1, 1)))
  good = save_checkpoint(tmp_path / "state.msgpack", {"state": state}, {"epoch": 3})
  data = good.read_bytes()
  bad = tmp_path / "bad.msgpack"
  positions = np.unique(np.linspace(0, len(data) - 1, 300).astype(int))
  assert len(data) > 2000 and len(positions) == 300
  for position in positions:
    bad.write_bytes(data)
    _flip(bad, int(position))
    with pytest.raises(CheckpointError, match="corrupted|not a jaxuq checkpoint"):
      restore_checkpoint(bad, {"state": state})
  for length in (0, 1, 10, 40, len(data) // 2, len(data) - 1):
    bad.write_bytes(data[:length])
    with pytest.raises(CheckpointError, match=f"{bad}.*(empty|truncated|not a jaxuq|corrupted)"):
      restore_checkpoint(bad, {"state": state})
  assert issubclass(CheckpointError, ValueError)
  restored, meta = restore_checkpoint(good, {"state": state})  # the original still restores
  _assert_trees_equal(restored, {"state": state})


def test_resume_is_refused_for_other_data_key_or_split_and_fewer_epochs(tmp_path):
  x, y = _data()
  settings = {"batch_size": 16, "val_fraction": 0.25, "progress": False}
  path = tmp_path / "run.msgpack"
  done, done_history = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=3, checkpoint=path,
                             **settings)  # fmt: skip
  for kwargs, what in [
    ({"y": y[::-1]}, "y"),  # other data of the same shape
    ({"key": jax.random.key(4)}, "key"),
    ({"val_split": "last"}, "val_split"),
    ({"optimizer": optax.adam(1e-3)}, "optimizer"),
  ]:
    args = {"key": jax.random.key(3), "optimizer": ADAM, "y": y, **kwargs}
    with pytest.raises(ValueError, match=f"different configuration .*differs in {what}\\b"):
      train(args["key"], SMALL, args["optimizer"], x, args["y"], epochs=4, checkpoint=path,
            **{**settings, **{k: v for k, v in kwargs.items() if k == "val_split"}})  # fmt: skip
  with pytest.raises(ValueError, match="already holds 3 epochs, more than epochs=2"):
    train(jax.random.key(3), SMALL, ADAM, x, y, epochs=2, checkpoint=path, **settings)
  same, history = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=3, checkpoint=path, **settings)
  _assert_trees_equal(same, done)
  np.testing.assert_array_equal(history["loss"], done_history["loss"])


def test_resumed_ensemble_refuses_another_validation_split(tmp_path):
  x, y = _data()
  path = tmp_path / "ens.msgpack"
  common = {"num_members": 2, "subsets": "none", "batch_size": 16, "val_fraction": 0.25,
            "progress": False, "checkpoint": path}  # fmt: skip
  tiny = MLP(depth=1, width=4, rate=0.2)  # quick to compile
  train_ensemble(jax.random.key(0), tiny, ADAM, x, y, epochs=1, val_split="random", **common)
  with pytest.raises(ValueError, match="differs in val_split"):
    train_ensemble(jax.random.key(0), tiny, ADAM, x, y, epochs=2, val_split="last", **common)


class _Weighted:
  """A loss object whose setting lives in an attribute."""

  def __init__(self, w):
    self.w = w

  def __call__(self, out, y):
    return self.w * jnp.square(out[:, 0] - y[:, 0])


def test_resume_is_refused_for_other_lambdas_and_loss_objects(tmp_path):
  # The portable digest named functions by qualified name and objects by type: a schedule
  # `lambda s: 1e-2` resumed as `lambda s: 10.0` (and _Weighted(1.0) as _Weighted(1000.0))
  # was accepted.
  x, y = _data()
  settings = {"batch_size": 16, "progress": False}
  path = tmp_path / "run.msgpack"
  train(jax.random.key(3), SMALL, optax.adam(lambda s: 1e-2), x, y, epochs=1, checkpoint=path,
        loss=_Weighted(1.0), **settings)  # fmt: skip
  with pytest.raises(ValueError, match="differs in optimizer_deep"):
    train(jax.random.key(3), SMALL, optax.adam(lambda s: 10.0), x, y, epochs=2,
          checkpoint=path, loss=_Weighted(1.0), **settings)  # fmt: skip
  with pytest.raises(ValueError, match="differs in loss_deep"):
    train(jax.random.key(3), SMALL, optax.adam(lambda s: 1e-2), x, y, epochs=2,
          checkpoint=path, loss=_Weighted(1000.0), **settings)  # fmt: skip
  state, history = train(jax.random.key(3), SMALL, optax.adam(lambda s: 1e-2), x, y, epochs=2,
                         checkpoint=path, loss=_Weighted(1.0), **settings)  # fmt: skip
  assert len(history["loss"]) == 2


def test_checkpoints_without_the_deep_digests_still_resume(tmp_path):
  # Written by an earlier jaxuq: no optimizer_deep / loss_deep / model_callables entries.
  x, y = _data()
  settings = {"batch_size": 16, "progress": False}
  path = tmp_path / "run.msgpack"
  done, _ = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=1, checkpoint=path, **settings)
  state, meta = restore_checkpoint(path, {"state": done})
  for key in ("optimizer_deep", "loss_deep", "model_callables", "optimizer_values",
              "loss_values", "model_values", "python_code"):  # fmt: skip
    del meta["fingerprint"][key]
  save_checkpoint(path, state, meta)
  _, history = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=2, checkpoint=path, **settings)
  assert len(history["loss"]) == 2


def test_model_entries_leave_out_addresses_and_read_function_fields():
  import functools

  from jaxuq._src.static import model_entries

  leaky = MLP(depth=1, width=4, activation=functools.partial(jax.nn.leaky_relu, negative_slope=0.2))
  entry = model_entries(leaky)
  assert " at 0x" not in entry["model"]  # the same in every process
  other = MLP(depth=1, width=4, activation=functools.partial(jax.nn.leaky_relu, negative_slope=0.3))
  assert model_entries(other)["model_callables"] != entry["model_callables"]


def test_resume_with_another_optimizer_names_the_optimizer(tmp_path):
  # The restore ran first and failed on adam's state tree vs sgd's, naming field names.
  x, y = _data()
  path = tmp_path / "run.msgpack"
  train(jax.random.key(3), SMALL, ADAM, x, y, epochs=1, checkpoint=path, batch_size=16,
        progress=False)  # fmt: skip
  with pytest.raises(ValueError, match="different configuration .*differs in .*optimizer"):
    train(jax.random.key(3), SMALL, optax.sgd(1e-2), x, y, epochs=2, checkpoint=path,
          batch_size=16, progress=False)  # fmt: skip
  with pytest.raises(ValueError, match="checkpoint must be a file path"):
    train(jax.random.key(3), SMALL, ADAM, x, y, epochs=1, checkpoint=tmp_path, batch_size=16,
          progress=False)  # fmt: skip


def test_numpy_scalar_settings_are_checkpointed_and_resumed(tmp_path):
  # They passed validation, then the first save failed: "Object of type int64 is not JSON
  # serializable" (the fingerprint stored them as they came).
  x, y = _data()
  numpy_settings = {"batch_size": np.int64(16), "val_fraction": np.float32(0.25),
                    "patience": np.int64(5), "min_delta": np.float32(1e-4),
                    "checkpoint_every": np.int64(1), "eval_batch_size": np.int32(64)}  # fmt: skip
  python_settings = {k: v.item() for k, v in numpy_settings.items()}
  path = tmp_path / "run.msgpack"
  common = {"progress": False, "checkpoint": path}
  train(jax.random.key(3), SMALL, ADAM, x, y, epochs=np.int64(1), **numpy_settings, **common)
  resumed, history = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=2, **numpy_settings,
                           **common)  # fmt: skip
  whole, whole_history = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=2, progress=False,
                               **python_settings)  # fmt: skip
  _assert_trees_equal(resumed, whole)
  np.testing.assert_array_equal(history["val_loss"], whole_history["val_loss"])
  # Stored as Python numbers: the same run given Python numbers resumes it.
  _, again = train(jax.random.key(3), SMALL, ADAM, x, y, epochs=2, **python_settings, **common)
  np.testing.assert_array_equal(again["loss"], whole_history["loss"])
  tiny = MLP(depth=1, width=4, rate=0.2)
  ens = {"batch_size": np.int64(16), "progress": False, "checkpoint": tmp_path / "ens.msgpack"}
  first, _ = train_ensemble(jax.random.key(0), tiny, ADAM, x, y, num_members=np.int64(2),
                            epochs=1, **ens)  # fmt: skip
  states, _ = train_ensemble(jax.random.key(0), tiny, ADAM, x, y, num_members=2, epochs=2, **ens)
  assert int(states.step[0]) == 2 * int(first.step[0]) > 0  # resumed from epoch 1
  with pytest.raises(ValueError, match="batch_size must be a positive int, got True"):
    train(jax.random.key(3), SMALL, ADAM, x, y, epochs=1, batch_size=True, progress=False)


@dataclasses.dataclass(frozen=True)
class _Hyper:
  lr: float


class _Config:
  """A plain configuration object."""

  lr = 1e-2


HYPER = _Hyper(1e-2)
CONFIG = _Config()
CONFIG.lr = 1e-2


@pytest.mark.parametrize("case", ["frozen dataclass", "object"])
def test_resume_is_refused_when_a_read_configuration_value_changed(tmp_path, monkeypatch, case):
  # The portable digest named objects by type, without their values: a schedule reading a
  # frozen-dataclass or plain configuration object resumed with another learning rate.
  x, y = _data()
  settings = {"batch_size": 16, "progress": False, "checkpoint": tmp_path / "run.msgpack"}
  schedule = (lambda step: HYPER.lr) if case == "frozen dataclass" else (lambda step: CONFIG.lr)
  train(jax.random.key(3), SMALL, optax.sgd(schedule), x, y, epochs=1, **settings)
  if case == "frozen dataclass":  # as a new process with another configuration would make it
    monkeypatch.setitem(globals(), "HYPER", _Hyper(1.0))
  else:
    monkeypatch.setattr(CONFIG, "lr", 1.0)
  with pytest.raises(ValueError, match="differs in optimizer_values"):
    train(jax.random.key(3), SMALL, optax.sgd(schedule), x, y, epochs=2, **settings)
  monkeypatch.undo()
  _, history = train(jax.random.key(3), SMALL, optax.sgd(schedule), x, y, epochs=2, **settings)
  assert len(history["loss"]) == 2


def _halving(step):
  return 0.01 * 2.0 ** (step / 2)


def _stepwise(step):
  return 0.01 * 2.0 ** (step // 2)


def test_resume_is_refused_for_changed_bytecode_under_the_same_python_only(tmp_path):
  # `s / 2` and `s // 2` differ only in their bytecode, which the portable digest left out.
  from jaxuq._src.static import PYTHON, value_entries

  a = value_entries(optax.sgd(_halving), "mse", SMALL)
  assert value_entries(optax.sgd(_halving), "mse", SMALL) == a
  stepwise = _halving.__class__(
    _stepwise.__code__.replace(co_name="_halving", co_qualname="_halving"), _halving.__globals__,
    "_halving",
  )  # fmt: skip
  b = value_entries(optax.sgd(stepwise), "mse", SMALL)
  assert a["optimizer_values"] == b["optimizer_values"]  # the same names and constants
  assert a["python_code"]["digest"] != b["python_code"]["digest"]
  assert a["python_code"]["python"] == PYTHON
  x, y = _data()
  settings = {"batch_size": 16, "progress": False}
  path = tmp_path / "run.msgpack"
  train(jax.random.key(3), SMALL, optax.sgd(_halving), x, y, epochs=1, checkpoint=path,
        **settings)  # fmt: skip
  with pytest.raises(ValueError, match="differs in python_code"):
    train(jax.random.key(3), SMALL, optax.sgd(stepwise), x, y, epochs=2, checkpoint=path,
          **settings)  # fmt: skip
  # Written under another Python: its bytecode digest is not compared.
  state, meta = restore_checkpoint(path, {"state": init_state(jax.random.key(0), SMALL,
                                                              optax.sgd(_halving), x[:1])})  # fmt: skip
  meta["fingerprint"]["python_code"] = {"python": "2.7", "digest": "0" * 16}
  save_checkpoint(path, state, meta)
  _, history = train(jax.random.key(3), SMALL, optax.sgd(stepwise), x, y, epochs=2,
                     checkpoint=path, **settings)  # fmt: skip
  assert len(history["loss"]) == 2
