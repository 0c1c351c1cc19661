"""Mask enumeration: the tiny table, an independent NumPy check, MC frequencies, limits, chunks."""

import doctest
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
import jaxuq.exact as ex
from jaxuq._src.exact import closed_form, engine, linen
from jaxuq._src.exact import enumerate as enumerate_module
from jaxuq._src.exact.enumerate import merge_values

TABLE_PROBS = [0.49, 0.21, 0.21, 0.09]
TABLE_OUTPUTS = [11.0, 11 - 110 / 0.3, 11 + 150 / 0.3, 11 + 40 / 0.3]


class TwoLayer(nn.Module):
  """1 -> Dense(3) relu -> Dropout(r1) -> Dense(2) tanh -> Dropout(r2) -> Dense(outputs)."""

  rates: tuple = (0.25, 0.5)
  outputs: int = 1
  flax_dropout: bool = False

  @nn.compact
  def __call__(self, x):
    layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
    h = layer(self.rates[0], deterministic=True)(nn.relu(nn.Dense(3)(x)))
    h = layer(self.rates[1], deterministic=True)(jnp.tanh(nn.Dense(2)(h)))
    return nn.Dense(self.outputs)(h)


def _two_layer(flax_dropout=False, outputs=1, batch=3):
  model = TwoLayer(outputs=outputs, flax_dropout=flax_dropout)
  x = jnp.linspace(-1.0, 2.0, batch)[:, None]
  variables = model.init(jax.random.key(0), x)
  return jaxuq.from_linen(model, variables), variables, x


def test_tiny_table_to_float32_rounding():
  e = ex.enumerate_outputs(ex.tiny_predictive(), ex.tiny_input())
  assert e.outputs.dtype == np.float32 and e.probs.dtype == np.float64
  np.testing.assert_allclose(e.probs, TABLE_PROBS, rtol=1e-15)
  np.testing.assert_allclose(e.outputs[:, 0, 0], TABLE_OUTPUTS, rtol=1e-6)  # float32
  assert abs(e.probs.sum() - 1.0) < 1e-15
  assert [e.kept_units(i) for i in range(4)] == [
    [],
    ["dropout[0]"],
    ["dropout[1]"],
    ["dropout[0]", "dropout[1]"],
  ]


def test_tiny_table_to_1e9_with_scoped_x64():
  with jax.enable_x64(True):
    e = ex.enumerate_outputs(ex.tiny_predictive(), ex.tiny_input())
    (d,) = ex.exact_distribution(ex.tiny_predictive(), ex.tiny_input())
  assert e.outputs.dtype == np.float64
  np.testing.assert_allclose(e.outputs[:, 0, 0], TABLE_OUTPUTS, rtol=0, atol=1e-9)
  np.testing.assert_allclose(d.values[:, 0], sorted(TABLE_OUTPUTS), rtol=0, atol=1e-9)
  np.testing.assert_allclose(d.probs, [0.21, 0.49, 0.09, 0.21], rtol=0, atol=1e-15)
  assert not jax.config.jax_enable_x64  # scoped: switched back off


def test_tiny_moments_and_quantiles():
  f, x = ex.tiny_predictive(), ex.tiny_input()
  m = ex.exact_moments(f, x, covariance=True)
  mean = np.dot(TABLE_PROBS, TABLE_OUTPUTS)
  var = np.dot(TABLE_PROBS, (np.array(TABLE_OUTPUTS) - mean) ** 2)
  np.testing.assert_allclose(m.mean[0, 0], 51.0, rtol=1e-6)
  np.testing.assert_allclose(mean, 51.0, rtol=1e-12)
  np.testing.assert_allclose(m.var[0, 0], var, rtol=1e-6)
  np.testing.assert_allclose(m.cov[0, 0, 0], var, rtol=1e-6)
  q = ex.exact_quantiles(f, x, levels=[0.0, 0.21, 0.22, 0.7, 0.71, 0.79, 0.8, 1.0])
  expected = [TABLE_OUTPUTS[i] for i in (1, 1, 0, 0, 3, 3, 2, 2)]
  np.testing.assert_allclose(q[:, 0, 0], expected, rtol=1e-6)


