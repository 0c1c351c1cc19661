"""predictive_mean, predictive_std and summarize against NumPy, on arrays and pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq
from tests.jit_variants import all_variants


def test_summaries_match_numpy():
  s = np.asarray(jax.random.normal(jax.random.key(0), (50, 4, 3)), dtype=np.float32)
  np.testing.assert_allclose(jaxuq.predictive_mean(s), s.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jaxuq.predictive_std(s), s.std(0), rtol=1e-5)
  np.testing.assert_allclose(jaxuq.predictive_std(s, ddof=1), s.std(0, ddof=1), rtol=1e-5)
  summ = jaxuq.summarize(s, levels=(0.05, 0.5, 0.95))
  np.testing.assert_allclose(
    summ.quantiles, np.quantile(s, [0.05, 0.5, 0.95], axis=0), rtol=1e-5, atol=1e-6
  )
  assert summ.quantiles.shape == (3, 4, 3)


def test_summaries_under_jit():
  s = jnp.arange(12.0).reshape(4, 3)
  out = jax.jit(jaxuq.summarize)(s)
  np.testing.assert_allclose(out.mean, [4.5, 5.5, 6.5])
  np.testing.assert_allclose(out.std, np.std(np.arange(12.0).reshape(4, 3), 0), rtol=1e-6)


def test_bad_summary_input():
  with pytest.raises(ValueError, match="leading sample axis"):
    jaxuq.predictive_mean(jnp.zeros((0, 3)))
  with pytest.raises(ValueError, match="ddof"):
    jaxuq.predictive_std(jnp.zeros((1, 3)), ddof=1)
  with pytest.raises(ValueError, match="levels"):
    jaxuq.summarize(jnp.zeros((4, 3)), levels=(0.5, 1.5))


def _tree_samples():
  rng = np.random.default_rng(1)
  return {
    "heads": (rng.normal(size=(30, 4)), rng.normal(size=(30, 4, 2)) * 3.0),
    "nested": {"scale": rng.random((30,)) + 1.0},
  }


@all_variants
@pytest.mark.parametrize("container", ["tuple", "dict", "nested"])
def test_summaries_work_leaf_by_leaf(variant, container):
  """A tuple of heads is two outputs, not one stacked array; dicts and nesting work too."""
  full = _tree_samples()
  samples = {
    "tuple": full["heads"],
    "dict": {"mean": full["heads"][0], "logvar": full["heads"][1]},
    "nested": full,
  }[container]
  samples = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), samples)
  mean = variant(jaxuq.predictive_mean)(samples)
  std = variant(jaxuq.predictive_std)(samples, ddof=1)
  summ = variant(jaxuq.summarize)(samples, levels=(0.1, 0.9))
  assert jax.tree.structure(mean) == jax.tree.structure(samples)
  assert jax.tree.structure(summ.quantiles) == jax.tree.structure(samples)
  for leaf, m, s, sm, ss, q in zip(
    jax.tree.leaves(samples),
    jax.tree.leaves(mean),
    jax.tree.leaves(std),
    jax.tree.leaves(summ.mean),
    jax.tree.leaves(summ.std),
    jax.tree.leaves(summ.quantiles),
    strict=True,
  ):
    ref = np.asarray(leaf, np.float64)
    np.testing.assert_allclose(m, ref.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, ref.std(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(sm, ref.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ss, ref.std(0), rtol=1e-5)
    np.testing.assert_allclose(q, np.quantile(ref, [0.1, 0.9], axis=0), rtol=1e-5, atol=1e-6)


def test_bad_pytrees():
  with pytest.raises(ValueError, match=r"same number of samples.*\[0\]: 4, .*\[1\]: 3"):
    jaxuq.predictive_mean((jnp.zeros((4, 2)), jnp.zeros((3, 2))))
  with pytest.raises(ValueError, match=r"samples\['b'\] must have a leading sample axis"):
    jaxuq.predictive_std({"a": jnp.zeros((4, 2)), "b": jnp.zeros(())})
  with pytest.raises(TypeError, match=r"samples\[0\]\[0\] must be an array.*jnp.asarray"):
    jaxuq.summarize([[1.0, 2.0], [3.0, 4.0]])
  with pytest.raises(ValueError, match="array or a pytree of arrays"):
    jaxuq.predictive_mean({})
  with pytest.raises(TypeError, match="real"):
    jaxuq.predictive_mean(jnp.ones((3, 2), jnp.complex64))


def test_integers_beyond_float32_precision_are_refused():
  # int32 samples above 2**24 were rounded to float32 before the mean and the spread:
  # [[16777217, 16777219], [16777218, 16777220]] gave std [1, 0] for [0.5, 0.5].
  s = jnp.array([[16777217, 16777219], [16777218, 16777220]], jnp.int32)
  for fn in (jaxuq.predictive_mean, jaxuq.predictive_std):
    with pytest.raises(ValueError, match=r"integers up to 16777220 .* beyond 2\*\*24"):
      fn(s)
  np.testing.assert_allclose(jaxuq.predictive_std(s - 2**24), [0.5, 0.5])
  small = jnp.array([[1, 3], [2, 4]], jnp.int32)
  np.testing.assert_allclose(jaxuq.predictive_std(small), [0.5, 0.5])
  np.testing.assert_allclose(
    jaxuq.predictive_mean(-(2**24) + small), [-(2**24) + 1.5, -(2**24) + 3.5]
  )
