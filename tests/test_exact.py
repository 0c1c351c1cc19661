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
from jaxuq._src import dropout as dropout_module
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
  d = merge_values(values, probs, None)  # default: 4 eps relative to the larger value
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


def _anchored_reference(values, probs, atol, eps):
  """The documented merge rule, spelled out in plain Python: per element, sort and start a
  cluster at each value beyond the tolerance of the cluster's first (anchor) value; outputs in
  the same cluster of every element are one value (probability-weighted means)."""
  keep = probs > 0
  flat = values.reshape(len(values), -1)[keep].astype(np.float64)
  p = probs[keep]
  ids = np.zeros(flat.shape, int)
  reps = []
  for j in range(flat.shape[1]):
    order = sorted(range(len(flat)), key=lambda i: flat[i, j])
    anchor, cluster, members = None, -1, []
    for i in order:
      a, b = anchor, flat[i, j]
      tol = atol if atol is not None else 4 * eps * max(abs(a), abs(b)) if a is not None else 0
      if a is None or b - a > tol:
        anchor, cluster = b, cluster + 1
        members.append([])
      ids[i, j] = cluster
      members[-1].append(i)
    reps.append([np.dot(p[m], flat[m, j]) / p[m].sum() for m in members])
  groups = {}
  for i in range(len(flat)):
    groups.setdefault(tuple(ids[i]), []).append(i)
  keys = sorted(groups)
  got_v = np.array([[reps[j][k[j]] for j in range(flat.shape[1])] for k in keys])
  got_p = np.array([p[groups[k]].sum() for k in keys])
  return got_v.reshape((-1, *values.shape[1:])), got_p


def test_merges_are_anchored_not_chained():
  # Each value within atol of its neighbour: chaining merged all five into one value.
  values = np.array([[0.0], [0.6], [1.2], [1.8], [2.4]])
  probs = np.full(5, 0.2)
  d = merge_values(values, probs, 1.0)
  np.testing.assert_allclose(d.values[:, 0], [0.3, 1.5, 2.4], rtol=1e-15)
  np.testing.assert_allclose(d.probs, [0.4, 0.4, 0.2], rtol=1e-15)
  # Dense random runs, scalar and vector, against the plain-Python rule.
  rng = np.random.default_rng(0)
  for shape, atol in (((400, 1), 0.01), ((400, 3), 0.05), ((300, 2), None)):
    v = np.round(rng.normal(size=shape) * 40) / 40 + rng.normal(size=shape) * 1e-3
    v = v.astype(np.float16 if atol is None else np.float32)
    p = rng.dirichlet(np.ones(shape[0]))
    d = merge_values(v, p, atol)
    want_v, want_p = _anchored_reference(v, p, atol, float(np.finfo(v.dtype).eps))
    np.testing.assert_allclose(d.values, want_v, rtol=1e-12)
    np.testing.assert_allclose(d.probs, want_p, rtol=1e-12)
    assert abs(d.probs.sum() - 1) < 1e-12


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(x))


def test_float16_distribution_keeps_distinct_outputs_apart():
  # float16, 12 units: the default atol (64 eps times the largest output) chained 2,860
  # distinct outputs spanning 3.78 into one value of probability 1 (variance 0).
  x = jax.random.normal(jax.random.key(0), (1, 12)).astype(jnp.float16)
  v = jax.tree.map(lambda a: a.astype(jnp.float16), _Linear().init(jax.random.key(1), x))
  (d,) = ex.exact_distribution(jaxuq.from_linen(_Linear(), v), x)
  # float64 NumPy from the same float16 inputs and weights: var = sum_k (x_k w_k)**2 r/(1-r)
  xw = np.asarray(x, np.float64)[0] * np.asarray(v["params"]["Dense_0"]["kernel"], np.float64)[:, 0]
  mean = xw.sum() + float(v["params"]["Dense_0"]["bias"][0])
  var = np.sum(xw**2)
  got_mean = np.dot(d.probs, d.values[:, 0])
  got_var = np.dot(d.probs, (d.values[:, 0] - got_mean) ** 2)
  np.testing.assert_allclose(got_mean, mean, rtol=0, atol=1e-2)
  np.testing.assert_allclose(got_var, var, rtol=1e-2)
  assert d.probs.max() < 0.01 and len(d.probs) > 1000
  assert np.all(np.diff(d.values[:, 0]) > 0)


