"""Deep ensembles: subsets, vmapped training equals separate trainings, member-first predictions."""

import flax.linen as nn
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

import jaxuq
from jaxuq.models import MLP
from jaxuq.train import (
  ensemble_mc_sample,
  ensemble_predict,
  member,
  member_subsets,
  train,
  train_ensemble,
)

SMALL = MLP(depth=2, width=16, rate=0.2)
ADAM = optax.adam(1e-2)


def _data(n=64):
  x = jnp.linspace(-1.0, 1.0, n)[:, None]
  return x, jnp.sin(3.0 * x)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 60), members=st.integers(2, 7), seed=st.integers(0, 2**16))
def test_kfold_subsets_partition_the_rows(n, members, seed):
  if members > n:
    with pytest.raises(ValueError, match="at least one row per fold"):
      member_subsets(jax.random.key(seed), n, members, "kfold")
    return
  s = member_subsets(jax.random.key(seed), n, members, "kfold")
  np.testing.assert_array_equal(s.holdout.sum(axis=0), np.ones(n))  # each row in exactly one fold
  sizes = s.holdout.sum(axis=1)
  assert sizes.max() - sizes.min() <= 1
  for k in range(members):
    rows = s.indices[k, : s.counts[k]]
    np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(~s.holdout[k]))


def test_bootstrap_and_none_subsets():
  s = member_subsets(jax.random.key(0), 50, 4, "bootstrap")
  assert s.indices.shape == (4, 50) and (s.counts == 50).all()
  for k in range(4):
    np.testing.assert_array_equal(~s.holdout[k], np.isin(np.arange(50), s.indices[k]))
  # Out of bag: about (1 - 1/n)^n ~ 36.4 % of the rows; 4 standard errors over 200 draws.
  assert abs(s.holdout.mean() - (1 - 1 / 50) ** 50) < 4 * np.sqrt(0.25 / 200)
  none = member_subsets(jax.random.key(0), 5, 2, "none")
  np.testing.assert_array_equal(none.indices, [[0, 1, 2, 3, 4]] * 2)
  assert not none.holdout.any()
  with pytest.raises(ValueError, match="subsets must be one of"):
    member_subsets(jax.random.key(0), 5, 2, "jackknife")


