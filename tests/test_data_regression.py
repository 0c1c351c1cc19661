"""The regression data of the first reference experiment: exact grids and targets."""

import jax
import numpy as np
import pytest

from jaxuq.data import (
  in_training_range,
  regression_target,
  regression_test_inputs,
  regression_train_data,
)


def test_train_grid_is_exact():
  x, y = regression_train_data()
  assert x.shape == y.shape == (2000, 1)
  assert x.dtype == y.dtype == np.float32
  ticks = np.concatenate([np.arange(-2000, -1500), np.arange(-1000, 500)])
  np.testing.assert_array_equal(x[:, 0], (ticks / 1000).astype(np.float32))
  assert np.sum(x < -1.5) == 500 and np.sum(x >= -1.0) == 1500
  assert not np.any((x >= -1.5) & (x < -1.0))  # the gap
  assert x.min() == np.float32(-2.0) and x.max() == np.float32(0.499)


def test_test_grid_is_exact():
  x = regression_test_inputs()
  assert x.shape == (5000, 1) and x.dtype == np.float32
  np.testing.assert_array_equal(x[:, 0], (np.arange(-2000, 3000) / 1000).astype(np.float32))
  assert np.sum(in_training_range(x)) == 2000


def test_target_closed_form():
  x, y = regression_train_data()
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(y, np.sin(2 * np.pi * x64) - x64, rtol=0, atol=1e-6)
  np.testing.assert_allclose(
    regression_target(np.array([0.0, 0.25, -0.5, 1.0])), [0.0, 0.75, 0.5, -1.0], atol=1e-6
  )


def test_noise_is_uniform_in_bounds_and_keyed():
  key = jax.random.key(3)
  x, y0 = regression_train_data()
  _, y1 = regression_train_data(key, noise=0.2)
  _, y2 = regression_train_data(key, noise=0.2)
  _, y3 = regression_train_data(jax.random.key(4), noise=0.2)
  u = (y1 - y0).astype(np.float64)
  np.testing.assert_array_equal(y1, y2)
  assert not np.array_equal(y1, y3)
  assert np.all(np.abs(u) <= 0.2 + 1e-6)
  # Uniform(-0.2, 0.2): mean 0 and sd 0.2/sqrt(3); 4 standard errors with n = 2000.
  sd = 0.2 / np.sqrt(3)
  assert abs(u.mean()) < 4 * sd / np.sqrt(2000)
  assert abs(u.std() - sd) < 4 * sd / np.sqrt(2 * 2000)


def test_bad_arguments():
  with pytest.raises(ValueError, match="needs a key"):
    regression_train_data(noise=0.1)
  with pytest.raises(ValueError, match="noise"):
    regression_train_data(jax.random.key(0), noise=-1.0)
  with pytest.raises(TypeError, match="noise"):
    regression_train_data(jax.random.key(0), noise="0.1")
  with pytest.raises(TypeError, match="typed PRNG key"):
    regression_train_data(0, noise=0.1)


def test_in_training_range_off_the_grid_matches_the_intervals():
  # Off the 0.001 grid too: [-2, -1.5) and [-1, 0.5), half-open, compared exactly.
  x = np.array([-2.0005, -2.0, -1.5004, -1.5, -1.0004, -1.0, 0.4996, 0.5, 0.5004, np.nan])
  expected = ((x >= -2) & (x < -1.5)) | ((x >= -1) & (x < 0.5))
  np.testing.assert_array_equal(in_training_range(x), expected)
  assert in_training_range(x).tolist() == [False, True, True, False, False, True, True, False,
                                           False, False]  # fmt: skip
  grid = regression_test_inputs()  # float32 grid points: the same as their exact thousandths
  k = np.arange(-2000, 3000)
  np.testing.assert_array_equal(
    in_training_range(grid)[:, 0], ((k >= -2000) & (k < -1500)) | ((k >= -1000) & (k < 500))
  )