def _numpy_outputs(variables, x, rates):
  """Independent forward pass of TwoLayer for every mask, in NumPy float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  x = np.asarray(x, np.float64)
  outs, probs = [], []
  for bits in itertools.product([0, 1], repeat=5):
    kept = np.array(bits[::-1])  # bit j of the index = unit j
    k1, k2 = kept[:3], kept[3:]
    h = np.maximum(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0) * k1 / (1 - rates[0])
    h = np.tanh(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]) * k2 / (1 - rates[1])
    outs.append(h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"])
    keep = np.array([1 - rates[0]] * 3 + [1 - rates[1]] * 2)
    probs.append(np.prod(np.where(kept, keep, 1 - keep)))
  return np.array(outs), np.array(probs)


@pytest.mark.parametrize("flax_dropout", [False, True])
def test_enumeration_matches_an_independent_numpy_forward_pass(flax_dropout):
  f, variables, x = _two_layer(flax_dropout, batch=4)
  e = ex.enumerate_outputs(f, x)
  assert e.layout.num_units == 5 and e.layout.keep_probs == (0.75, 0.5)
  want_out, want_p = _numpy_outputs(variables, x, (0.25, 0.5))
  np.testing.assert_allclose(e.probs, want_p, rtol=1e-15)
  np.testing.assert_allclose(e.outputs, want_out, rtol=1e-5, atol=1e-5)


def test_every_chunk_size_gives_the_same_answer():
  f, _, x = _two_layer(outputs=2)
  ref = ex.enumerate_outputs(f, x, chunk_size=32)
  ref_m = ex.exact_moments(f, x, covariance=True, chunk_size=32)
  for chunk in (1, 3, 8, 1000):
    e = ex.enumerate_outputs(f, x, chunk_size=chunk)
    np.testing.assert_array_equal(e.probs, ref.probs)
    np.testing.assert_allclose(e.outputs, ref.outputs, rtol=1e-6, atol=1e-6)
    m = ex.exact_moments(f, x, covariance=True, chunk_size=chunk)
    for a, b in zip(m, ref_m, strict=True):
      # float32 outputs: rounding relative to the outputs' scale (on a GPU the
      # batched matmuls sum in another order; a 1.4e-4 entry moved by 2.5e-8).
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.max(np.abs(b)))


def test_chunks_bound_memory():
  f, _, x = _two_layer()
  layout, paths = linen.discover(f, (x,))
  g = linen.masked(f, paths)
  sizes = [y.shape[0] for _, y, _ in engine.iter_chunks(g, layout, (x,), 4)]
  assert sizes == [4] * 8  # 32 masks, never more than 4 at a time
  assert engine.auto_enum_chunk(g, layout, (x,), memory_budget=1) == 1
  assert engine.auto_enum_chunk(g, layout, (x,), memory_budget=2**40) == 32
  with pytest.raises(ValueError, match="atol must be"):
    ex.exact_distribution(f, x, atol=-1.0)


def test_mc_frequencies_within_four_standard_errors():
  f, x = ex.tiny_predictive(), ex.tiny_input()
  n = 4000
  s = np.asarray(jaxuq.mc_sample(f, jax.random.key(7), x, num_samples=n))[:, 0, 0]
  (d,) = ex.exact_distribution(f, x)
  nearest = np.abs(s[:, None] - d.values[None, :, 0]).argmin(axis=1)
  np.testing.assert_allclose(s, d.values[nearest, 0], rtol=1e-6)  # only table values occur
  freq = np.bincount(nearest, minlength=4) / n
  se = np.sqrt(d.probs * (1 - d.probs) / n)
  assert np.all(np.abs(freq - d.probs) < 4 * se), (freq, d.probs)


class Wide(nn.Module):
  width: int = 4096

  @nn.compact
  def __call__(self, x):
    h = jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(self.width)(x)))
    h = jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(self.width)(h)))
    return nn.Dense(1)(h)


def test_too_many_units_is_refused_before_anything_is_computed():
  # Abstract weights and inputs: any computation or allocation would fail, so
  # the ValueError proves the refusal came from shapes alone.
  model = Wide()
  x = jax.ShapeDtypeStruct((100, 1), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  f = jaxuq.from_linen(model, variables)
  before = len(jax.live_arrays())
  assert ex.mask_layout(f, x).num_units == 8192
  with pytest.raises(ValueError, match=r"2\^8192 masks.*mc_sample.*closed_form_moments"):
    ex.exact_moments(f, x)
  with pytest.raises(ValueError, match=r"8192 droppable units"):
    ex.enumerate_outputs(f, x)
  assert len(jax.live_arrays()) == before


def test_limit_is_counted_in_units_and_can_be_raised():
  f, _, x = _two_layer()
  with pytest.raises(ValueError, match=r"2\^5 = 32 masks.*2\^4"):
    ex.exact_moments(f, x, max_units=4)
  assert ex.exact_moments(f, x, max_units=5).mean.shape == (3, 1)
  with pytest.raises(ValueError, match="max_units must be at most 32"):
    ex.exact_moments(f, x, max_units=40)


def test_max_bytes_refuses_holding_all_outputs():
  f, _, x = _two_layer()
  with pytest.raises(ValueError, match="max_bytes"):
    ex.enumerate_outputs(f, x, max_bytes=100)


class Reused(nn.Module):
  @nn.compact
  def __call__(self, x):
    drop = jaxuq.Dropout(0.5, deterministic=True)
    return nn.Dense(1)(drop(nn.Dense(2)(drop(x))))


class Noisy(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = x + jax.random.normal(self.make_rng("dropout"), x.shape)
    return nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(x))


@pytest.mark.parametrize(
  "model, match",
  [
    (Reused(), "runs more than once"),
    (Noisy(), "draws random numbers besides its dropout masks"),
    (nn.Dense(1), "runs no dropout layer"),
  ],
)
def test_models_enumeration_cannot_cover_are_refused(model, match):
  x = jnp.ones((2, 2))
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x), check_dropout=False)
  with pytest.raises(ValueError, match=match):
    ex.exact_moments(f, x)


def test_only_linen_predictives_are_accepted():
  with pytest.raises(TypeError, match="from_linen"):
    ex.exact_moments(lambda key, x: x, jnp.ones((1, 1)))


def test_shared_mask_predictive_gives_the_same_distribution():
  f, variables, x = _two_layer()
  shared = jaxuq.from_linen(f.module, variables, shared_mask=True)
  np.testing.assert_allclose(
    ex.enumerate_outputs(shared, x).outputs, ex.enumerate_outputs(f, x).outputs, rtol=1e-6
  )


def test_merge_tolerance():
  values = np.array([[2.0], [1.0], [1.0 + 2**-22]], np.float32)  # 1 and 1 + 2 ulp
  probs = np.array([0.5, 0.25, 0.25])
  d = merge_values(values, probs, None)  # default: 64 ulp of the largest value
  np.testing.assert_allclose(d.probs, [0.5, 0.5])
  np.testing.assert_allclose(d.values[:, 0], [1.0 + 2**-23, 2.0])
  assert len(merge_values(values, probs, 0.0).probs) == 3
  assert len(merge_values(values, probs, 1.5).probs) == 1


@pytest.mark.parametrize("module", [enumerate_module, closed_form])
def test_docstring_examples_run(module):
  assert doctest.testmod(module, verbose=False).failed == 0


class SmallConv(nn.Module):
  """Conv, BatchNorm, spatial jaxuq.Dropout (shared over H, W), flax Dropout, Dense(3)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.BatchNorm(use_running_average=not train)(nn.relu(nn.Conv(4, (3, 3))(x)))
    h = jaxuq.Dropout(0.5, broadcast_dims=(1, 2), deterministic=not train)(h)
    h = nn.Dropout(0.25, deterministic=not train)(h.mean(axis=(1, 2)))
    return nn.Dense(3)(h)