def test_vector_outputs_merge_elementwise():
  # Rows (0.42, 0), (0.42000002, 0), (0.42, 2), (0.42000002, 2): after a lexicographic sort
  # the near-equal rows are not neighbours, so eight values of p = 1/8 came back, not six.
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dense(3, use_bias=False)(x)
      return nn.Dense(2, use_bias=False)(jaxuq.Dropout(0.5, deterministic=True)(h))

  v = {
    "params": {
      "Dense_0": {"kernel": jnp.array([[0.3, 0.21, 1.0]])},
      "Dense_1": {"kernel": jnp.array([[0.7, 0.0], [1.0, 0.0], [0.0, 1.0]])},
    }
  }
  (d,) = ex.exact_distribution(jaxuq.from_linen(Net(), v), jnp.array([[1.0]]))
  # float64: y0 = 2 (0.21 k0 + 0.21 k1), y1 = 2 k2 with k ~ Bernoulli(1/2) each
  np.testing.assert_allclose(
    d.values, [[0, 0], [0, 2], [0.42, 0], [0.42, 2], [0.84, 0], [0.84, 2]], atol=1e-6
  )
  np.testing.assert_allclose(d.probs, [1 / 8, 1 / 8, 1 / 4, 1 / 4, 1 / 8, 1 / 8], rtol=1e-15)


def test_bfloat16_default_tolerance_is_not_zero():
  # np.dtype(bfloat16).kind is 'V': the default atol became 0 and 1 ulp apart stayed apart.
  values = jnp.array([[0.0], [1.265625], [1.2578125], [2.515625]], jnp.bfloat16)
  d = merge_values(np.asarray(values), np.full(4, 0.25), None)
  np.testing.assert_allclose(d.values[:, 0], [0.0, (1.265625 + 1.2578125) / 2, 2.515625])
  np.testing.assert_allclose(d.probs, [0.25, 0.5, 0.25])
  # float16 and bfloat16 one ulp apart merge; 16 ulps apart do not.
  for dtype in (jnp.float16, jnp.bfloat16):
    one = float(jnp.finfo(dtype).eps)
    vals = np.asarray(jnp.array([[1.0], [1.0 + one], [1.0 + 16 * one]], dtype))
    assert merge_values(vals, np.full(3, 1 / 3), None).probs.tolist() == [2 / 3, 1 / 3]


def test_masks_of_probability_zero_are_left_out():
  # A rate of 1e-17 keeps with probability 1.0 in float64: masks dropping its unit have p = 0,
  # and their group came back as a NaN value of probability 0.
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = jaxuq.Dropout(1e-17, deterministic=True)(x)
      h = nn.Dense(1)(x)  # Dense_0
      return nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(h))

  v = {
    "params": {
      "Dense_0": {"kernel": jnp.array([[3.0]]), "bias": jnp.array([1.0])},
      "Dense_1": {"kernel": jnp.array([[1.0]]), "bias": jnp.array([0.0])},
    }
  }
  (d,) = ex.exact_distribution(jaxuq.from_linen(Net(), v), jnp.array([[1.0]]), atol=0)
  # (3 * 1 + 1) / (1 - 0.5) = 8 when kept, 0 when dropped, each with probability 1/2
  np.testing.assert_array_equal(d.values[:, 0], [0.0, 8.0])
  np.testing.assert_array_equal(d.probs, [0.5, 0.5])


class _BatchReduced(nn.Module):
  keepdims: bool = False

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(4)(x))))
    return y.mean(0, keepdims=self.keepdims)


@pytest.mark.parametrize("keepdims", [False, True])
def test_outputs_reduced_over_the_batch_are_refused(keepdims):
  # The batch check skipped outputs without a batch axis: shared-mask enumeration gave the
  # batch mean a variance of 0.179 where mc_sample's per-example masks give 0.075.
  x = jax.random.normal(jax.random.key(0), (8, 2))
  model = _BatchReduced(keepdims)
  f = jaxuq.from_linen(model, model.init(jax.random.key(1), x))
  shape = r"\(1, 1\)" if keepdims else r"\(1,\)"
  match = rf"the model's output has shape {shape}, without a leading batch axis of size 8"
  for run in (ex.exact_moments, ex.enumerate_outputs, ex.exact_distribution):
    with pytest.raises(ValueError, match=match):
      run(f, x)
  # One example: its own masks are the batch's, so it is enumerated; float64 NumPy check.
  one = ex.exact_moments(f, x[:1])
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), f.variables["params"])
  h = np.maximum(np.asarray(x[:1], np.float64) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
  np.testing.assert_allclose(
    one.var.ravel(), np.sum((h[0] * p["Dense_0"]["kernel"][:, 0]) ** 2), rtol=1e-5
  )


class _ScalarOut(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(3)(x))))[:, 0]


