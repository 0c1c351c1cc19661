"""train: losses, loss decrease, loops, validation, early stopping, configuration errors."""

import functools
import inspect
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

import jaxuq
import jaxuq._src.fit as fit_module
import jaxuq._src.training as training_module
import jaxuq.train
from jaxuq._src.static import Static
from jaxuq.models import MLP
from jaxuq.train import cross_entropy, gaussian_nll, init_state, mse, predict, train

SMALL = MLP(depth=2, width=32, rate=0.1)
ADAM = optax.adam(1e-2)  # one object, so that repeated trainings share compilations


def _regression(n=128):
  x = jnp.linspace(-1.0, 1.0, n)[:, None]
  return x, jnp.sin(3.0 * x)


def _train(model=SMALL, x=None, y=None, **kwargs):
  if x is None:
    x, y = _regression()
  settings = {"epochs": 3, "batch_size": 32, "progress": False, **kwargs}
  return train(jax.random.key(0), model, ADAM, x, y, **settings)


def test_losses_against_independent_formulas():
  rng = np.random.default_rng(0)
  out = rng.normal(size=(5, 2)).astype(np.float32)
  y = rng.normal(size=(5,)).astype(np.float32)
  var = np.log1p(np.exp(out[:, 1])) + 1e-6
  expected = -scipy.stats.norm.logpdf(y, out[:, 0], np.sqrt(var))
  np.testing.assert_allclose(gaussian_nll(jnp.asarray(out), jnp.asarray(y)), expected, rtol=1e-5)
  np.testing.assert_allclose(
    mse(jnp.asarray(out[:, :1]), jnp.asarray(y)), (out[:, 0] - y) ** 2, rtol=1e-6
  )
  logits = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.array([0, 3, 1, 2, 3])
  log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  np.testing.assert_allclose(
    cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), -log_p[np.arange(5), labels], rtol=1e-5
  )


def test_gaussian_nll_loss_agrees_with_the_metric():
  rng = np.random.default_rng(2)
  out = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  mean, var = jaxuq.train.gaussian_mean_variance(out)
  np.testing.assert_allclose(
    gaussian_nll(out, y),
    jaxuq.metrics.gaussian_nll(mean, jnp.sqrt(var), y, reduction="none"),
    rtol=1e-5,
  )


