"""jaxuq under JAX settings users change: x64, strict dtype promotion, another PRNG default,
legacy keys, a low matmul precision. Each case failed or changed its answer before."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
from jaxuq import active, calibrate, conformal, metrics
from jaxuq._src.active.labelled import draw_unlabelled
from jaxuq._src.subsets import member_subsets

PROBS = jax.nn.softmax(jax.random.normal(jax.random.key(0), (40, 5)))
LABELS = jax.random.randint(jax.random.key(1), (40,), 0, 5)


def test_random_draws_are_the_same_under_x64():
  # int64 / float64 draws are other bits: an ensemble checkpoint resumed with x64 on trained
  # its members on other bootstrap rows (validated on rows it had trained on), silently.
  key = jax.random.key(3)
  labels = np.repeat(np.arange(4), 10)
  mask = jnp.zeros(50, bool).at[:5].set(True)
  default = (
    member_subsets(key, 30, 3).indices,
    active.balanced_seed(key, labels, 2),
    draw_unlabelled(key, mask, 7),
    conformal.aps(randomized=True).score(key, PROBS, LABELS),
  )
  with jax.enable_x64(True):
    wide = (
      member_subsets(key, 30, 3).indices,
      active.balanced_seed(key, labels, 2),
      draw_unlabelled(key, mask, 7),
      conformal.aps(randomized=True).score(key, PROBS, LABELS),
    )
  for a, b in zip(default[:3], wide[:3], strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(default[3], wide[3], rtol=1e-6)


def test_classification_reducer_runs_under_x64():
  # Its vote counts summed to int64 there: "the reducer's update changed the state's dtypes".
  f = lambda key, x: x + jax.random.normal(key, x.shape, x.dtype)  # noqa: E731
  x = jnp.zeros((5, 3), jnp.float32)
  reducer = jaxuq.classification_reducer(from_logits=True)
  want = jaxuq.mc_reduce(f, jax.random.key(0), x, num_samples=8, reducer=reducer)
  with jax.enable_x64(True):
    got = jaxuq.mc_reduce(f, jax.random.key(0), x, num_samples=8, reducer=reducer)
  for name in want:
    np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-6)


def test_library_code_passes_strict_dtype_promotion():
  # Integer counts mixed with float32 raised TypePromotionError inside the library.
  f = lambda key, x: x + jax.random.normal(key, x.shape, x.dtype)  # noqa: E731
  x = jnp.zeros((6, 2), jnp.float32)
  samples = jax.random.normal(jax.random.key(2), (16, 30))
  y = jax.random.normal(jax.random.key(3), (30,))
  loose = (
    jaxuq.mc_reduce(f, jax.random.key(0), x, num_samples=5, reducer=jaxuq.moments_reducer()),
    metrics.expected_calibration_error(PROBS, LABELS),
    calibrate.fit_quantile_recalibration(samples, y),
  )
  with jax.numpy_dtype_promotion("strict"):
    strict = (
      jaxuq.mc_reduce(f, jax.random.key(0), x, num_samples=5, reducer=jaxuq.moments_reducer()),
      metrics.expected_calibration_error(PROBS, LABELS),
      calibrate.fit_quantile_recalibration(samples, y),
    )
  for a, b in zip(jax.tree.leaves(loose), jax.tree.leaves(strict), strict=True):
    np.testing.assert_array_equal(a, b)


def test_key_messages_name_the_implementation():
  # Under jax_default_prng_impl="rbg", "use jax.random.key(seed)" made another rbg key.
  rbg = jax.random.key(0, impl="rbg")
  with pytest.raises(ValueError, match=r"impl='threefry2x32'"):
    jaxuq.mc_sample(lambda k, x: x, rbg, jnp.ones(2), num_samples=2)
  with pytest.raises(TypeError, match=r"wrap_key_data\(key, impl='threefry2x32'\)"):
    jaxuq.mc_sample(lambda k, x: x, jax.random.PRNGKey(0), jnp.ones(2), num_samples=2)


def test_dropout_layer_takes_legacy_keys_as_flax_does():
  # Flax's Dropout accepts rngs={'dropout': jax.random.PRNGKey(0)}; jaxuq.Dropout raised.
  x = jnp.ones((4, 16))
  legacy = jax.random.PRNGKey(7)
  typed = jax.random.wrap_key_data(legacy, impl="threefry2x32")
  run = lambda k: jaxuq.Dropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": k})  # noqa: E731
  np.testing.assert_array_equal(run(legacy), run(typed))
  assert 0 < float((run(legacy) == 0).mean()) < 1


class _LastLayer(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.relu(nn.Dense(8)(x))
    return nn.Dense(3)(jaxuq.Dropout(0.3)(h, deterministic=not train))


def test_closed_form_moments_use_full_precision_whatever_the_setting():
  # Its own products ran at the ambient precision: TF32 or "bfloat16" on a GPU would have put
  # 1e-3 to 1e-2 relative errors into "exact" variances. (The CPU ignores precision, so the
  # program is read: every product of the moments asks for HIGHEST.)
  model = _LastLayer()
  x = jnp.ones((2, 4))
  variables = model.init(jax.random.key(0), x)
  f = jaxuq.from_linen(model, variables)
  with jax.default_matmul_precision("bfloat16"):
    text = (
      jax.jit(lambda x: jaxuq.exact.closed_form_moments(f, x, covariance=True)).lower(x).as_text()
    )
  assert text.count("HIGHEST") >= 2, text[:2000]