def test_vmapped_ensemble_equals_separate_trainings():
  x, y = _data()
  key = jax.random.key(7)
  common = {"epochs": 3, "batch_size": 16, "progress": False}
  states, history = train_ensemble(
    key, SMALL, ADAM, x, y, num_members=3, holdout_validation=False, **common
  )
  assert history["loss"].shape == (3, 3) and "val_loss" not in history
  mapped, _ = train_ensemble(
    key, SMALL, ADAM, x, y, num_members=3, holdout_validation=False, member_loop="map", **common
  )
  subset_key, _, members_key = jax.random.split(key, 3)
  subsets = member_subsets(subset_key, 64, 3, "bootstrap")
  for k, member_key in enumerate(jax.random.split(members_key, 3)):
    rows = subsets.indices[k]
    alone, alone_history = train(member_key, SMALL, ADAM, x[rows], y[rows], **common)
    mine = member(states, k)
    for p, q, r in zip(
      jax.tree.leaves(mine.params),
      jax.tree.leaves(alone.params),
      jax.tree.leaves(member(mapped, k).params),
      strict=True,
    ):
      np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)  # batched vs single matmuls
      np.testing.assert_allclose(r, q, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(history["loss"][:, k], alone_history["loss"], rtol=1e-5)
    assert int(mine.step) == int(alone.step) == 3 * 4


def test_holdout_validation_and_predictions_member_first():
  x, y = _data()
  states, history = train_ensemble(
    jax.random.key(1), SMALL, ADAM, x, y, num_members=4, subsets="kfold", epochs=4,
    batch_size=16, progress=False,
  )  # fmt: skip
  assert history["val_loss"].shape == (4, 4)
  # Each member is validated on its own fold, the rows it never saw.
  subsets = member_subsets(jax.random.split(jax.random.key(1), 3)[0], 64, 4, "kfold")
  for k in range(4):
    out = SMALL.apply(member(states, k).variables, x[subsets.holdout[k]])
    expected = jnp.mean((out - y[subsets.holdout[k]]) ** 2)
    np.testing.assert_allclose(history["val_loss"][-1, k], expected, rtol=1e-5)
  preds = ensemble_predict(SMALL, states, x, batch_size=24)
  assert preds.shape == (4, 64, 1)
  one = SMALL.apply(member(states, 2).variables, x)
  np.testing.assert_allclose(preds[2], one, rtol=1e-5, atol=1e-6)
  # Members play the role of MC samples in every summary.
  np.testing.assert_allclose(jaxuq.predictive_mean(preds), preds.mean(axis=0), rtol=1e-6)
  assert float(jaxuq.predictive_std(preds).mean()) > 0
  # MC dropout inside every member: (members, samples, batch, 1), member k sampled with keys[k].
  mc = ensemble_mc_sample(jax.random.key(2), SMALL, states, x, num_samples=5)
  assert mc.shape == (4, 5, 64, 1)
  keys = jax.random.split(jax.random.key(2), 4)
  f = jaxuq.from_linen(SMALL, member(states, 3).variables, train=False)
  np.testing.assert_allclose(
    mc[3], jaxuq.mc_sample(f, keys[3], x, num_samples=5), rtol=1e-5, atol=1e-6
  )
  assert not np.allclose(mc[3, 0], mc[3, 1])


def test_shared_validation_and_bad_configuration():
  x, y = _data()
  _, history = train_ensemble(
    jax.random.key(0), SMALL, ADAM, x, y, num_members=2, subsets="none", epochs=1,
    batch_size=16, val_fraction=0.25, progress=False,
  )  # fmt: skip
  assert history["val_loss"].shape == (1, 2)
  base = {"epochs": 1, "batch_size": 16, "progress": False}
  with pytest.raises(ValueError, match="member_loop must be one of"):
    train_ensemble(jax.random.key(0), SMALL, ADAM, x, y, num_members=2, member_loop="pmap", **base)
  with pytest.raises(ValueError, match="num_members must be a positive int"):
    train_ensemble(jax.random.key(0), SMALL, ADAM, x, y, num_members=0, **base)
  with pytest.raises(ValueError, match="subsets must be one of"):
    train_ensemble(jax.random.key(0), SMALL, ADAM, x, y, num_members=2, subsets="x", **base)
  with pytest.raises(ValueError, match="larger than the 32 training rows of a member"):
    train_ensemble(
      jax.random.key(0), SMALL, ADAM, x, y, num_members=2, subsets="kfold",
      epochs=1, batch_size=40, progress=False,
    )  # fmt: skip
  with pytest.raises(ValueError, match="same number of rows"):
    train_ensemble(jax.random.key(0), SMALL, ADAM, x, y[:10], num_members=2, **base)


def test_ensemble_predict_refuses_one_models_variables():
  x, y = _data()
  state, _ = train(jax.random.key(0), SMALL, ADAM, x, y, epochs=1, batch_size=16, progress=False)
  with pytest.raises(ValueError, match="ONE model's variables.*jaxuq.train.predict"):
    ensemble_predict(SMALL, state, x)
  with pytest.raises(ValueError, match="ONE model's variables"):
    ensemble_mc_sample(jax.random.key(1), SMALL, state.variables, x, num_samples=2)
  with pytest.raises(ValueError, match="do not match MLP"):
    ensemble_predict(
      MLP(depth=2, width=8, rate=0.2), jax.tree.map(lambda a: a[None], state.variables), x
    )
  stacked = jax.tree.map(lambda *a: jnp.stack(a), state.variables, state.variables)
  np.testing.assert_allclose(ensemble_predict(SMALL, stacked, x)[1], SMALL.apply(state.variables, x),
                             rtol=1e-5, atol=1e-6)  # fmt: skip


def test_python_loop_of_steps_trains_an_ensemble_like_the_scan():
  x, y = _data(32)
  tiny = MLP(depth=1, width=6, rate=0.2)
  common = {"num_members": 2, "subsets": "kfold", "epochs": 2, "batch_size": 8, "progress": False}
  scan, h_scan = train_ensemble(jax.random.key(5), tiny, ADAM, x, y, **common)
  loop, h_loop = train_ensemble(jax.random.key(5), tiny, ADAM, x, y, loop="python", **common)
  for p, q in zip(jax.tree.leaves(scan.params), jax.tree.leaves(loop.params), strict=True):
    np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(h_scan["val_loss"], h_loop["val_loss"], rtol=1e-4)


class _DeterministicNet(nn.Module):
  """Flax's convention: ``deterministic`` instead of ``train``."""

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    return nn.Dense(1)(nn.Dropout(0.3, deterministic=deterministic)(nn.relu(nn.Dense(8)(x))))


def test_an_ensemble_of_models_taking_deterministic_trains_and_samples():
  x, y = _data(32)
  model = _DeterministicNet()
  states, history = train_ensemble(jax.random.key(0), model, ADAM, x, y, num_members=2,
                                   epochs=2, batch_size=8, progress=False)  # fmt: skip
  assert history["loss"].shape == (2, 2)
  mc = ensemble_mc_sample(jax.random.key(1), model, states, x, num_samples=3)
  assert mc.shape == (2, 3, 32, 1) and not np.allclose(mc[0, 0], mc[0, 1])
  np.testing.assert_allclose(
    ensemble_predict(model, states, x)[1], model.apply(member(states, 1).variables, x), rtol=1e-5
  )


class _TwoHeads(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    h = nn.Dropout(0.3, deterministic=not train)(nn.relu(nn.Dense(8)(x)))
    return {"mean": nn.Dense(1)(h), "scale": nn.Dense(1)(h)}


def test_pytree_outputs_predict_and_sample_like_arrays():
  # predict / ensemble_predict raised "'dict' object has no attribute 'reshape'" and
  # ensemble_mc_sample "stack requires ndarray", though mc_sample takes pytree outputs.
  from jaxuq.train import ensemble_mc_sample, ensemble_predict, predict

  model, x = _TwoHeads(), jax.random.normal(jax.random.key(0), (5, 2))
  members = [model.init(jax.random.key(k), x) for k in range(3)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
  one = predict(model, members[1], x, batch_size=2)
  np.testing.assert_allclose(one["mean"], model.apply(members[1], x)["mean"], rtol=1e-6)
  every = ensemble_predict(model, stacked, x, batch_size=2)
  np.testing.assert_allclose(every["scale"][1], one["scale"], rtol=1e-5, atol=1e-7)
  s = ensemble_mc_sample(jax.random.key(1), model, stacked, x, num_samples=4)
  assert s["mean"].shape == s["scale"].shape == (3, 4, 5, 1)
  keys = jax.random.split(jax.random.key(1), 3)
  want = jaxuq.mc_sample(
    jaxuq.from_linen(model, members[2], train=False), keys[2], x, num_samples=4
  )
  np.testing.assert_allclose(s["mean"][2], want["mean"], rtol=1e-6)
  with pytest.raises(TypeError, match=r"pass MultiSteps\(...\).gradient_transformation\(\)"):
    train(jax.random.key(0), MLP(out_features=1, depth=1, width=4), optax.MultiSteps(optax.sgd(0.1), 2),
          x, jnp.ones((5, 1)), loss="mse", epochs=1, progress=False)  # fmt: skip


class _ListWidths(nn.Module):
  """A list field: unhashable, so no valid static argument of jit as it is."""

  widths: list

  @nn.compact
  def __call__(self, x, train: bool = False):
    for w in self.widths:
      x = jaxuq.Dropout(0.1, deterministic=not train)(nn.relu(nn.Dense(w)(x)))
    return nn.Dense(1)(x)


def test_an_ensemble_of_a_model_with_unhashable_fields_validates_and_predicts():
  # The default held-out validation and ensemble_predict passed the model to jit as a
  # static argument: "Non-hashable static arguments are not supported".
  x, y = _data(32)
  states, history = train_ensemble(jax.random.key(0), _ListWidths([4]), ADAM, x, y,
                                   num_members=2, epochs=2, batch_size=8, progress=False)  # fmt: skip
  assert history["val_loss"].shape == (2, 2) and np.isfinite(history["val_loss"]).all()
  out = ensemble_predict(_ListWidths([4]), states, x)
  assert out.shape == (2, 32, 1)
  np.testing.assert_array_equal(
    out[1], jaxuq.train.predict(states.model, member(states, 1).variables, x)
  )