def test_loss_decreases_and_fits():
  x, y = _regression()
  state, history = _train(x=x, y=y, epochs=25, val_fraction=0.25)
  assert history["loss"].shape == history["val_loss"].shape == (25,)
  assert history["loss"][-1] < 0.2 * history["loss"][0]
  assert history["val_loss"][-1] < 0.5 * history["val_loss"][0]
  pred = predict(SMALL, state.variables, x, batch_size=50)  # chunks of 50 over 128 rows
  assert pred.shape == (128, 1)
  assert float(jnp.mean((pred - y) ** 2)) < 0.05
  assert int(state.step) == 25 * (96 // 32)


def test_classifier_tracks_accuracy():
  rng = np.random.default_rng(1)
  centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
  labels = rng.integers(0, 3, 300)
  x = (centers[labels] + 0.5 * rng.normal(size=(300, 2))).astype(np.float32)
  model = MLP(out_features=3, depth=1, width=16, rate=0.1)
  _, history = _train(model, x, labels, loss="cross_entropy", epochs=8, val_fraction=0.2)
  assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
  assert history["val_accuracy"][-1] > 0.95
  assert history["loss"][-1] < history["loss"][0]


def test_gaussian_nll_learns_the_noise_level():
  key = jax.random.key(3)
  x = jnp.linspace(-1.0, 1.0, 512)[:, None]
  y = 0.5 * x + 0.3 * jax.random.normal(key, x.shape)
  model = MLP(out_features=2, depth=1, width=16, rate=0.0)
  state, history = _train(model, x, y, loss="gaussian_nll", epochs=30, batch_size=64)
  out = predict(model, state.variables, x)
  var = jax.nn.softplus(out[:, 1]) + 1e-6
  assert history["loss"][-1] < history["loss"][0]
  assert abs(float(jnp.sqrt(var.mean())) - 0.3) < 0.06


def test_same_key_same_result_and_loops_agree():
  a, ha = _train(val_fraction=0.25)
  b, hb = _train(val_fraction=0.25)
  c, hc = _train(val_fraction=0.25, loop="python")
  for p, q, r in zip(
    jax.tree.leaves(a.params), jax.tree.leaves(b.params), jax.tree.leaves(c.params), strict=True
  ):
    np.testing.assert_array_equal(p, q)
    np.testing.assert_allclose(p, r, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(ha["loss"], hb["loss"])
  np.testing.assert_allclose(ha["loss"], hc["loss"], rtol=1e-5)


def test_keras_style_validation_split_holds_out_the_last_rows():
  x, y = _regression(100)
  _, h1 = _train(x=x, y=y, val_fraction=0.2, val_split="last", epochs=1)
  _, h2 = _train(x=x[:80], y=y[:80], validation_data=(x[80:], y[80:]), epochs=1)
  np.testing.assert_array_equal(h1["val_loss"], h2["val_loss"])


def test_early_stopping_restores_the_best_epoch():
  # Validating on the opposite target: the better the fit, the worse the validation loss.
  x, y = _regression()
  one, _ = _train(x=x, y=y, epochs=1, validation_data=(x, -y))
  state, history = _train(x=x, y=y, epochs=20, validation_data=(x, -y), patience=2)
  assert len(history["loss"]) < 20
  best = int(np.argmin(history["val_loss"]))
  assert len(history["val_loss"]) == best + 3
  if best == 0:
    for p, q in zip(jax.tree.leaves(state.params), jax.tree.leaves(one.params), strict=True):
      np.testing.assert_array_equal(p, q)
  last, _ = _train(x=x, y=y, epochs=20, validation_data=(x, -y), patience=2, restore_best=False)
  assert int(last.step) == len(history["loss"]) * 4


@pytest.fixture
def no_init(monkeypatch):
  """Fails the test if training gets as far as initialising the model."""

  def boom(*args, **kwargs):
    raise AssertionError("the error must come before any heavy work")

  monkeypatch.setattr(fit_module, "init_state", boom)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    ({"epochs": 0}, ValueError, "epochs must be a positive int"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ({"batch_size": 200}, ValueError, "batch_size=200 is larger than the 128"),
    ({"batch_size": 100, "val_fraction": 0.5}, ValueError, "larger than the 64"),
    ({"y": jnp.zeros((127, 1))}, ValueError, "same number of rows"),
    ({"val_fraction": 1.0}, ValueError, "val_fraction must be in"),
    ({"val_split": "first"}, ValueError, "val_split must be one of"),
    ({"loss": "hinge"}, ValueError, "loss must be one of"),
    ({"loop": "while"}, ValueError, "loop must be one of"),
    ({"patience": 0}, ValueError, "patience must be a positive int"),
    ({"key": 0}, TypeError, r"jax.random.key\(0\)"),
    ({"optimizer": "adam"}, TypeError, "optax.GradientTransformation"),
    ({"val_fraction": 0.2, "validation_data": (1, 2)}, ValueError, "not both"),
  ],
)
def test_bad_configuration_raises_before_training(no_init, kwargs, error, match):
  x, y = _regression()
  args = {"key": jax.random.key(0), "optimizer": optax.sgd(0.1), "x": x, "y": y}
  for name in list(args):
    if name in kwargs:
      args[name] = kwargs.pop(name)
  settings = {"epochs": 2, "batch_size": 32, "progress": False, **kwargs}
  with pytest.raises(error, match=match):
    train(args["key"], SMALL, args["optimizer"], args["x"], args["y"], **settings)


def test_shape_errors_are_clear():
  x, _ = _regression()
  with pytest.raises(ValueError, match="cannot compare the model's outputs"):
    _train(x=x, y=jnp.zeros((128, 3)))
  with pytest.raises(ValueError, match="needs validation"):
    _train(patience=2)


class _NormalisedNet(nn.Module):
  """BatchNorm on the raw input, then a dropout MLP head (fast to compile)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = jaxuq.Dropout(0.2, deterministic=not train)(nn.relu(nn.Dense(16)(x)))
    return nn.Dense(1)(x)


def test_batchnorm_statistics_are_updated_in_training_and_frozen_in_mc_prediction():
  key = jax.random.key(5)
  x = 3.0 + 2.0 * jax.random.normal(key, (640, 2))
  y = x[:, :1] - x[:, 1:]
  model = _NormalisedNet()
  state, _ = _train(model, x, y, epochs=3, batch_size=32)  # 60 steps: 0.9**60 < 0.002
  stats = state.batch_stats["BatchNorm_0"]
  np.testing.assert_allclose(stats["mean"], x.mean(axis=0), atol=0.3)  # batch means of 32 rows
  np.testing.assert_allclose(stats["var"], x.var(axis=0), rtol=0.25)
  f = jaxuq.from_linen(model, state.variables, train=False)
  samples = jaxuq.mc_sample(f, jax.random.key(6), x[:8], num_samples=4)
  assert not np.allclose(samples[0], samples[1])  # dropout on
  # Running averages: an example's output does not depend on the other rows of its batch
  # (the masks depend only on the key and the batch's shape, not on its values).
  other_rows = x[:8].at[1:].set(5.0 * x[1:8] + 1.0)
  np.testing.assert_array_equal(f(jax.random.key(7), x[:8])[0], f(jax.random.key(7), other_rows)[0])


@pytest.fixture
def count_traces(monkeypatch):
  """Counts the traces of the training step (a Python counter run only while jit traces)."""
  counter = {"traces": 0}
  step = training_module.apply_step

  def counted(*args, **kwargs):
    counter["traces"] += 1
    return step(*args, **kwargs)

  monkeypatch.setattr(training_module, "apply_step", counted)
  return counter


TRACE_MODEL = MLP(depth=1, width=13, rate=0.1)  # shapes no other test uses: a cold jit cache


def _trace_run(optimizer, y_shift=0.0, epochs=2, loop="scan"):
  x = jnp.linspace(-1.0, 1.0, 78)[:, None]
  return train(
    jax.random.key(0), TRACE_MODEL, optimizer, x, jnp.sin(x) + y_shift, epochs=epochs,
    batch_size=26, progress=False, loop=loop,
  )  # fmt: skip


def test_fresh_equal_optimizers_share_one_trace(count_traces):
  _trace_run(optax.adam(1e-3), epochs=3)
  assert count_traces["traces"] == 1  # three epochs, one trace
  _trace_run(optax.adam(1e-3), y_shift=1.0)  # a fresh but equal optimizer, other values
  assert count_traces["traces"] == 1
  _trace_run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
  _trace_run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
  assert count_traces["traces"] == 2


def test_different_optimizer_settings_do_not_share_a_compiled_step(count_traces):
  slow, _ = _trace_run(optax.sgd(1e-3), epochs=1, loop="python")
  fast, _ = _trace_run(optax.sgd(1e-2), epochs=1, loop="python")
  assert count_traces["traces"] == 2
  again, _ = _trace_run(optax.sgd(1e-2), epochs=1, loop="python")
  assert count_traces["traces"] == 2
  start = init_state(jax.random.key(0), TRACE_MODEL, optax.sgd(0.0), jnp.zeros((1, 1)))
  moved = [
    float(jnp.abs(a - b).max())
    for s in (slow, fast)
    for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(start.params), strict=True)
  ]
  assert max(moved[len(moved) // 2 :]) > 5 * max(moved[: len(moved) // 2])  # lr 1e-2 moves more
  for p, q in zip(jax.tree.leaves(again.params), jax.tree.leaves(fast.params), strict=True):
    np.testing.assert_array_equal(p, q)


def test_static_fingerprint_equal_settings_equal_and_others_differ():
  assert Static(optax.adam(1e-3)) == Static(optax.adam(1e-3))
  assert hash(Static(optax.adam(1e-3))) == hash(Static(optax.adam(1e-3)))
  assert Static(optax.adam(1e-3)) != Static(optax.adam(1e-2))
  assert Static(optax.adam(1e-3)) != Static(optax.adamw(1e-3))
  assert Static(optax.sgd(0.1)) != Static(optax.sgd(0.1, momentum=0.9))
  schedule = optax.linear_schedule(1.0, 0.0, 10)
  assert Static(optax.sgd(schedule)) == Static(optax.sgd(optax.linear_schedule(1.0, 0.0, 10)))
  assert Static(optax.sgd(schedule)) != Static(optax.sgd(optax.linear_schedule(1.0, 0.0, 20)))
  # Arrays by value; an unhashable, unknown object by identity (never wrongly shared).
  assert Static(optax.masked(optax.sgd(1.0), np.array([True]))) == Static(
    optax.masked(optax.sgd(1.0), np.array([True]))
  )
  assert Static(optax.masked(optax.sgd(1.0), np.array([True]))) != Static(
    optax.masked(optax.sgd(1.0), np.array([False]))
  )

  class Unhashable:
    __hash__ = None  # type: ignore[assignment]

  a, b = Unhashable(), Unhashable()
  assert Static(lambda: a) != Static(lambda: b)
  f = lambda: a  # noqa: E731
  assert Static(f) == Static(f)


class _DeterministicNet(nn.Module):
  """Flax's convention: ``deterministic`` instead of ``train``."""

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    h = nn.Dropout(0.3, deterministic=deterministic)(nn.relu(nn.Dense(16)(x)))
    return nn.Dense(1)(h)


class _NoFlagNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(x)


def test_a_model_taking_deterministic_trains_with_dropout_on():
  x, y = _regression()
  state, history = _train(_DeterministicNet(), x, y, epochs=15)
  assert history["loss"][-1] < 0.5 * history["loss"][0]
  model = _DeterministicNet()
  a = model.apply(state.variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  b = model.apply(state.variables, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  np.testing.assert_allclose(
    predict(model, state.variables, x), model.apply(state.variables, x), rtol=1e-6
  )


def test_models_training_cannot_drive_are_refused_clearly(no_init):
  x, y = _regression()
  with pytest.raises(TypeError, match="neither `train` nor `deterministic`.*add `train: bool"):
    _train(_NoFlagNet(), x, y)
  nnx = pytest.importorskip("flax.nnx")
  with pytest.raises(TypeError, match="nnx model Linear.*trains linen modules"):
    _train(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), x, y)
  with pytest.raises(TypeError, match="must be a flax.linen Module, got function"):
    _train(lambda v: v, x, y)


@pytest.mark.parametrize(
  "labels, error, match",
  [
    (
      np.array([0, 1, 2, -1] * 10),
      ValueError,
      r"labels in \[0, 3\) .*3 outputs, found .*\[-1, 2\]",
    ),
    (np.array([0, 1, 2, 3] * 10), ValueError, r"found labels in \[0, 3\]"),
    (np.array([0.0, 1.0, 2.0, 1.0] * 10), TypeError, "integer class labels.*float"),
  ],
)
def test_cross_entropy_labels_out_of_range_are_refused(monkeypatch, labels, error, match):
  x = np.linspace(-1.0, 1.0, 40, dtype=np.float32)[:, None]
  model = MLP(out_features=3, depth=1, width=8, rate=0.0)

  def boom(*args, **kwargs):
    raise AssertionError("the error must come before the first epoch")

  monkeypatch.setattr(fit_module, "EPOCHS", {"scan": boom, "python": boom})
  with pytest.raises(error, match=match):
    train(jax.random.key(0), model, ADAM, x, labels, loss="cross_entropy", epochs=1,
          batch_size=8, progress=False)  # fmt: skip
  good = np.array([0, 1, 2, 1] * 10)
  with pytest.raises(error, match=match.replace("labels in", "the validation targets|labels in")):
    train(jax.random.key(0), model, ADAM, x, good, loss="cross_entropy", epochs=1, batch_size=8,
          validation_data=(x, labels), progress=False)  # fmt: skip


def test_progress_bar_only_on_a_terminal_unless_forced(capsys):
  x, y = _regression()
  train(jax.random.key(0), SMALL, ADAM, x, y, epochs=1, batch_size=32)  # the default
  assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
  _train(epochs=1, progress=True)
  assert "train MLP" in capsys.readouterr().err
  with pytest.raises(TypeError, match="progress must be True, False or None"):
    _train(epochs=1, progress="yes")


def test_train_and_train_ensemble_share_their_defaults():
  one = inspect.signature(train).parameters
  many = inspect.signature(jaxuq.train.train_ensemble).parameters
  for name, p in one.items():
    assert many[name].default == p.default, name


class _ListWidths(nn.Module):
  """A model as users write them, with a list field: unhashable as a Flax module."""

  widths: list

  @nn.compact
  def __call__(self, x, deterministic=True):
    for w in self.widths:
      x = nn.Dropout(0.1, deterministic=deterministic)(nn.relu(nn.Dense(w)(x)))
    return nn.Dense(1)(x)


def _leaves(state):
  return jax.tree.leaves((state.params, state.opt_state, state.batch_stats, state.step))


def test_init_state_is_one_program_with_the_bits_of_eager_init():
  x = jnp.ones((1, 3))
  for model in (_NormalisedNet(), _ListWidths([5, 4])):
    jitted = init_state(jax.random.key(3), model, optax.adam(1e-3), x)
    # The function jit wraps, called as it is: every initializer its own
    # operation, as before the jit (jax.random's own jitted pieces included).
    eager = training_module._init_state_jit.__wrapped__(
      jax.random.key(3), Static(model), Static(optax.adam(1e-3)), x
    )
    for a, b in zip(_leaves(jitted), _leaves(eager), strict=True):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(jitted.key), jax.random.key_data(eager.key))
  program = (
    training_module._init_state_jit_cpu
    if training_module._runs_on_cpu(x)
    else training_module._init_state_jit
  )
  compiled = program._cache_size()
  equal_model, fresh_adam = MLP(depth=1, width=11, rate=0.1), optax.adam(1e-3)
  state = init_state(jax.random.key(0), equal_model, fresh_adam, jnp.ones((1, 1)))
  again = init_state(
    jax.random.key(1), MLP(depth=1, width=11, rate=0.1), optax.adam(1e-3), x[:, :1]
  )
  assert program._cache_size() == compiled + 1  # equal settings: one
  assert state.model is equal_model and state.tx.value is fresh_adam  # the caller's own objects
  assert again.model is not equal_model


class _ManyInitializers(nn.Module):
  """A convolution, BatchNorm, an embedding and dense layers: most of Flax's initializers."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Conv(3, (3, 3), kernel_init=nn.initializers.he_uniform())(x)
    h = nn.BatchNorm(use_running_average=not train)(h)
    h = h.reshape(h.shape[0], -1)
    h = nn.Dense(5, kernel_init=nn.initializers.orthogonal(), bias_init=nn.initializers.normal())(h)
    t = nn.Embed(7, 5)(jnp.zeros(h.shape[:1], jnp.int32))
    return nn.Dense(2)(jaxuq.Dropout(0.3, deterministic=not train)(nn.gelu(h + t)))


def test_the_cpu_init_program_draws_the_bits_of_the_default_one():
  # On the CPU the init program is compiled at LLVM level 1 (a quarter of the compile time
  # for CNNs); it must draw exactly what XLA's default level draws.
  cpu = jax.devices("cpu")[0]
  x = jax.device_put(jnp.linspace(-1.0, 1.0, 2 * 6 * 6).reshape(2, 6, 6, 1), cpu)
  assert training_module._runs_on_cpu(x)
  args = (jax.random.key(4), Static(_ManyInitializers()), Static(optax.adamw(1e-3)), x)
  low = training_module._init_state_jit_cpu(*args)
  default = training_module._init_state_jit(*args)
  for a, b in zip(_leaves(low), _leaves(default), strict=True):
    np.testing.assert_array_equal(a, b)
  assert sum(a.size for a in _leaves(low)) > 100


def test_init_state_inside_traces():
  # The CPU init program carries compiler options, which JAX refuses on a nested jit:
  # inside jit, eval_shape and vmap the plain program is used (an outer trace compiles it).
  x = jnp.ones((2, 3))
  model, opt = MLP(depth=1, width=5, rate=0.1), optax.adam(1e-3)
  top = init_state(jax.random.key(2), model, opt, x)
  shape = jax.eval_shape(lambda: init_state(jax.random.key(2), model, opt, x))
  assert jax.tree.map(lambda a: a.shape, _leaves(shape)) == jax.tree.map(
    lambda a: a.shape, _leaves(top)
  )
  jitted = jax.jit(lambda k: init_state(k, model, opt, x))(jax.random.key(2))
  batched = jax.vmap(lambda k: init_state(k, model, opt, x))(jax.random.split(jax.random.key(2), 2))
  for a, b, c in zip(_leaves(top), _leaves(jitted), _leaves(batched), strict=True):
    np.testing.assert_array_equal(a, b)
    assert c.shape == (2, *a.shape)


def test_a_model_with_unhashable_fields_trains():
  x = jnp.linspace(-1.0, 1.0, 32)[:, None]
  state, history = train(
    jax.random.key(0), _ListWidths([8]), ADAM, x, x**2, epochs=2, batch_size=8, progress=False
  )
  assert len(history["loss"]) == 2 and state.model.widths == [8]


LOSS_WEIGHT = 1.0  # read by _weighted_mse as a module-level name, as notebook code does


def _weighted_mse(out, y):
  return LOSS_WEIGHT * mse(out, y)


def test_a_loss_reading_a_changed_global_is_not_served_a_stale_program(monkeypatch):
  # Static compared functions by code, cells and the globals dict's identity, never by the
  # values they read: a loop over a global loss weight trained every run with the first one.
  x, y = _regression(32)
  first = _train(x=x, y=y, loss=_weighted_mse, epochs=1)[1]["loss"][0]
  monkeypatch.setitem(_weighted_mse.__globals__, "LOSS_WEIGHT", 100.0)
  second = _train(x=x, y=y, loss=_weighted_mse, epochs=1)[1]["loss"][0]
  np.testing.assert_allclose(second, 100 * first, rtol=1e-4)
  assert Static(_weighted_mse) == Static(_weighted_mse)  # still one program per value


def test_validation_data_rows_must_match():
  # x_val and y_val of different lengths were accepted: labels clamped or ignored.
  x, y = _regression(64)
  for val in ((x[:10], y[:12]), (x[:12], y[:10])):
    with pytest.raises(ValueError, match="validation_data must be .* the same number of rows"):
      _train(x=x, y=y, validation_data=val)


@pytest.mark.parametrize(
  "loss, what",
  [
    (lambda o, t: jnp.square(o - t), "\\(32, 1\\)"),  # (batch, 1): broadcast in evaluation
    (lambda o, t: jnp.square(o - t).mean(), "\\(\\)"),  # a scalar: padding rows weighed in
  ],
)
def test_a_loss_must_return_one_value_per_example(loss, what):
  x, y = _regression(64)
  with pytest.raises(ValueError, match=f"one value per example, shape \\(32,\\).*got {what}"):
    _train(x=x, y=y, loss=loss)


def test_a_broadcasting_loss_is_caught():
  x, y = _regression(64)
  # (b, 1) - (b,) -> (b, b) under NumPy broadcasting (conftest refuses rank promotion, so
  # written out here): the right shape after .mean(-1), every example's loss mixing all rows.
  loss = lambda o, t: jnp.square(o[:, 0][None, :] - t[:, 0][:, None]).mean(-1)  # noqa: E731
  with pytest.raises(ValueError, match="the loss mixes examples"):
    _train(x=x, y=y, loss=loss)


@pytest.mark.parametrize("min_delta", [float("nan"), float("inf"), -0.1, "0.1"])
def test_min_delta_is_checked(min_delta):
  with pytest.raises(ValueError, match="min_delta must be a finite float >= 0"):
    _train(val_fraction=0.25, patience=2, min_delta=min_delta)


def test_restore_best_without_a_finite_validation_loss_returns_the_last_state():
  # Bootstrap members of 2 points whose out-of-bag set is empty have a nan validation loss in
  # every epoch, which never improved on the initial inf: they came back untrained.
  x = jnp.linspace(-1.0, 1.0, 2)[:, None]
  with pytest.warns(UserWarning, match="members \\[2, 3\\] was never finite"):
    states, history = jaxuq.train.train_ensemble(
      jax.random.key(1), MLP(depth=1, width=4), ADAM, x, x, num_members=4, epochs=3,
      batch_size=1, patience=1, progress=False,
    )  # fmt: skip
  assert np.isnan(history["val_loss"][:, 2:]).all()
  assert (np.asarray(states.step) > 0).all()


def test_non_finite_training_data_is_refused():
  x, y = _regression(64)
  with pytest.raises(ValueError, match="y must be finite, got nan or inf in 1 of its 64 rows"):
    _train(x=x, y=y.at[5].set(jnp.nan))
  with pytest.raises(ValueError, match="validation_data's y_val must be finite"):
    _train(x=x, y=y, validation_data=(x[:8], jnp.full((8, 1), jnp.inf)))


def test_member_refuses_an_index_out_of_range():
  states, _ = jaxuq.train.train_ensemble(
    jax.random.key(0), SMALL, ADAM, *_regression(32), num_members=3, epochs=1, batch_size=16,
    progress=False,
  )  # fmt: skip
  with pytest.raises(IndexError, match="k=3 is not a member of an ensemble of 3"):
    jaxuq.train.member(states, 3)
  last = jaxuq.train.member(states, -1)
  np.testing.assert_array_equal(
    jax.tree.leaves(last.params)[0], jax.tree.leaves(jaxuq.train.member(states, 2).params)[0]
  )


def test_gaussian_nll_needs_two_outputs_per_target():
  x, y = _regression(64)
  with pytest.raises(ValueError, match="last axis holds \\(mean, raw variance\\): size 2"):
    _train(model=MLP(depth=1, width=8, out_features=3), x=x, y=y, loss="gaussian_nll")


@pytest.mark.parametrize(
  "labels, error",
  [
    (np.array([0, 1, 5, 2]), ValueError),  # beyond 3 classes: nan loss before
    (np.array([0, -1, 1, 2]), ValueError),  # -1 wrapped to the last class
    (np.array([0.0, 1.0, 2.0, 1.0]), TypeError),
  ],
)
def test_train_step_checks_cross_entropy_labels(labels, error):
  model = MLP(depth=1, width=8, out_features=3)
  state = init_state(jax.random.key(0), model, ADAM, jnp.ones((4, 2)))
  with pytest.raises(error, match="class labels"):
    jaxuq.train.train_step(state, jnp.ones((4, 2)), labels, loss="cross_entropy")
  new, metrics = jaxuq.train.train_step(
    state, jnp.ones((4, 2)), np.array([0, 1, 2, 1]), loss="cross_entropy"
  )
  assert np.isfinite(float(metrics["loss"]))


def test_optax_integer_cross_entropy_counts_as_a_classifier():
  # Labels out of range gave a nan loss without a word, and no accuracy was tracked.
  xent = optax.softmax_cross_entropy_with_integer_labels
  model = MLP(depth=1, width=8, out_features=3)
  x = jnp.linspace(-1.0, 1.0, 32)[:, None]
  with pytest.raises(ValueError, match="class labels in \\[0, 3\\)"):
    _train(model=model, x=x, y=jnp.arange(32) % 5, loss=xent, epochs=1)
  _, history = _train(model=model, x=x, y=jnp.arange(32) % 3, loss=xent, epochs=1)
  assert "accuracy" in history and np.isfinite(history["loss"]).all()


class _BatchNormDense(nn.Module):
  """BatchNorm between two dense layers (its running averages are created float32)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(1)(nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x)))


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_batchnorm_under_x64_keeps_its_statistics_dtype_and_resumes(tmp_path, loop):
  # Flax creates the running averages float32 and updates them with float64 statistics of
  # float64 inputs: the scan refused its carry, the python loop turned them float64 and its
  # checkpoint no longer matched the state it was resumed into.
  with jax.enable_x64(True):
    x = np.linspace(-1.0, 1.0, 16)[:, None]  # float64, as NumPy makes them
    y = 3.0 * x
    kwargs = {"batch_size": 8, "loop": loop, "progress": False}
    path = tmp_path / "run.msgpack"
    first, _ = train(jax.random.key(0), _BatchNormDense(), ADAM, x, y, epochs=1, checkpoint=path,
                     **kwargs)  # fmt: skip
    assert {a.dtype for a in jax.tree.leaves(first.batch_stats)} == {np.dtype(np.float32)}
    resumed, history = train(jax.random.key(0), _BatchNormDense(), ADAM, x, y, epochs=2,
                             checkpoint=path, **kwargs)  # fmt: skip
    whole, whole_history = train(jax.random.key(0), _BatchNormDense(), ADAM, x, y, epochs=2,
                                 **kwargs)  # fmt: skip
  for a, b in zip(_leaves(resumed), _leaves(whole), strict=True):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(history["loss"], whole_history["loss"])
  assert not np.allclose(whole.batch_stats["BatchNorm_0"]["mean"], 0.0)  # they were updated


