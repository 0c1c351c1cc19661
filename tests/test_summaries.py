"""predictive_mean, predictive_std and summarize against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq


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
