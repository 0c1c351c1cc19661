"""Closed-form moments: agree with enumeration (hypothesis), refuse other structures."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxuq
import jaxuq.exact as ex


class LastLayer(nn.Module):
  """in -> Dense(width) tanh -> Dense(width) relu -> Dropout(rate) -> Dense(outputs)."""

  width: int
  outputs: int
  rate: float
  flax_dropout: bool = False

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(self.width)(x))
    h = nn.relu(nn.Dense(self.width)(h))
    layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
    return nn.Dense(self.outputs)(layer(self.rate, deterministic=True)(h))


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@settings(max_examples=6, deadline=None)
@given(
  width=st.integers(1, 6),
  outputs=st.integers(1, 3),
  rate=st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]),
  batch=st.integers(1, 3),
  seed=st.integers(0, 2**16),
  flax_dropout=st.booleans(),
)
def test_closed_form_equals_enumeration(width, outputs, rate, batch, seed, flax_dropout):
  with jax.enable_x64(True):
    model = LastLayer(width, outputs, rate, flax_dropout)
    x = jax.random.normal(jax.random.key(seed), (batch, 2), jnp.float64)
    f = jaxuq.from_linen(model, _f64(model.init(jax.random.key(seed + 1), x)))
    cf = ex.closed_form_moments(f, x, covariance=True)
    en = ex.exact_moments(f, x, covariance=True)
  assert type(cf) is type(en) is ex.Moments  # one result type for both methods
  assert cf.mean.dtype == jnp.float64
  scale = 1.0 + float(np.abs(en.cov).max())
  np.testing.assert_allclose(cf.mean, en.mean, rtol=1e-9, atol=1e-9 * scale)
  np.testing.assert_allclose(cf.var, en.var, rtol=1e-9, atol=1e-9 * scale)
  np.testing.assert_allclose(cf.cov, en.cov, rtol=1e-9, atol=1e-9 * scale)
  np.testing.assert_allclose(np.diagonal(cf.cov, axis1=-2, axis2=-1), cf.var, rtol=1e-12)


def test_tiny_closed_form_and_the_deterministic_pass():
  f, x = ex.tiny_predictive(), ex.tiny_input()
  m = ex.closed_form_moments(f, x)
  assert m.cov is None
  np.testing.assert_allclose(m.mean, f.module.apply(f.variables, x), rtol=0)
  np.testing.assert_allclose(m.var[0, 0], (110**2 + 150**2) * 0.7 / 0.3, rtol=1e-6)


def test_large_batch_any_leading_shape():
  model = LastLayer(8, 2, 0.5)
  x = jnp.ones((4, 5, 2))  # (batch, positions, features): per-position moments
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x))
  m = ex.closed_form_moments(f, x, covariance=True)
  assert m.mean.shape == m.var.shape == (4, 5, 2) and m.cov.shape == (4, 5, 2, 2)


class TwoDropouts(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(4)(x)))
    return nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(4)(h))))


class DropoutEarly(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jaxuq.Dropout(0.5, deterministic=True)(nn.relu(nn.Dense(4)(x)))
    return nn.Dense(1)(nn.relu(nn.Dense(4)(h)))


class ScaledOutput(nn.Module):
  @nn.compact
  def __call__(self, x):
    return 2.0 * nn.Dense(1)(jaxuq.Dropout(0.5, deterministic=True)(nn.Dense(4)(x)))


class FeatureBroadcast(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(jaxuq.Dropout(0.5, broadcast_dims=(-1,), deterministic=True)(nn.Dense(4)(x)))


class RateZeroThenLast(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jaxuq.Dropout(0.0, deterministic=True)(nn.relu(nn.Dense(4)(x)))
    return nn.Dense(1)(jaxuq.Dropout(0.25, deterministic=True)(h))


@pytest.mark.parametrize(
  "model, match",
  [
    (TwoDropouts(), "runs 2 dropout layers"),
    (DropoutEarly(), "the Dense layer it feeds is not the last"),
    (ScaledOutput(), "does not return its output as it is"),
    (FeatureBroadcast(), "shared along the feature axis"),
  ],
)
def test_other_structures_are_refused(model, match):
  x = jnp.ones((3, 2))
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x))
  with pytest.raises(ValueError, match=match):
    ex.closed_form_moments(f, x)


def test_rate_zero_layers_are_ignored():
  model = RateZeroThenLast()
  x = jnp.ones((3, 2))
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x))
  cf = ex.closed_form_moments(f, x)
  en = ex.exact_moments(f, x)
  np.testing.assert_allclose(cf.var, en.var, rtol=1e-5)


def test_nnx_and_plain_functions_are_refused():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.drop = nnx.Dropout(0.5, rngs=rngs)
      self.out = nnx.Linear(2, 1, rngs=rngs)

    def __call__(self, x):
      return self.out(self.drop(x))

  with pytest.raises(TypeError, match="nnx.Dropout cannot take"):
    ex.closed_form_moments(jaxuq.from_nnx(Net(nnx.Rngs(0))), jnp.ones((1, 2)))
  with pytest.raises(TypeError, match="from_linen"):
    ex.closed_form_moments(lambda key, x: x, jnp.ones((1, 2)))


class _InputDropout(nn.Module):
  """x -> Dropout(rate) -> Dense(2): the closed form's simplest model."""

  rate: float = 0.5
  broadcast_dims: tuple = ()
  flax_dropout: bool = False

  @nn.compact
  def __call__(self, x):
    layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
    return nn.Dense(2)(layer(self.rate, self.broadcast_dims, deterministic=True)(x))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_moments_are_computed_in_float32(dtype):
  # h**2 was taken in float16 (300**2 > 65504: an infinite variance of 45); in bfloat16 var
  # (a matmul) and cov's diagonal (an einsum) were rounded apart (18 against 18.125).
  x = jnp.array([[300.0, 200.0]], dtype)
  kernel = jnp.array([[0.01, 0.02], [0.03, -0.01]], dtype)
  v = {"params": {"Dense_0": {"kernel": kernel, "bias": jnp.zeros((2,), dtype)}}}
  f = jaxuq.from_linen(_InputDropout(), v)
  m = ex.closed_form_moments(f, x, covariance=True)
  only_var = ex.closed_form_moments(f, x)
  # float64 NumPy from the same rounded inputs and weights; rate 0.5: r / (1 - r) = 1
  h, w = np.asarray(x, np.float64)[0], np.asarray(kernel, np.float64)
  cov = np.einsum("k,ko,kp->op", h**2, w, w)
  eps = float(jnp.finfo(dtype).eps)
  assert m.var.dtype == m.cov.dtype == only_var.var.dtype == dtype
  np.testing.assert_allclose(np.asarray(m.cov, np.float64)[0], cov, rtol=eps)
  np.testing.assert_allclose(np.asarray(only_var.var, np.float64)[0], np.diag(cov), rtol=eps)
  np.testing.assert_array_equal(
    np.asarray(m.var, np.float64), np.diagonal(np.asarray(m.cov, np.float64), axis1=-2, axis2=-1)
  )