class _MeanVariance(nn.Module):
  """Two outputs as a tuple: a mean and a positive variance, shape ``(n,)`` each."""

  stacked: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    mean, variance = nn.Dense(1)(x)[:, 0], nn.softplus(nn.Dense(1)(x))[:, 0] + 1e-3
    return jnp.stack([mean, variance], axis=-1) if self.stacked else (mean, variance)


def _tuple_nll(out, y):
  mean, variance = out
  return 0.5 * (jnp.log(variance) + jnp.square(y[:, 0] - mean) / variance)


def _stacked_nll(out, y):
  return _tuple_nll((out[:, 0], out[:, 1]), y)


def test_a_model_returning_a_tuple_trains_with_a_loss_that_takes_one():
  # The loss checks read out.shape: a tuple failed with an AttributeError before training.
  x, y = _regression(64)
  settings = {"epochs": 8, "batch_size": 16, "val_fraction": 0.25, "progress": False}
  state, history = train(jax.random.key(0), _MeanVariance(), ADAM, x, y, loss=_tuple_nll,
                         **settings)  # fmt: skip
  assert history["loss"][-1] < history["loss"][0]
  # The same arithmetic with the outputs stacked in one array: the same run.
  ref, ref_history = train(jax.random.key(0), _MeanVariance(stacked=True), ADAM, x, y,
                           loss=_stacked_nll, **settings)  # fmt: skip
  np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-6)
  np.testing.assert_allclose(history["val_loss"], ref_history["val_loss"], rtol=1e-6)
  mean, variance = predict(state.model, state.variables, x)
  assert mean.shape == variance.shape == (64,)

  def mixing(out, y):  # (b, 1) - (1, b) broadcasts to (b, b)
    return _tuple_nll(out, y) + jnp.mean(jnp.square(y - out[0][None, :]), axis=-1)

  with pytest.raises(ValueError, match="mixes examples"):
    train(jax.random.key(0), _MeanVariance(), ADAM, x, y, loss=mixing, **settings)
  with pytest.raises(ValueError, match=r"shapes \(\(16,\), \(16,\)\).*one array of logits"):
    train(jax.random.key(0), _MeanVariance(), ADAM, x, jnp.zeros(64, jnp.int32),
          loss="cross_entropy", **settings)  # fmt: skip


