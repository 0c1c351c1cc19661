"""Reference models: parameter counts, options, train/eval modes, MC prediction with BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
from jaxuq.models import MLP, BasicCNN, DeepCNN


def _counts(model, shape):
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
  return {k: sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v)) for k, v in variables.items()}


def _dropout_layers(model, x):
  seen = []

  def spy(next_fun, args, kwargs, context):
    if isinstance(context.module, jaxuq.Dropout) and context.method_name == "__call__":
      seen.append(context.module.rate)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(spy):
    jax.eval_shape(model.init, jax.random.key(0), x)
  return seen


def test_parameter_counts_match_the_seeds():
  assert _counts(MLP(), (1, 1)) == {"params": 3_151_873}
  assert _counts(BasicCNN(), (1, 28, 28, 1)) == {"params": 542_230}
  # Keras: 327,242 in all, of which 832 (BatchNorm moving mean and variance) non-trainable.
  assert _counts(DeepCNN(), (1, 28, 28, 1)) == {"params": 326_410, "batch_stats": 832}


def test_mlp_options():
  x = jnp.zeros((1, 3))
  assert _dropout_layers(MLP(depth=3, width=8, rate=0.2), x) == [0.2, 0.2, 0.2]
  assert _dropout_layers(MLP(depth=3, width=8, placement="last"), x) == [0.5]
  assert _counts(MLP(out_features=2, depth=2, width=5), (1, 3)) == {"params": 20 + 30 + 12}
  x = jnp.linspace(-2, 2, 6).reshape(2, 3)
  net = MLP(depth=1, width=4, activation="tanh")
  p = net.init(jax.random.key(0), x)["params"]
  manual = (
    jnp.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None]) @ p["Dense_1"]["kernel"]
  )
  np.testing.assert_allclose(
    net.apply({"params": p}, x), manual + p["Dense_1"]["bias"][None], rtol=1e-6
  )
  custom = MLP(depth=1, width=4, activation=lambda a: a * 0.0)
  out = custom.apply(custom.init(jax.random.key(0), x), x + 1)
  np.testing.assert_allclose(out, 0.0)  # zero hidden layer, zero bias


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"rate": 1.0}, "rate must be in"),
    ({"rate": -0.1}, "rate must be in"),
    ({"depth": 0}, "depth must be a positive int"),
    ({"width": 2.5}, "width must be a positive int"),
    ({"placement": "first"}, "placement must be one of"),
    ({"activation": "relu6x"}, "activation must be one of"),
  ],
)
def test_mlp_bad_configuration(kwargs, match):
  with pytest.raises(ValueError, match=match):
    MLP(**kwargs)


def test_cnn_bad_rate():
  with pytest.raises(ValueError, match="rate must be in"):
    BasicCNN(rate=1.5)
  with pytest.raises(ValueError, match="num_classes"):
    DeepCNN(num_classes=0)


def test_train_flag_switches_dropout():
  model = MLP(depth=2, width=16)
  x = jnp.linspace(-1, 1, 8)[:, None]
  v = model.init(jax.random.key(0), x)
  eval_out = model.apply(v, x)
  np.testing.assert_array_equal(eval_out, model.apply(v, x, train=False))
  a = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
  b = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)


def test_basic_cnn_returns_logits():
  model = BasicCNN()
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  out = model.apply(model.init(jax.random.key(0), x), x)
  assert out.shape == (3, 10)
  assert not np.allclose(jnp.sum(out, axis=-1), 1.0)  # logits, no softmax inside


@pytest.mark.slow
def test_deep_cnn_mc_prediction_uses_running_averages():
  """from_linen(model, variables, train=False): dropout on, BatchNorm on its running averages."""
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  model = DeepCNN()
  variables = model.init(jax.random.key(0), x)
  # Running averages far from this batch's statistics, so that the two modes differ.
  stats = jax.tree.map(
    lambda a: a + jax.random.uniform(jax.random.key(2), a.shape), variables["batch_stats"]
  )
  variables = {"params": variables["params"], "batch_stats": stats}
  running = model.apply(variables, x, train=False)
  batch_mode, _ = model.clone(rate=0.0).apply(
    variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)}
  )
  assert not np.allclose(running, batch_mode, atol=1e-3)
  # With rate 0 the forced-on dropout is the identity: MC output == running-average output.
  f0 = jaxuq.from_linen(model.clone(rate=0.0), variables, check_dropout=False, train=False)
  np.testing.assert_allclose(f0(jax.random.key(4), x), running, rtol=1e-5, atol=1e-5)
  # With the seed's rate the samples vary from key to key; the variables never change.
  samples = jaxuq.mc_sample(
    jaxuq.from_linen(model, variables, train=False), jax.random.key(5), x, num_samples=3
  )
  assert samples.shape == (3, 4, 10)
  assert not np.allclose(samples[0], samples[1])
  # In batch-statistics mode the adapter would have to mutate 'batch_stats': flax refuses.
  with pytest.raises(Exception, match="batch_stats"):
    jaxuq.from_linen(model, variables, train=True)(jax.random.key(6), x)
