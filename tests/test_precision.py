"""The contract's "equal to rounding" under the matmul precision in force.

The rest of the suite runs at ``highest`` precision (tests/conftest.py). Here
the same comparison (``mc_sample`` against ``sequential_sample``) runs at JAX's
default precision, which is TF32 for float32 matmuls on NVIDIA GPUs (8-bit
exponent, 10-bit mantissa: unit roundoff ``u = 2**-11``) and float32 on CPU.
Each of the two computations of ``y = a @ w`` then lies within
``2u * (|a| @ |w|)`` of the exact product (both operands rounded once, the sum
accumulated in float32, whose error ``K * 2**-24`` relative is counted too), so
they differ by at most twice that.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxuq

TF32_U = 2.0**-11
F32_U = 2.0**-24
K = 256


def _predictive(w):
  def f(key, a):
    keep = jaxuq.keep_mask(key, a.shape, 0.5)
    return jnp.where(keep, 2.0 * a, 0.0) @ w

  return f


def _bound(key, a, w, n, u):
  keys = jax.random.split(key, n)
  masked = np.stack([np.where(jaxuq.keep_mask(k, a.shape, 0.5), 2.0 * a, 0.0) for k in keys])
  scale = np.abs(masked).astype(np.float64) @ np.abs(np.asarray(w, np.float64))
  return 2.0 * (2.0 * u + K * F32_U) * scale


@pytest.mark.parametrize(
  "precision, u", [("default", TF32_U), ("tensorfloat32", TF32_U), ("highest", F32_U)]
)
def test_mc_and_loop_differ_within_the_rounding_bound_of_the_precision(precision, u):
  key = jax.random.key(3)
  a = jax.random.normal(jax.random.key(1), (64, K))
  w = jax.random.normal(jax.random.key(2), (K, 128))
  f = _predictive(w)
  with jax.default_matmul_precision(precision):
    mc = jaxuq.mc_sample(f, key, a, num_samples=12, chunk_size=5)
    loop = jaxuq.sequential_sample(f, key, a, num_samples=12)
  diff = np.abs(np.asarray(mc, np.float64) - np.asarray(loop, np.float64))
  bound = _bound(key, a, w, 12, u)
  assert np.all(diff <= bound), float(np.max(diff / bound))


def test_the_bound_is_not_vacuous():
  # At the TF32 bound a product rounded to bfloat16 (u = 2**-8) must fail:
  # the test above can catch a precision coarser than the one it allows.
  key = jax.random.key(3)
  a = jax.random.normal(jax.random.key(1), (64, K))
  w = jax.random.normal(jax.random.key(2), (K, 128))
  f = _predictive(w)
  exact = np.asarray(jaxuq.sequential_sample(f, key, a, num_samples=4), np.float64)
  coarse = np.asarray(
    jaxuq.sequential_sample(
      lambda k, x: _predictive(w.astype(jnp.bfloat16))(k, x.astype(jnp.bfloat16)),
      key,
      a,
      num_samples=4,
    ),
    np.float64,
  )
  bound = _bound(key, a, w, 4, TF32_U)
  assert np.any(np.abs(coarse - exact) > bound)