def test_a_model_with_unhashable_fields_validates_and_predicts():
  # A list field made the model an invalid static argument of evaluate and predict.
  x = jnp.linspace(-1.0, 1.0, 32)[:, None]
  state, history = train(jax.random.key(0), _ListWidths([8]), ADAM, x, x**2, epochs=2,
                         batch_size=8, val_fraction=0.25, progress=False)  # fmt: skip
  assert np.isfinite(history["val_loss"]).all()
  out = predict(state.model, state.variables, x)
  compiled = training_module._predict._cache_size()
  again = predict(_ListWidths([8]), state.variables, x)  # an equal model: no new compilation
  assert training_module._predict._cache_size() == compiled
  np.testing.assert_array_equal(out, again)
  other = predict(_ListWidths([8, 8]), {"params": init_state(jax.random.key(1), _ListWidths(
    [8, 8]), ADAM, x[:1]).params}, x)  # fmt: skip
  assert other.shape == out.shape and training_module._predict._cache_size() == compiled + 1
  # A hashable model still shares: equal MLPs, one program.
  mlp_state = init_state(jax.random.key(0), TRACE_MODEL, ADAM, x[:1])
  predict(TRACE_MODEL, mlp_state.variables, x)
  compiled = training_module._predict._cache_size()
  predict(MLP(depth=1, width=13, rate=0.1), mlp_state.variables, x)
  assert training_module._predict._cache_size() == compiled


