"""Bad and unusual inputs to the sampling core, the adapters and the dropout layer.

Each case once gave a silently wrong answer, a crash or an unclear error.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxuq
from tests.helpers import MLP, mlp_predictive

RATE = 0.5


class CallFlagNet(nnx.Module):
  """nnx as users write it: call-time flags, an nnx.Rngs kept in the model, BatchNorm."""

  def __init__(self, rngs: nnx.Rngs, rate: float = RATE):
    self.rngs = rngs
    self.dense = nnx.Linear(1, 64, rngs=rngs)
    self.bn = nnx.BatchNorm(64, rngs=rngs)
    self.drop = nnx.Dropout(rate)

  def __call__(self, x, train: bool = False):
    h = self.bn(self.dense(x), use_running_average=not train)
    return self.drop(h, deterministic=not train, rngs=self.rngs)


def _call_flag_net():
  model = CallFlagNet(nnx.Rngs(0))
  model.bn.mean[...] = jnp.full((64,), 0.5)  # running averages unlike the batch's
  model.bn.var[...] = jnp.full((64,), 2.0)
  return model


def test_nnx_call_time_flags_are_overridden_with_the_documented_keys():
  model = _call_flag_net()
  x = jnp.linspace(-1, 1, 8)[:, None]
  key, n = jax.random.key(5), 64
  s = np.asarray(jaxuq.mc_sample(jaxuq.from_nnx(model), key, x, num_samples=n))
  assert s.std(axis=0).mean() > 0.1
  # Layer 0 draws as nnx.Dropout does with rngs=nnx.Rngs(dropout=fold_in(key_i, 0)),
  # on BatchNorm's running-average output.
  h = model.bn(model.dense(x), use_running_average=True)
  for i, k in enumerate(jax.random.split(key, n)):
    rngs = nnx.Rngs(dropout=jax.random.fold_in(k, 0))
    want = nnx.Dropout(RATE)(h, deterministic=False, rngs=rngs)
    np.testing.assert_allclose(s[i], want, rtol=1e-6, atol=1e-6)
  dropped = float((s == 0).mean())  # h has no zeros: zeros are dropped units
  assert abs(dropped - RATE) < 4 * np.sqrt(RATE * (1 - RATE) / s.size)


def test_nnx_model_in_eval_mode_still_samples():
  model = _call_flag_net()
  model.eval()
  s = jaxuq.mc_sample(jaxuq.from_nnx(model), jax.random.key(0), jnp.ones((4, 1)), num_samples=8)
  assert float(jnp.std(s, axis=0).mean()) > 0.1


@pytest.mark.parametrize("rate", [1.5, -0.2, 1.0])
def test_nnx_dropout_rate_outside_unit_interval_is_refused(rate):
  with pytest.raises(ValueError, match=r"rate of nnx.Dropout 'drop' must be in \[0, 1\)"):
    jaxuq.from_nnx(CallFlagNet(nnx.Rngs(0), rate=rate))


def test_every_dropout_rate_zero_is_refused_through_the_adapters():
  x = jnp.ones((2, 1))
  with pytest.raises(ValueError, match="no dropout layer with a positive rate ran"):
    jaxuq.mc_sample(
      jaxuq.from_nnx(CallFlagNet(nnx.Rngs(0), 0.0)), jax.random.key(0), x, num_samples=2
    )
  predict, x = mlp_predictive(jax.random.key(0), rate=0.0)
  with pytest.raises(ValueError, match="no dropout layer with a positive rate ran"):
    jaxuq.mc_sample(predict, jax.random.key(0), x, num_samples=2)


class Single(nn.Module):
  layer: nn.Module

  @nn.compact
  def __call__(self, x):
    return self.layer(x)


@pytest.mark.parametrize("flax_layer", [False, True])
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_integer_and_bool_input_is_refused(flax_layer, dtype):
  layer = (nn.Dropout if flax_layer else jaxuq.Dropout)(0.5, deterministic=True)
  f = jaxuq.from_linen(Single(layer), {"params": {}})
  with pytest.raises(TypeError, match=r"Dropout.*dtype .*Cast the input to a float dtype"):
    jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 3), dtype), num_samples=2)
  if not flax_layer:
    with pytest.raises(TypeError, match="float dtype"):
      jaxuq.Dropout(0.5).apply(
        {}, jnp.ones(3, dtype), deterministic=False, rngs={"dropout": jax.random.key(0)}
      )


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_input_keeps_working(dtype):
  f = jaxuq.from_linen(Single(jaxuq.Dropout(0.5, deterministic=True)), {"params": {}})
  s = jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 64), dtype), num_samples=4)
  assert s.dtype == dtype
  assert set(np.unique(np.asarray(s, np.float32)).tolist()) == {0.0, 2.0}


@pytest.mark.parametrize("flax_layer", [False, True])
def test_broadcast_dims_out_of_range_is_refused(flax_layer):
  layer = (nn.Dropout if flax_layer else jaxuq.Dropout)(
    0.5, broadcast_dims=(2,), deterministic=True
  )
  f = jaxuq.from_linen(Single(layer), {"params": {}})
  with pytest.raises(ValueError, match=r"broadcast_dims=\(2,\).*rank 2"):
    jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 3)), num_samples=2)


class DropOnly(nnx.Module):
  def __init__(self, broadcast_dims=()):
    self.drop = nnx.Dropout(0.5, broadcast_dims=broadcast_dims)

  def __call__(self, x, train: bool = False):
    return self.drop(x, deterministic=not train)


def test_integer_input_is_refused_for_nnx():
  f = jaxuq.from_nnx(DropOnly())
  with pytest.raises(TypeError, match="nnx layer Dropout got an input of dtype int32"):
    jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 3), jnp.int32), num_samples=2)


def test_broadcast_dims_out_of_range_is_refused_for_nnx():
  f = jaxuq.from_nnx(DropOnly(broadcast_dims=(-3,)))
  with pytest.raises(ValueError, match=r"broadcast_dims=\(-3,\).*rank 2"):
    jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 3)), num_samples=2)


def _reduce(key, x):
  """A small output from a large key-dependent intermediate (an outer product)."""
  h = x[:, None] * x[None, :] * jax.random.bernoulli(key, 0.5, (x.shape[0],) * 2)
  return h.sum()


def _no_split(*args, **kwargs):
  raise AssertionError("jax.random.split was reached")


@pytest.mark.parametrize("sampler", [jaxuq.mc_sample, jaxuq.sequential_sample])
def test_samples_that_cannot_fit_are_refused_before_any_allocation(sampler, monkeypatch):
  x = jnp.ones(1000)
  f = lambda key, x: x * jax.random.bernoulli(key, 0.5, x.shape)  # noqa: E731
  monkeypatch.setattr(jax.random, "split", _no_split)
  for n in (10**10, 10**12):
    with pytest.raises(ValueError, match=rf"num_samples={n} cannot fit.*bytes.*fewer samples"):
      sampler(f, jax.random.key(0), x, num_samples=n)


def test_a_chunk_that_cannot_fit_is_refused(monkeypatch):
  monkeypatch.setattr(jax.random, "split", _no_split)
  x = jnp.ones(4096)  # one sample holds a 64 MiB intermediate
  with pytest.raises(ValueError, match=r"a chunk of 1000000 need at least.*smaller chunk_size"):
    jaxuq.mc_sample(_reduce, jax.random.key(0), x, num_samples=10**6, chunk_size=10**6)


def test_empty_devices_are_refused():
  f = lambda key, x: x  # noqa: E731
  for call in (jaxuq.mc_sample, jaxuq.auto_chunk_size):
    with pytest.raises(ValueError, match="devices must name at least one device"):
      call(f, jax.random.key(0), jnp.ones(2), num_samples=2, devices=[])


def test_a_device_named_twice_is_refused():
  # JAX's own error ("arrays must be from distinct devices") never named the argument.
  f = lambda key, x: x  # noqa: E731
  d = jax.devices()[0]
  for call in (jaxuq.mc_sample, jaxuq.auto_chunk_size):
    with pytest.raises(ValueError, match="devices must name each device once"):
      call(f, jax.random.key(0), jnp.ones(2), num_samples=2, devices=[d, d])
  with pytest.raises(ValueError, match="devices must name each device once"):
    jaxuq.mc_reduce(
      f,
      jax.random.key(0),
      jnp.ones(2),
      num_samples=2,
      devices=[d, d],
      reducer=jaxuq.moments_reducer(),
    )


def test_auto_chunk_size_checks_its_arguments():
  f = lambda key, x: x  # noqa: E731
  with pytest.raises(ValueError, match="num_samples must be a positive int, got 0"):
    jaxuq.auto_chunk_size(f, jax.random.key(0), jnp.ones(2), num_samples=0)
  with pytest.raises(TypeError, match=r"jax.random.key\(3\)"):
    jaxuq.auto_chunk_size(f, 3, jnp.ones(2), num_samples=2)


def test_integer_keys_are_refused_with_the_fix():
  with pytest.raises(TypeError, match=r"jax.random.key\(3\)"):
    jaxuq.keep_mask(3, (4,), 0.5)
  predict, x = mlp_predictive(jax.random.key(0))
  with pytest.raises(TypeError, match=r"jax.random.key\(3\)"):
    predict(3, x)
  with pytest.raises(TypeError, match=r"jax.random.key\(3\)"):
    jaxuq.from_nnx(_call_flag_net())(3, jnp.ones((2, 1)))


def test_python_lists_are_converted_to_arrays():
  predict, x = mlp_predictive(jax.random.key(0), batch=3)
  xs = np.asarray(x).tolist()
  key = jax.random.key(1)
  want = jaxuq.mc_sample(predict, key, x, num_samples=4)
  np.testing.assert_array_equal(jaxuq.mc_sample(predict, key, xs, num_samples=4), want)
  np.testing.assert_allclose(
    jaxuq.sequential_sample(predict, key, xs, num_samples=4), want, rtol=1e-3, atol=1e-5
  )
  np.testing.assert_array_equal(predict(key, xs), predict(key, x))
  nnx_f = jaxuq.from_nnx(_call_flag_net())
  np.testing.assert_array_equal(nnx_f(key, [[1.0], [2.0]]), nnx_f(key, jnp.array([[1.0], [2.0]])))
  with pytest.raises(ValueError, match="not a rectangular array"):
    jaxuq.mc_sample(predict, key, [[1.0], [2.0, 3.0]], num_samples=2)


class OtherCollection(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dropout(0.5, deterministic=True, rng_collection="noise")(x)


def test_dropout_on_another_rng_collection_is_named():
  f = jaxuq.from_linen(OtherCollection(), {"params": {}})
  with pytest.raises(ValueError, match=r"'noise'.*rng_collection='noise'"):
    jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 8)), num_samples=2)
  f = jaxuq.from_linen(OtherCollection(), {"params": {}}, rng_collection="noise")
  s = jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 8)), num_samples=2)
  assert set(np.unique(np.asarray(s)).tolist()) == {0.0, 2.0}


class BNDrop(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dropout(0.5, deterministic=not train)(x)


def test_linen_batchnorm_in_training_mode_is_refused():
  x = jnp.ones((4, 3))
  variables = BNDrop().init(jax.random.key(0), x)
  f = jaxuq.from_linen(BNDrop(), variables, train=True)
  with pytest.raises(ValueError, match="running averages.*train=False"):
    jaxuq.mc_sample(f, jax.random.key(0), x, num_samples=2)
  f = jaxuq.from_linen(BNDrop(), variables, train=False)
  assert jaxuq.mc_sample(f, jax.random.key(0), x, num_samples=2).shape == (2, 4, 3)


@pytest.mark.parametrize("name", ["rngs", "mutable"])
def test_apply_arguments_the_adapter_sets_are_refused(name):
  model = MLP()
  variables = model.init(jax.random.key(0), jnp.ones((1, 1)))
  with pytest.raises(TypeError, match=f"does not take {name}="):
    jaxuq.from_linen(model, variables, **{name: {"dropout": jax.random.key(0)}})


# --- an adversarial review of session 10: each case gave a silently wrong answer before ---


class _ScaledDense(nn.Dense):
  """A Dense subclass that computes something else from its kernel."""

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
    return 3.0 * (x @ k)


def test_closed_form_refuses_a_dense_subclass():
  # The variance came out 9x too small: the subclass's scale was ignored.
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      h = nn.Dropout(0.5, deterministic=not train)(nn.relu(nn.Dense(4)(x)))
      return _ScaledDense(1)(h)

  x = jnp.array([[1.0], [2.0]])
  f = jaxuq.from_linen(Net(), Net().init(jax.random.key(1), x))
  with pytest.raises(ValueError, match="_ScaledDense, a subclass of nn.Dense"):
    jaxuq.exact.closed_form_moments(f, x)


@pytest.mark.parametrize("batch, steps", [(3, 3), (2, 3)])
def test_enumeration_refuses_a_time_major_dropout_input(batch, steps):
  # (T, B, D) with T == B was taken for (B, ...): one mask shared over time steps.
  class TimeMajor(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      h = jnp.swapaxes(nn.Dense(2)(x), 0, 1)
      h = nn.Dropout(0.5, deterministic=not train)(h)
      return nn.Dense(1)(jnp.swapaxes(h, 0, 1).reshape(x.shape[0], -1))

  x = jax.random.normal(jax.random.key(1), (batch, steps, 1))
  f = jaxuq.from_linen(TimeMajor(), TimeMajor().init(jax.random.key(2), x))
  with pytest.raises(ValueError, match="leading axis is not the batch axis"):
    jaxuq.exact.mask_layout(f, x)


def test_enumeration_accepts_batch_first_and_shared_layers():
  f, x = mlp_predictive(jax.random.key(0), batch=3, width=4, depth=1)
  assert jaxuq.exact.mask_layout(f, x).shapes == ((1, 4),)
  f1, x1 = mlp_predictive(jax.random.key(0), batch=1, width=4, depth=1)
  assert jaxuq.exact.mask_layout(f1, x1).shapes == ((1, 4),)


def test_enumeration_of_a_cast_function_names_the_way_out():
  f, x = mlp_predictive(jax.random.key(0), batch=2, width=4, depth=1)
  with pytest.raises(TypeError, match="cast the weights instead"):
    jaxuq.exact.exact_moments(jaxuq.with_dtype(f, jnp.bfloat16), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_keep_mask_checks_its_rate(rate):
  # -0.1 kept every unit, 1.0 dropped all, 1.5 and nan crashed without naming the rate.
  with pytest.raises(ValueError, match="rate must be in \\[0, 1\\)"):
    jaxuq.keep_mask(jax.random.key(0), (4,), rate)


@pytest.mark.parametrize("value", [jnp.ones(2), [1.0, 2.0]])
def test_from_linen_refuses_unhashable_keywords(value):
  # An array keyword worked once, then broke every later call of the same module.
  class Scaled(nn.Module):
    @nn.compact
    def __call__(self, x, scale=None):
      return nn.Dropout(0.5, deterministic=True)(nn.Dense(2)(x))

  x = jnp.ones((3, 2))
  v = Scaled().init(jax.random.key(0), x)
  with pytest.raises(TypeError, match="scale= must be a static, hashable value"):
    jaxuq.from_linen(Scaled(), v, scale=value)
  assert jaxuq.from_linen(Scaled(), v, scale=(1.0, 2.0)) is not None


def test_linen_attention_dropout_is_sampled_whatever_its_flag():
  # It was refused when the model ran it deterministically (train=False); now it is switched
  # on like the dropout layers: exactly the model's own training-mode pass for each key.
  class Attend(nn.Module):
    rate: float

    @nn.compact
    def __call__(self, x, train=False):
      return nn.MultiHeadDotProductAttention(2, dropout_rate=self.rate, deterministic=not train)(x)

  x = jax.random.normal(jax.random.key(2), (2, 3, 4))
  v = Attend(0.5).init(jax.random.key(0), x)
  f = jaxuq.from_linen(Attend(0.5), v, train=False)
  key = jax.random.key(1)
  s = jaxuq.mc_sample(f, key, x, num_samples=4)
  want = jnp.stack(
    [Attend(0.5).apply(v, x, train=True, rngs={"dropout": k}) for k in jax.random.split(key, 4)]
  )
  np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(s[0] - s[1]).max()) > 0
  with pytest.raises(ValueError, match="ran no dropout layer"):
    jaxuq.mc_sample(jaxuq.from_linen(Attend(0.0), v), key, x, num_samples=2)


class _NnxAttend(nnx.Module):
  def __init__(self, rngs):
    self.att = nnx.MultiHeadAttention(2, 4, dropout_rate=0.5, decode=False, rngs=rngs)

  def __call__(self, x, train=False):
    return self.att(x, deterministic=not train)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_nnx_attention_dropout_is_sampled_whatever_its_flag(mode):
  # eval() mode was refused; a train-mode model whose call passed deterministic=not train
  # silently sampled without its attention dropout (a spread 0.19-0.76 of the true one).
  model = _NnxAttend(nnx.Rngs(0))
  getattr(model, mode)()
  x = jax.random.normal(jax.random.key(2), (3, 5, 4))
  f = jaxuq.from_nnx(model)
  s = jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=400)
  np.testing.assert_allclose(
    s[:3], jaxuq.sequential_sample(f, jax.random.key(1), x, num_samples=3), rtol=1e-5, atol=1e-6
  )
  assert float(s.std(axis=0).min()) > 0
  # Attention dropout is inverted and the output linear in the weights: E[sample] = eval output.
  model.eval()
  mean, se = s.mean(axis=0), s.std(axis=0) / np.sqrt(400)
  assert float(jnp.max(jnp.abs(mean - model(x)) / se)) < 4.5


class _OwnNoise(nnx.Module):
  """Draws its own noise from an nnx.Rngs it keeps (also shared as a bare stream)."""

  def __init__(self, rngs):
    self.rngs = rngs
    self.noise = rngs.noise
    self.dense = nnx.Linear(4, 4, rngs=rngs)
    self.drop = nnx.Dropout(1e-6)

  def __call__(self, x):
    e = jax.random.normal(self.noise(), x.shape) + jax.random.normal(self.rngs.noise(), x.shape)
    return self.drop(self.dense(x) + e)


def test_nnx_models_drawing_their_own_noise_vary_per_sample():
  # mc_sample crashed (nnx trace-level error); sequential_sample gave every sample one draw.
  model = _OwnNoise(nnx.Rngs(0, noise=1))
  f, key, x = jaxuq.from_nnx(model), jax.random.key(2), jnp.ones((2, 4))
  s = jaxuq.mc_sample(f, key, x, num_samples=4)
  assert float(jnp.abs(s[0] - s[1]).min()) > 0  # every entry differs between samples
  np.testing.assert_allclose(s, jaxuq.sequential_sample(f, key, x, num_samples=4), rtol=1e-6)
  assert int(model.rngs.noise.count[...]) == 0  # the caller's model is not advanced


@pytest.mark.parametrize("extra", [2.0, jnp.ones(5)])
def test_shared_mask_names_arguments_without_the_batch_axis(extra):
  # Raw vmap errors ("inconsistent sizes", "rank 0") that never said shared_mask.
  class Scaled(nn.Module):
    @nn.compact
    def __call__(self, x, c):
      return nn.Dropout(0.5, deterministic=True)(nn.Dense(2)(x) * jnp.mean(c))

  x = jnp.ones((3, 2))
  f = jaxuq.from_linen(Scaled(), Scaled().init(jax.random.key(0), x, 1.0), shared_mask=True)
  with pytest.raises(ValueError, match="shared_mask=True runs the model on one example"):
    jaxuq.mc_sample(f, jax.random.key(1), x, extra, num_samples=2)
  assert jaxuq.mc_sample(f, jax.random.key(1), x, jnp.ones((3, 1)), num_samples=2).shape == (
    2,
    3,
    2,
  )


def test_shared_mask_refuses_outputs_without_the_batch_axis_first():
  # A model stacking three heads on a new leading axis was cut to its first head: (4, 1, 64)
  # samples instead of (4, 3, 64).
  class Heads(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dropout(0.5, deterministic=True)(x)
      return jnp.stack([nn.Dense(2)(h), nn.Dense(2)(h), nn.Dense(2)(h)])

  x = jnp.ones((5, 2))
  v = Heads().init(jax.random.key(0), x)
  f = jaxuq.from_linen(Heads(), v, shared_mask=True)
  with pytest.raises(ValueError, match="leading axis of size 1"):
    jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=2)
  assert jaxuq.mc_sample(
    jaxuq.from_linen(Heads(), v), jax.random.key(1), x, num_samples=2
  ).shape == (
    2,
    3,
    5,
    2,
  )


def test_a_predictive_function_can_be_jitted_directly():
  # jax.jit(f) raised "unhashable type: 'dict'" (the generated hash hashed the weights).
  f, x = mlp_predictive(jax.random.key(0), batch=4, width=4, depth=1)
  key = jax.random.key(1)
  np.testing.assert_array_equal(jax.jit(f)(key, x), f(key, x))
  g = jaxuq.from_nnx(CallFlagNet(nnx.Rngs(0)))
  assert jax.jit(g)(key, jnp.ones((3, 1))).shape == (3, 64)