@pytest.mark.parametrize(
  "rate, match",
  [
    (1.0, r"rate must be in \[0, 1\)"),
    (-0.5, r"rate must be in \[0, 1\)"),
    (1.5, r"rate must be in \[0, 1\)"),
    (1 - 1e-9, r"keep probability 1 - rate of at least 2\*\*-20"),
  ],
)
def test_dropout_rates_are_checked_as_the_samplers_check_them(rate, match):
  # The closed form read the rate unchecked: -0.5 and 1.5 gave negative variances, 1.0 a bare
  # ZeroDivisionError, 1 - 1e-9 a variance of 4.8e7, where mc_sample refuses all four.
  x = jnp.ones((2, 2))
  model = _InputDropout(rate, flax_dropout=True)
  f = jaxuq.from_linen(model, model.init(jax.random.key(0), x))
  with pytest.raises(ValueError, match=match):
    jaxuq.mc_sample(f, jax.random.key(0), x, num_samples=2)
  with pytest.raises(ValueError, match=match):
    ex.closed_form_moments(f, x)


def test_dropout_inputs_are_checked_as_the_samplers_check_them():
  # An int32 input and broadcast_dims=(4,) on a rank-3 input (read as 4 % 3) gave numbers.
  v = _InputDropout().init(jax.random.key(0), jnp.ones((2, 3)))
  f = jaxuq.from_linen(_InputDropout(), v)
  for run in (
    lambda x: jaxuq.mc_sample(f, jax.random.key(0), x, num_samples=2),
    lambda x: ex.closed_form_moments(f, x),
  ):
    with pytest.raises(TypeError, match="got an input of dtype int32"):
      run(jnp.ones((2, 3), jnp.int32))
  g = jaxuq.from_linen(_InputDropout(broadcast_dims=(4,)), v)
  for run in (
    lambda x: jaxuq.mc_sample(g, jax.random.key(0), x, num_samples=2),
    lambda x: ex.closed_form_moments(g, x),
  ):
    with pytest.raises(ValueError, match=r"broadcast_dims=\(4,\), but its input has rank 3"):
      run(jnp.ones((2, 2, 3)))