class _Settings:
  """A configuration object, as notebooks keep hyperparameters."""

  def __init__(self, lr, weight=1.0):
    self.lr, self.weight = lr, weight


class _ClassSettings:
  lr = 1e-2


SETTINGS_MODULE = types.ModuleType("jaxuq_test_settings")  # a configuration module
SETTINGS_MODULE.LR = 1e-2
SETTINGS = _Settings(1e-2)
ATTR_MODEL = MLP(depth=1, width=7, rate=0.0)  # shapes no other test uses


def _attr_run(optimizer, loss="mse", loop="python"):
  x = jnp.linspace(-1.0, 1.0, 24)[:, None]
  return train(
    jax.random.key(0), ATTR_MODEL, optimizer, x, jnp.sin(x), loss=loss, epochs=1, batch_size=8,
    progress=False, loop=loop,
  )  # fmt: skip


@pytest.mark.parametrize("case", ["object", "class", "module", "closure"])
def test_hyperparameters_read_through_attributes_are_not_served_a_stale_program(
  monkeypatch, count_traces, case
):
  # Static fingerprinted objects by identity and classes and modules by name, reading no
  # attribute: `lambda step: cfg.lr` trained with the first cfg.lr after cfg.lr changed.
  settings = _Settings(1e-2)
  where, name, schedule = {
    "object": (SETTINGS, "lr", lambda step: SETTINGS.lr),
    "class": (_ClassSettings, "lr", lambda step: _ClassSettings.lr),
    "module": (SETTINGS_MODULE, "LR", lambda step: SETTINGS_MODULE.LR),
    "closure": (settings, "lr", lambda step: settings.lr),
  }[case]
  first, _ = _attr_run(optax.sgd(schedule))
  again, _ = _attr_run(optax.sgd(schedule))  # equal settings: one compiled step
  assert count_traces["traces"] == 1
  monkeypatch.setattr(where, name, 1.0)
  second, _ = _attr_run(optax.sgd(schedule))
  assert count_traces["traces"] == 2
  literal, _ = _attr_run(optax.sgd(1.0))
  for a, b, c, d in zip(*(jax.tree.leaves(s.params) for s in (first, again, second, literal)),
                        strict=True):  # fmt: skip
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c, d, rtol=1e-6, atol=1e-7)
  assert not np.allclose(first.params["Dense_0"]["kernel"], second.params["Dense_0"]["kernel"])