def test_conv_model_mc_mean_within_four_standard_errors_of_exact():
  x = jax.random.normal(jax.random.key(0), (4, 6, 6, 2))
  model = SmallConv()
  f = jaxuq.from_linen(model, model.init(jax.random.key(1), x), train=False)
  layout = ex.mask_layout(f, x)
  assert layout.shapes == ((1, 1, 1, 4), (1, 4)) and layout.keep_probs == (0.5, 0.75)
  m = ex.exact_moments(f, x)
  n = 4000
  s = np.asarray(jaxuq.mc_sample(f, jax.random.key(2), x, num_samples=n), np.float64)
  assert np.all(np.abs(s.mean(0) - m.mean) < 4 * np.sqrt(m.var / n))


@pytest.mark.parametrize("layer", [nn.Dropout(0.5), jaxuq.Dropout(0.5)])
def test_explicit_mask_replaces_the_draw_under_from_linen(layer):
  keep = jnp.array([[True, False, True]])
  f = jaxuq.from_linen(layer, {"params": {}, jaxuq.MASK_COLLECTION: {"keep": keep}})
  x = jnp.ones((2, 3))
  for seed in range(3):
    np.testing.assert_array_equal(f(jax.random.key(seed), x), [[2.0, 0.0, 2.0]] * 2)


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"memory_budget": -1}, {"chunk_size": 2.5}])
def test_bad_chunk_settings_are_refused(kwargs):
  f, _, x = _two_layer()
  with pytest.raises(ValueError, match="must be a positive int"):
    ex.exact_moments(f, x, **kwargs)


