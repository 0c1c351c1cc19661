"""from_linen and from_nnx: dropout on, masks per example or shared, BatchNorm frozen."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxuq
from tests.helpers import MLP, mlp_predictive


class OnlyDropout(nn.Module):
  rate: float = 0.3

  @nn.compact
  def __call__(self, x):
    return jaxuq.Dropout(self.rate, deterministic=True)(x)


def _dropout_samples(shared, num_samples=200, batch=8, units=64, rate=0.3):
  x = jnp.ones((batch, units))
  model = OnlyDropout(rate)
  f = jaxuq.from_linen(model, {"params": {}}, shared_mask=shared)
  return np.asarray(jaxuq.mc_sample(f, jax.random.key(0), x, num_samples=num_samples))


@pytest.mark.parametrize("shared", [False, True])
def test_mask_options_shapes_and_drop_fraction(shared):
  s = _dropout_samples(shared)
  assert s.shape == (200, 8, 64)
  dropped = (s == 0).mean()
  n = s.size // 8 if shared else s.size  # shared: batch rows are copies
  assert abs(dropped - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
  np.testing.assert_allclose(s[s != 0], 1 / 0.7, rtol=1e-6)
  rows_equal = np.all(s == s[:, :1, :], axis=(1, 2))
  assert rows_equal.all() if shared else not rows_equal.any()


def test_shared_mask_samples_match_the_loop():
  f = jaxuq.from_linen(
    MLP(width=16), MLP(width=16).init(jax.random.key(0), jnp.ones((5, 1))), shared_mask=True
  )
  x = jnp.linspace(0, 1, 5)[:, None]
  a = jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=6, chunk_size=4)
  b = jaxuq.sequential_sample(f, jax.random.key(1), x, num_samples=6)
  np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


def test_flax_dropout_is_switched_on_even_when_deterministic():
  predict, x = mlp_predictive(jax.random.key(0), flax_dropout=True)
  s = jaxuq.mc_sample(predict, jax.random.key(1), x, num_samples=20)
  det = predict.module.apply(predict.variables, x)  # dropout off
  assert float(jnp.std(s, axis=0).min()) > 0
  assert not np.allclose(s[0], det)
  # Inverted dropout keeps the mean of each unit: compare one layer exactly.
  f = jaxuq.from_linen(nn.Dropout(0.5, deterministic=True), {"params": {}})
  y = jaxuq.mc_sample(f, jax.random.key(2), jnp.ones((4, 10)), num_samples=3)
  assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 2.0}


class BNNet(nn.Module):
  rate: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.BatchNorm(use_running_average=not train)(x)
    return jaxuq.Dropout(self.rate, deterministic=not train)(x)


def test_linen_batchnorm_uses_running_averages_and_is_not_updated():
  x = jnp.array([[1.0, 2.0], [3.0, 5.0], [0.0, -1.0]])
  variables = BNNet().init(jax.random.key(0), x)
  stats = {"mean": jnp.array([3.0, -1.0]), "var": jnp.array([4.0, 0.25])}
  variables = {"params": variables["params"], "batch_stats": {"BatchNorm_0": stats}}
  f = jaxuq.from_linen(BNNet(), variables, check_dropout=False, train=False)
  s = jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=2)
  want = (x - stats["mean"][None]) / jnp.sqrt(stats["var"][None] + 1e-5)  # rate 0: BN alone
  np.testing.assert_allclose(s[0], want, rtol=1e-6)
  np.testing.assert_array_equal(f.variables["batch_stats"]["BatchNorm_0"]["mean"], stats["mean"])


def test_model_without_dropout_is_refused():
  model = nn.Dense(3)
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), jnp.ones((2, 2))))
  with pytest.raises(ValueError, match="no dropout layer"):
    jaxuq.mc_sample(f, jax.random.key(0), jnp.ones((2, 2)), num_samples=2)


def test_bad_variables_are_refused():
  with pytest.raises(ValueError, match="'params'"):
    jaxuq.from_linen(MLP(), {"batch_stats": {}})
  with pytest.raises(TypeError, match="mapping"):
    jaxuq.from_linen(MLP(), [1, 2])
  with pytest.raises(TypeError, match="flax.linen.Module"):
    jaxuq.from_linen(lambda x: x, {"params": {}})


class NnxNet(nnx.Module):
  def __init__(self, rngs: nnx.Rngs, rate: float = 0.5):
    self.dense = nnx.Linear(1, 32, rngs=rngs)
    self.bn = nnx.BatchNorm(32, rngs=rngs)
    self.drop = nnx.Dropout(rate, rngs=rngs)
    self.out = nnx.Linear(32, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(self.drop(nnx.relu(self.bn(self.dense(x)))))


def _as_numpy(x):
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(x)


def test_nnx_model_matches_the_loop_and_is_left_unchanged():
  model = NnxNet(nnx.Rngs(0))
  model.bn.mean[...] = jnp.full((32,), 0.5)
  before = jax.tree.map(_as_numpy, nnx.state(model))
  f = jaxuq.from_nnx(model)
  x = jnp.linspace(-1, 1, 12)[:, None]
  a = jaxuq.mc_sample(f, jax.random.key(3), x, num_samples=10, chunk_size=3)
  b = jaxuq.sequential_sample(f, jax.random.key(3), x, num_samples=10)
  np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
  assert float(jnp.std(a, axis=0).mean()) > 0
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(_as_numpy, nnx.state(model)))
  # Running averages, not batch statistics: with dropout rate 0 the output is
  # the model's own eval-mode output.
  model0 = NnxNet(nnx.Rngs(0), rate=0.0)
  model0.bn.mean[...] = jnp.full((32,), 0.5)
  f0 = jaxuq.from_nnx(model0, check_dropout=False)
  s = jaxuq.mc_sample(f0, jax.random.key(1), x, num_samples=2)
  model0.eval()
  np.testing.assert_allclose(s[0], model0(x), rtol=1e-6, atol=1e-6)


def test_nnx_shared_mask_gives_one_network_per_sample():
  model = NnxNet(nnx.Rngs(0))
  f = jaxuq.from_nnx(model, shared_mask=True)
  x = jnp.ones((6, 1))
  s = np.asarray(jaxuq.mc_sample(f, jax.random.key(0), x, num_samples=8))
  assert np.all(s == s[:, :1])  # equal inputs, equal mask: equal outputs
  assert np.std(s[:, 0]) > 0


def test_nnx_model_without_dropout_is_refused():
  model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"no dropout layer \(nnx.Dropout\)"):
    jaxuq.mc_sample(jaxuq.from_nnx(model), jax.random.key(0), jnp.ones((2, 1)), num_samples=2)
  with pytest.raises(TypeError, match="nnx.Module"):
    jaxuq.from_nnx(MLP())


def test_linen_dropout_inside_an_nnx_bridge_is_switched_on():
  # A linen nn.Dropout inside flax.nnx.bridge.ToNNX was left off (deterministic by default)
  # while the model's nnx.Dropout sampled: a spread too small, without a word.
  from flax.nnx import bridge

  x = jax.random.normal(jax.random.key(0), (4, 3))

  class Block(nn.Module):
    @nn.compact
    def __call__(self, x, deterministic=True):
      return nn.Dropout(0.5)(nn.Dense(16)(x), deterministic=deterministic)

  class Hybrid(nnx.Module):
    def __init__(self, rngs):
      self.lin = bridge.ToNNX(Block(), rngs=rngs)
      bridge.lazy_init(self.lin, x)
      self.drop = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
      return self.lin(x), self.drop(x)

  f = jaxuq.from_nnx(Hybrid(nnx.Rngs(0)))
  n = 200
  block, _ = jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=n)
  # Dense outputs are never exactly 0: the zeros are the mask's, a binomial fraction of 1/2
  zeros = float((block == 0).mean())
  assert abs(zeros - 0.5) < 4 * np.sqrt(0.25 / block.size)
  again, _ = jaxuq.sequential_sample(f, jax.random.key(1), x, num_samples=3)
  np.testing.assert_array_equal(again, block[:3])


class _Member(nnx.Module):
  def __init__(self, rngs):
    self.l1 = nnx.Linear(3, 16, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.l2 = nnx.Linear(16, 2, rngs=rngs)

  def __call__(self, x):
    return self.l2(self.drop(nnx.relu(self.l1(x))))


class _VmappedMembers(nnx.Module):
  """The Flax docs' ensemble: members built and run with nnx.vmap (stacked rng streams)."""

  def __init__(self, n, rngs):
    @nnx.split_rngs(splits=n)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs):
      return _Member(rngs)

    self.members = create(rngs)

  def __call__(self, x):
    @nnx.vmap(in_axes=(0, None), out_axes=0)
    def forward(member, x):
      return member(x)

    return forward(self.members, x)