def test_a_loss_reading_a_changed_attribute_is_not_served_a_stale_program(monkeypatch):
  def weighted(out, y):
    return SETTINGS.weight * mse(out, y)

  first = _attr_run(ADAM, loss=weighted)[1]["loss"][0]
  monkeypatch.setattr(SETTINGS, "weight", 100.0)
  second = _attr_run(ADAM, loss=weighted)[1]["loss"][0]
  np.testing.assert_allclose(second, 100 * first, rtol=1e-5)


def test_reduce_on_plateau_gets_the_training_batchs_loss():
  # It needs update(..., value=loss): training failed with "missing ... argument: 'value'".
  x = jnp.linspace(-1.0, 1.0, 16)[:, None]
  y = jnp.full((16, 1), 2.0)
  plateau = optax.contrib.reduce_on_plateau(factor=0.5, patience=2)

  def flat(out, y):  # the batch's loss is 2.0 whatever the parameters: a plateau
    return y[:, 0] + 0.0 * out[:, 0]

  state, _ = train(jax.random.key(0), ATTR_MODEL, optax.chain(optax.sgd(1e-2), plateau), x, y,
                   loss=flat, epochs=3, batch_size=16, progress=False)  # fmt: skip
  got = state.opt_state[1]
  # optax's own transformation driven with the same values, as its documentation does it.
  expected = plateau.init(state.params)
  for _ in range(3):
    _, expected = plateau.update(state.params, expected, value=jnp.float32(2.0))
  assert float(got.best_value) == 2.0  # the training batch's loss
  assert float(got.scale) == float(expected.scale) < 1.0
  assert int(got.plateau_count) == int(expected.plateau_count)


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(1)(x)


