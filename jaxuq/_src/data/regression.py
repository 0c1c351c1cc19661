"""The 1-D regression data of the first reference experiment (SEEDS.md, part B).

Inputs lie on grids of step 0.001, built from integers (``k / 1000``) so that
the point counts are exact, unlike ``np.arange(-2, -1.5, 0.001)`` whose length
depends on floating-point rounding.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np

from jaxuq._src.keys import check_key

# Training intervals [start, stop) in thousandths: [-2, -1.5) and [-1, 0.5).
TRAIN_INTERVALS = ((-2000, -1500), (-1000, 500))
# Test interval [-2, 3) in thousandths.
TEST_INTERVAL = (-2000, 3000)


def _grid(intervals: tuple[tuple[int, int], ...]) -> np.ndarray:
  ticks = np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in intervals])
  return (ticks / 1000.0).astype(np.float32)[:, None]


def regression_target(x: np.ndarray) -> np.ndarray:
  """The noiseless target ``y = sin(2 pi x) - x``, computed in float64.

  Args:
    x: inputs of any shape.

  Returns:
    ``sin(2 pi x) - x`` as float32, the shape of ``x``.

  Examples:
    >>> import numpy as np
    >>> from jaxuq.data import regression_target
    >>> float(regression_target(np.array([0.25]))[0])
    0.75
  """
  x64 = np.asarray(x, dtype=np.float64)
  return (np.sin(2.0 * np.pi * x64) - x64).astype(np.float32)


def regression_train_data(
  key: jax.Array | None = None, *, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
  """The training set: 2000 points on [-2, -1.5) and [-1, 0.5), step 0.001.

  ``y = sin(2 pi x) - x + u`` with ``u ~ Uniform(-noise, noise)`` drawn from
  ``key``, as in the seed's ``random.uniform(-noise, noise)``. The gap
  [-1.5, -1) and everything from 0.5 on have no data.

  Args:
    key: a typed PRNG key; required when ``noise > 0``, unused otherwise.
    noise: half-width of the uniform noise, ``>= 0``.

  Returns:
    ``(x, y)``, float32 arrays of shape ``(2000, 1)``.

  Raises:
    ValueError: ``noise`` is negative or not finite, or ``noise > 0`` without a key.
    TypeError: ``noise`` is not a real number, or ``key`` is not a typed key.

  Examples:
    >>> from jaxuq.data import regression_train_data
    >>> x, y = regression_train_data()
    >>> x.shape, y.shape, float(x[0, 0]), round(float(x[-1, 0]), 6)
    ((2000, 1), (2000, 1), -2.0, 0.499)
  """
  if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
    raise TypeError(f"noise must be a real number >= 0, got {noise!r}")
  if not np.isfinite(noise) or noise < 0:
    raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
  x = _grid(TRAIN_INTERVALS)
  y = regression_target(x)
  if noise > 0:
    if key is None:
      raise ValueError(f"noise={noise!r} > 0 needs a key: pass jax.random.key(seed)")
    check_key(key)
    u = jax.random.uniform(key, x.shape, minval=-float(noise), maxval=float(noise))
    y = (y + np.asarray(u)).astype(np.float32)
  elif key is not None:
    check_key(key)
  return x, y


def regression_test_inputs() -> np.ndarray:
  """The test inputs: 5000 points on [-2, 3), step 0.001, shape ``(5000, 1)`` float32.

  The first part overlaps the training range; from 0.5 on there is no data.

  Examples:
    >>> from jaxuq.data import regression_test_inputs
    >>> regression_test_inputs().shape
    (5000, 1)
  """
  return _grid((TEST_INTERVAL,))


def in_training_range(x: np.ndarray) -> np.ndarray:
  """Whether each input lies in a training interval ([-2, -1.5) or [-1, 0.5)).

  Compared exactly with the ends, which are exact binary fractions: every
  input, on the 0.001 grid (float32 or float64) or off it, is classified by
  its value (``-1.5`` and ``0.5`` are outside, ``-1.5004`` and ``0.4996``
  inside); NaN is outside.

  Args:
    x: inputs of any shape.

  Returns:
    a boolean array of the shape of ``x``.

  Examples:
    >>> from jaxuq.data import in_training_range
    >>> in_training_range([-2.0, -1.5004, -1.5, 0.4996, 0.5]).tolist()
    [True, True, False, True, False]
  """
  x64 = np.asarray(x, dtype=np.float64)
  inside = np.zeros(x64.shape, dtype=bool)
  for lo, hi in TRAIN_INTERVALS:
    inside |= (x64 >= lo / 1000) & (x64 < hi / 1000)
  return inside