def test_nnx_vmap_ensembles_sample_in_a_loop_and_in_one_call():
  # The stacked dropout stream (key shape (3,)) was replaced by one key: an nnx.vmap shape
  # error even in sequential_sample; mc_sample failed with Flax's trace-level error.
  model = _VmappedMembers(3, nnx.Rngs(0))
  model.eval()
  x = jnp.tile(jax.random.normal(jax.random.key(0), (1, 3)), (4, 1))
  f = jaxuq.from_nnx(model)
  s = jaxuq.sequential_sample(f, jax.random.key(1), x, num_samples=6)
  assert s.shape == (6, 3, 4, 2)
  assert float(jnp.abs(s[0] - s[1]).max()) > 0  # samples differ
  assert float(jnp.abs(s[:, 0] - s[:, 1]).max()) > 0  # members differ
  assert float(jnp.abs(s[:, :, 0] - s[:, :, 1]).max()) > 0  # equal rows, own masks
  np.testing.assert_array_equal(jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=6), s)


class _Block(nnx.Module):
  def __init__(self, rngs):
    self.lin = nnx.Linear(8, 8, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.drop(nnx.relu(self.lin(x)))


class _ScannedStack(nnx.Module):
  """Flax's layer stack: blocks built by nnx.vmap, run by nnx.scan (a carry through them)."""

  def __init__(self, rngs):
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs):
      return _Block(rngs)

    self.blocks = create(rngs)
    self.head = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def body(x, block):
      return block(x)

    return self.head(body(x, self.blocks))


