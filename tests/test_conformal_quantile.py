"""The split conformal quantile: its rank, the smallest calibration set, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxuq import conformal


@pytest.mark.parametrize(
  ("n", "alpha", "k"),
  [
    (99, 0.1, 90),  # 100 * 0.9 = 90 exactly
    (100, 0.1, 91),  # ceil(101 * 0.9 = 90.9)
    (9, 0.1, 9),  # ceil(10 * 0.9 = 9): the smallest n for alpha = 0.1
    (9, 0.3, 7),  # 10 * 0.7 = 7 exactly; the binary value of 0.3 (just below it) gives 8
    (9, 0.7, 3),  # 10 * 0.3 = 3; float arithmetic gives 10 * 0.30000000000000004 -> 4
    (19, 0.05, 19),  # ceil(20 * 0.95 = 19)
    (1000, 0.01, 991),  # ceil(1001 * 0.99 = 990.99)
  ],
)
def test_quantile_rank_by_hand(n, alpha, k):
  assert conformal.quantile_rank(n, alpha) == k


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.2, 0.1, 0.05, 0.01, 0.003, 0.37])
def test_min_calibration_size_is_the_smallest_that_works(alpha):
  m = conformal.min_calibration_size(alpha)
  assert conformal.quantile_rank(m, alpha) <= m
  assert m == 1 or conformal.quantile_rank(m - 1, alpha) > m - 1
  conformal.calibrate(jnp.arange(float(m)), alpha)
  if m > 1:
    with pytest.raises(ValueError, match=f"at least {m} calibration scores"):
      conformal.calibrate(jnp.arange(float(m - 1)), alpha)


def test_calibrate_by_hand():
  scores = jnp.array([0.3, 0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])  # n = 10
  # alpha = 0.2: k = ceil(11 * 0.8 = 8.8) = 9 -> the 9th smallest of 0.0..0.9 is 0.8.
  assert float(conformal.calibrate(scores, 0.2).threshold) == pytest.approx(0.8)
  # alpha = 0.5: k = ceil(5.5) = 6 -> 0.5. alpha = 1/11 ~ 0.0909: k = 10 -> the largest, 0.9.
  assert float(conformal.calibrate(scores, 0.5).threshold) == pytest.approx(0.5)
  assert float(conformal.calibrate(scores, 0.0909091).threshold) == pytest.approx(0.9)


def test_calibrate_ties_and_integer_scores():
  # n = 4, alpha = 0.2: k = ceil(5 * 0.8) = 4, the largest of [1, 1, 2, 2] -> 2.
  t = conformal.calibrate(jnp.array([2, 1, 2, 1]), 0.2)
  assert t.threshold.dtype == jnp.float32 and float(t.threshold) == 2.0


def test_calibrate_jit_and_vmap_agree():
  scores = jax.random.normal(jax.random.key(0), (3, 50))
  eager = [conformal.calibrate(s, 0.1).threshold for s in scores]
  jitted = jax.jit(conformal.calibrate, static_argnames="alpha")(scores[0], alpha=0.1)
  batched = jax.vmap(lambda s: conformal.calibrate(s, 0.1))(scores)
  assert float(jitted.threshold) == float(eager[0])
  np.testing.assert_array_equal(batched.threshold, np.array(eager))
  # k = ceil(51 * 0.9) = 46: the 46th smallest.
  np.testing.assert_array_equal(batched.threshold, np.sort(np.asarray(scores), axis=1)[:, 45])


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_alpha_outside_the_unit_interval(alpha):
  with pytest.raises(ValueError, match="alpha must be in \\(0, 1\\)"):
    conformal.calibrate(jnp.arange(100.0), alpha)
  with pytest.raises(ValueError, match="alpha"):
    conformal.min_calibration_size(alpha)


@pytest.mark.parametrize("alpha", [True, "0.1", None])
def test_alpha_of_the_wrong_type(alpha):
  with pytest.raises(TypeError, match="alpha must be a float"):
    conformal.calibrate(jnp.arange(100.0), alpha)


def test_calibration_set_too_small_names_alpha_n_and_the_fix():
  with pytest.raises(
    ValueError, match=r"alpha=0.01 needs at least 99 calibration scores, got n=50"
  ):
    conformal.calibrate(jnp.arange(50.0), 0.01)
  with pytest.raises(ValueError, match="alpha >= 0.01961"):  # 1 / 51
    conformal.calibrate(jnp.arange(50.0), 0.01)


def test_bad_scores():
  with pytest.raises(ValueError, match=r"scores must have shape \(n,\)"):
    conformal.calibrate(jnp.ones((4, 5)), 0.5)
  with pytest.raises(ValueError, match="scores must not be empty"):
    conformal.calibrate(jnp.ones(0), 0.5)
  with pytest.raises(ValueError, match="scores must be finite"):
    conformal.calibrate(jnp.array([0.1, jnp.nan, 0.3]), 0.5)
  with pytest.raises(TypeError, match="scores must be real"):
    conformal.calibrate(jnp.ones(3, jnp.complex64), 0.5)


def test_threshold_must_be_a_scalar():
  method = conformal.lac()
  with pytest.raises(ValueError, match="threshold must be a ConformalThreshold"):
    method.predict_set(jnp.ones(3), jnp.full((3, 2), 0.5))