def test_lbfgs_trains_a_linear_regression_to_the_least_squares_solution():
  # L-BFGS's line search needs value, grad and value_fn.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(64, 1))
  y = y.astype(np.float32)
  state, history = train(jax.random.key(0), _Linear(), optax.lbfgs(), x, y, epochs=20,
                         batch_size=64, progress=False)  # fmt: skip
  design = np.concatenate([x, np.ones((64, 1), np.float32)], axis=1).astype(np.float64)
  solution = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0][:, 0]
  params = state.params["Dense_0"]
  np.testing.assert_allclose(params["kernel"][:, 0], solution[:3], atol=1e-4)
  np.testing.assert_allclose(params["bias"][0], solution[3], atol=1e-4)
  assert history["loss"][-1] < 0.02


def _plain_update(tx, updates, state, params=None):
  return tx.update(updates, state, params)  # no extra arguments: the call before they came


def test_extra_arguments_leave_a_plain_optimizers_step_unchanged():
  # adam is an optax.chain (a GradientTransformationExtraArgs): it gets value, grad and
  # value_fn now, and must compile to the program of the plain update(grads, state, params).
  x = jnp.linspace(-1.0, 1.0, 8)[:, None]
  objective = jaxuq._src.losses.resolve_loss("mse")
  for tx in (optax.adam(1e-3), optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1e-2))):
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    state = init_state(jax.random.key(0), SMALL, tx, x[:1])
    plain = optax.GradientTransformation(tx.init, functools.partial(_plain_update, tx))
    programs = [
      str(jax.make_jaxpr(training_module.apply_step, static_argnums=3)(s, x, x**2, objective))
      for s in (state, state.replace(tx=Static(plain)))
    ]
    assert programs[0] == programs[1]