class _Calls(nnx.Variable):
  pass


class _Transforms(nnx.Module):
  """nnx.remat and nnx.jit inside __call__, and a Variable it updates on every call."""

  def __init__(self, rngs):
    self.a, self.b = _Member(rngs), _Member(rngs)
    self.calls = _Calls(jnp.zeros((), jnp.int32))

  def __call__(self, x):
    self.calls[...] = self.calls[...] + 1
    return nnx.remat(lambda m, x: m(x))(self.a, x) + nnx.jit(lambda m, x: m(x))(self.b, x)


@pytest.mark.parametrize("build", [_ScannedStack, _Transforms], ids=["scan", "remat-jit-update"])
def test_nnx_transforms_and_updates_inside_the_model_sample_in_one_call(build):
  # mc_sample, mc_reduce and a user's own jax.vmap over keys closing over the predictive all
  # failed with Flax's "Cannot extract graph node from different trace level": the merged
  # model reused Variables made outside the trace. They equal the loop of single calls.
  model = build(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (4, 8 if build is _ScannedStack else 3))
  f = jaxuq.from_nnx(model)
  loop = jaxuq.sequential_sample(f, jax.random.key(1), x, num_samples=5)
  assert float(loop.std(0).max()) > 0
  np.testing.assert_array_equal(jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=5), loop)
  keys = jax.random.split(jax.random.key(1), 5)
  mine = jax.jit(jax.vmap(lambda k: f(k, x)))(keys)  # weights as constants: rounding differs
  np.testing.assert_allclose(mine, loop, rtol=1e-5, atol=1e-6)
  moments = jaxuq.mc_reduce(f, jax.random.key(1), x, num_samples=5, reducer=jaxuq.moments_reducer())
  np.testing.assert_allclose(moments["mean"], loop.mean(0), rtol=1e-5, atol=1e-6)
  if build is _Transforms:
    assert int(model.calls[...]) == 0  # the user's model is not changed


def test_a_traced_nnx_rate_is_refused_by_name():
  x = jnp.ones((4, 1))

  @jax.jit
  def sample(rate):
    f = jaxuq.from_nnx(NnxNet(nnx.Rngs(0), rate=rate))
    return jaxuq.mc_sample(f, jax.random.key(1), x, num_samples=4)

  with pytest.raises(TypeError, match=r"rate of .*is a traced value.*static"):
    sample(0.5)


def test_a_rate_given_as_an_input_is_refused_by_name():
  # Inputs of mc_sample are arrays, so a rate passed as one is traced inside the model.
  class RateArg(nn.Module):
    @nn.compact
    def __call__(self, x, rate, deterministic=True):
      return nn.Dropout(rate)(nn.Dense(4)(x), deterministic=deterministic)

  x = jnp.ones((3, 2))
  variables = RateArg().init(jax.random.key(0), x, 0.5)
  f = jaxuq.from_linen(RateArg(), variables)
  with pytest.raises(TypeError, match=r"the rate of Dropout 'Dropout_0' is a traced value"):
    jaxuq.mc_sample(f, jax.random.key(1), x, 0.5, num_samples=4)


def test_models_with_array_fields_sample_one_after_another():
  # The second instance failed in jit's cache lookup, whose comparison of the two modules
  # compared their array fields ("arrays cannot be passed as metadata fields").
  class Scaled(nn.Module):
    scale: jax.Array

    @nn.compact
    def __call__(self, x, deterministic=True):
      return nn.Dropout(0.5)(nn.Dense(4)(x), deterministic=deterministic) * self.scale

  x = jnp.ones((3, 2))
  variables = Scaled(jnp.ones((1, 4))).init(jax.random.key(0), x)
  key = jax.random.key(1)

  def sample(scale):
    return jaxuq.mc_sample(jaxuq.from_linen(Scaled(scale), variables), key, x, num_samples=3)

  one = sample(jnp.ones((1, 4)))
  np.testing.assert_array_equal(
    sample(jnp.full((1, 4), 2.0)), 2 * one
  )  # its own scale, not a stale one
  np.testing.assert_array_equal(sample(np.ones((1, 4))), one)
  loop = jaxuq.sequential_sample(jaxuq.from_linen(Scaled(jnp.full((1, 4), 2.0)), variables), key, x,
                                 num_samples=3)  # fmt: skip
  np.testing.assert_allclose(loop, 2 * one, rtol=2e-6, atol=1e-6)