class _Graph(nn.Module):
  """A graph layer after dropout: each node's output sums its neighbours' dropped features."""

  @nn.compact
  def __call__(self, nodes, adj):
    h = nn.Dropout(0.5, deterministic=True)(nodes)
    return nn.Dense(1, use_bias=False, kernel_init=nn.initializers.ones)(adj @ h)


class _BatchMean(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dropout(0.5, deterministic=True)(x)
    return nn.Dense(2)(h - h.mean(0, keepdims=True))


class _Head(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(nn.Dropout(0.5, deterministic=True)(nn.Dense(2)(x)))


class _VmappedHeads(nn.Module):
  @nn.compact
  def __call__(self, x):
    heads = nn.vmap(
      _Head,
      in_axes=None,
      out_axes=0,
      variable_axes={"params": 0},
      split_rngs={"params": True, "dropout": True},
      axis_size=3,
    )
    return heads()(x).sum(0)


def test_models_that_mix_the_batch_are_refused():
  # Enumeration shares each unit's mask across the batch; for a graph layer that gave the
  # variance of shared masks, [25, 16, 9], where the model's per-node masks give [13, 10, 5].
  nodes = jnp.array([[1.0], [2.0], [3.0]])
  adj = jnp.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
  graph = jaxuq.from_linen(_Graph(), _Graph().init(jax.random.key(0), nodes, adj))
  with pytest.raises(ValueError, match="mixes the examples of its batch"):
    ex.exact_moments(graph, nodes, adj)
  x = jax.random.normal(jax.random.key(1), (4, 3))
  mean = jaxuq.from_linen(_BatchMean(), _BatchMean().init(jax.random.key(0), x))
  with pytest.raises(ValueError, match="mixes the examples of its batch"):
    ex.enumerate_outputs(mean, x)
  # Nodes 0 and 2 linked only to each other (the same parity: an even/odd probe missed it).
  ring = jnp.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
  four = jnp.arange(1.0, 5.0)[:, None]
  with pytest.raises(ValueError, match="mixes the examples of its batch"):
    ex.exact_moments(graph, four, ring)
  # The identity graph does not mix: enumeration runs.
  ex.exact_moments(graph, four, jnp.eye(4))
  # One example cannot mix with others: its enumeration is that of its own masks.
  one = ex.exact_moments(graph, nodes[:1], adj[:1, :1])
  np.testing.assert_allclose(one.var, 0.0)


def test_dropout_inside_nn_vmap_is_refused_not_miscounted():
  # mask_layout reported 2 units for 3 vmapped heads of 2 (6 units) and enumeration failed
  # with a message blaming a changed model.
  x = jnp.ones((1, 2))
  f = jaxuq.from_linen(_VmappedHeads(), _VmappedHeads().init(jax.random.key(0), x))
  for fn in (ex.mask_layout, ex.exact_moments):
    with pytest.raises(ValueError, match="inside a lifted transform"):
      fn(f, x)


def test_examples_treated_separately_pass_the_batch_check():
  # BatchNorm with running averages and a batch of 5: each row of the exact moments equals
  # the moments of that example enumerated alone.
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.BatchNorm(use_running_average=True)(nn.Dense(3)(x))
      return nn.Dense(2)(nn.Dropout(0.3, deterministic=True)(nn.relu(x)))

  x = jax.random.normal(jax.random.key(2), (5, 4))
  f = jaxuq.from_linen(Net(), Net().init(jax.random.key(1), x))
  whole = ex.exact_moments(f, x)
  for i in range(5):
    alone = ex.exact_moments(f, x[i : i + 1])
    np.testing.assert_allclose(whole.mean[i], alone.mean[0], rtol=1e-6)
    np.testing.assert_allclose(whole.var[i], alone.var[0], rtol=1e-5, atol=1e-9)


def test_closed_form_takes_a_partitioned_kernel_and_names_attention_dropout():
  # A kernel built with nn.with_partitioning crashed ('Partitioned' has no astype); attention
  # dropout raised Flax's bare InvalidRngError.
  class Boxed(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(4)(x)))
      init = nn.with_partitioning(nn.initializers.lecun_normal(), (None, None))
      return nn.Dense(2, kernel_init=init)(h)

  x = jax.random.normal(jax.random.key(0), (3, 2))
  f = jaxuq.from_linen(Boxed(), Boxed().init(jax.random.key(1), x))
  np.testing.assert_allclose(
    ex.closed_form_moments(f, x).var, ex.exact_moments(f, x).var, rtol=1e-5
  )

  class Attend(nn.Module):
    @nn.compact
    def __call__(self, x):
      # deterministic=True: the model runs it off, but from_linen samples it
      x = nn.MultiHeadDotProductAttention(num_heads=1, dropout_rate=0.1, deterministic=True)(x)
      return nn.Dense(2)(nn.Dropout(0.5, deterministic=True)(x))

  x = jax.random.normal(jax.random.key(0), (3, 4, 2))
  v = Attend().init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x)
  with pytest.raises(ValueError, match=r"drops attention weights \(dropout_rate=0.1\)"):
    ex.closed_form_moments(jaxuq.from_linen(Attend(), v), x)
  # Exact enumeration cannot cover its draws either.
  with pytest.raises(ValueError, match="draws random numbers besides its dropout masks"):
    ex.exact_moments(jaxuq.from_linen(Attend(), v), x[:1])