def test_covariance_needs_an_output_axis():
  # Outputs of shape (batch,): the covariance was taken across the examples, (2, 2) with an
  # off-diagonal 0.039, where per-example masks make it 0.
  x = jnp.array([[1.0], [2.0]])
  f = jaxuq.from_linen(_ScalarOut(), _ScalarOut().init(jax.random.key(0), x))
  with pytest.raises(
    ValueError, match=r"covariance=True needs outputs with an axis after the batch"
  ):
    ex.exact_moments(f, x, covariance=True)
  m = ex.exact_moments(f, x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), f.variables["params"])
  h = np.maximum(np.asarray(x, np.float64) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
  np.testing.assert_allclose(m.var, np.sum((h * p["Dense_0"]["kernel"][:, 0]) ** 2, 1), rtol=1e-5)
  # The closed form's covariance is across the final Dense axis; this model is refused there.
  with pytest.raises(ValueError, match="does not return its output as it is"):
    ex.closed_form_moments(f, x, covariance=True)


class _ArrayRate(nn.Module):
  rate: object

  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(nn.Dropout(self.rate, deterministic=True)(nn.relu(nn.Dense(3)(x))))


def test_flax_dropout_rate_given_as_an_array():
  # nn.Dropout(rate=jnp.array(0.3)): `module.rate > 0.0` became a tracer inside jit.
  x = jax.random.normal(jax.random.key(0), (2, 2))
  v = _ArrayRate(0.3).init(jax.random.key(1), x)
  f = jaxuq.from_linen(_ArrayRate(jnp.array(0.3)), v)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"])
  h = np.maximum(np.asarray(x, np.float64) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
  var = np.einsum("bk,ko->bo", h**2, p["Dense_0"]["kernel"] ** 2) * 0.3 / 0.7
  np.testing.assert_allclose(ex.exact_moments(f, x).var, var, rtol=1e-5)
  np.testing.assert_allclose(ex.closed_form_moments(f, x).var, var, rtol=1e-5)
  # A traced rate (the layer built inside jit) cannot fix masks: a clear error where every
  # path reads the rate (the enumeration's mask check, discovery, the closed form).
  with pytest.raises(TypeError, match=r"Dropout has a traced rate"):
    jax.jit(lambda r: dropout_module.layer_rate(nn.Dropout(r)) * r)(0.3)


def test_dropout_on_a_zero_width_input_needs_no_mask():
  # Dropout on x[:, :0] has no unit: discover gave it no mask, and enumeration then said it
  # "ran without an explicit mask" (inside a lifted transform).
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      z = jaxuq.Dropout(0.5, deterministic=True)(x[:, :0])
      h = jaxuq.Dropout(0.5, deterministic=True)(x)
      return nn.Dense(1)(jnp.concatenate([z, h], -1))

  x = jnp.array([[1.0, -2.0], [0.5, 3.0]])
  f = jaxuq.from_linen(Net(), Net().init(jax.random.key(0), x))
  assert ex.mask_layout(f, x).num_units == 2
  m = ex.exact_moments(f, x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), f.variables["params"])
  xw = np.asarray(x, np.float64) * p["Dense_0"]["kernel"][:, 0]
  np.testing.assert_allclose(m.mean[:, 0], xw.sum(1) + p["Dense_0"]["bias"][0], rtol=1e-6)
  np.testing.assert_allclose(m.var[:, 0], np.sum(xw**2, 1), rtol=1e-5)  # r / (1 - r) = 1


def test_nested_list_inputs_are_arrays():
  # mc_sample takes [[2.0]]; exact_* said "got none", closed_form a TracerArrayConversionError.
  f = ex.tiny_predictive()
  mean = np.dot(TABLE_PROBS, TABLE_OUTPUTS)
  var = np.dot(TABLE_PROBS, (np.array(TABLE_OUTPUTS) - mean) ** 2)
  for m in (ex.exact_moments(f, [[2.0]]), ex.closed_form_moments(f, [[2.0]])):
    np.testing.assert_allclose(m.mean[0, 0], mean, rtol=1e-6)
    np.testing.assert_allclose(m.var[0, 0], var, rtol=1e-6)
  (d,) = ex.exact_distribution(f, [[2.0]])
  np.testing.assert_allclose(d.values[:, 0], sorted(TABLE_OUTPUTS), rtol=1e-6)
  assert ex.mask_layout(f, [[2.0]]).num_units == 2
  np.testing.assert_allclose(
    ex.enumerate_outputs(f, [[2.0]]).outputs[:, 0, 0], TABLE_OUTPUTS, rtol=1e-6
  )


def test_max_units_takes_numpy_integers_not_bools():
  f, _, x = _two_layer()
  assert ex.exact_moments(f, x, max_units=np.int64(5)).mean.shape == (3, 1)
  with pytest.raises(ValueError, match=r"2\^5 = 32 masks.*2\^4"):
    ex.exact_moments(f, x, max_units=np.int32(4))
  for bad in (True, np.bool_(True), 4.0, -1):
    with pytest.raises(ValueError, match="max_units must be a non-negative int"):
      ex.exact_moments(f, x, max_units=bad)