class _Wrapped(nn.Module):
  wrap: str = "none"

  @nn.compact
  def __call__(self, x):
    dense = {"remat": nn.remat(nn.Dense), "jit": nn.jit(nn.Dense)}.get(self.wrap, nn.Dense)
    h = dense(3, name="d")(x)
    if self.wrap == "noise":
      h = nn.remat(_Noise)()(h)
    return nn.Dense(1, name="out")(nn.Dropout(0.5, deterministic=True)(h))


class _Noise(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x + jax.random.normal(self.make_rng("dropout"), x.shape)


def test_lifted_transforms_that_do_not_draw_are_followed():
  # nn.remat or nn.jit around a Dense made enumeration refuse ("its key is used by remat2")
  # although nothing inside drew; a draw inside one is still refused.
  x = jax.random.normal(jax.random.key(3), (2, 2))
  variables = _Wrapped().init(jax.random.key(0), x)
  plain = ex.exact_moments(jaxuq.from_linen(_Wrapped(), variables), x)
  for wrap in ("remat", "jit"):
    got = ex.exact_moments(jaxuq.from_linen(_Wrapped(wrap), variables), x)
    np.testing.assert_allclose(got.mean, plain.mean, rtol=1e-6)
    np.testing.assert_allclose(got.var, plain.var, rtol=1e-5)
  with pytest.raises(ValueError, match="used by random_bits inside"):
    ex.exact_moments(jaxuq.from_linen(_Wrapped("noise"), variables), x)
