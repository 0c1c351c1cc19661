"""Metrics of conformal predictions, by hand; jit; errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxuq import conformal

SETS = jnp.array(
  [
    [True, False, False],  # size 1, label 0: covered
    [True, True, False],  # size 2, label 2: missed
    [False, False, False],  # size 0, label 1: missed
    [True, True, True],  # size 3, label 2: covered
    [False, True, False],  # size 1, label 1: covered
    [False, False, True],  # size 1, label 0: missed
  ]
)
LABELS = jnp.array([0, 2, 1, 2, 1, 0])


@pytest.mark.parametrize("jit", [False, True])
def test_set_metrics_by_hand(jit):
  wrap = jax.jit if jit else (lambda f: f)
  assert float(wrap(conformal.set_coverage)(SETS, LABELS)) == pytest.approx(3 / 6)
  assert float(wrap(conformal.mean_set_size)(SETS)) == pytest.approx((1 + 2 + 0 + 3 + 1 + 1) / 6)
  by_size = wrap(conformal.coverage_by_set_size)(SETS, LABELS)
  # size 0: one example, missed; size 1: three, two covered; size 2: one missed; size 3: covered.
  np.testing.assert_allclose(by_size.coverage, [0.0, 2 / 3, 0.0, 1.0], rtol=1e-6)
  np.testing.assert_array_equal(by_size.counts, [1, 3, 1, 1])
  by_class = wrap(conformal.coverage_by_class)(SETS, LABELS)
  # class 0: rows 0 (covered) and 5 (missed); class 1: rows 2 (missed) and 4 (covered);
  # class 2: rows 1 (missed) and 3 (covered).
  np.testing.assert_allclose(by_class.coverage, [0.5, 0.5, 0.5])
  np.testing.assert_array_equal(by_class.counts, [2, 2, 2])


def test_empty_groups_are_nan():
  by_class = conformal.coverage_by_class(SETS[:2], jnp.array([0, 0]))
  assert np.isnan(by_class.coverage[1:]).all() and by_class.counts.tolist() == [2, 0, 0]


@pytest.mark.parametrize("jit", [False, True])
def test_interval_metrics_by_hand(jit):
  wrap = jax.jit if jit else (lambda f: f)
  lower, upper = jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.array([1.0, 3.0, 1.0, 3.0])
  y = jnp.array([1.0, 0.0, 1.5, 3.0])
  # inside: 0 <= 1 <= 1 yes; 1 <= 0 no; [2, 1] is empty: no; 3 <= 3 <= 3 yes.
  assert float(wrap(conformal.regression_coverage)(lower, upper, y)) == 0.5
  # widths 1, 2, 0 (empty), 0.
  assert float(wrap(conformal.mean_width)(lower, upper)) == 0.75


def test_bad_inputs_name_the_argument():
  with pytest.raises(TypeError, match="sets must be a boolean mask"):
    conformal.set_coverage(SETS.astype(jnp.int32), LABELS)
  with pytest.raises(ValueError, match=r"sets must have shape \(n, classes\)"):
    conformal.mean_set_size(SETS[0])
  with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\)"):
    conformal.coverage_by_class(SETS, LABELS + 1)
  with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
    conformal.coverage_by_set_size(SETS, LABELS[:5])
  with pytest.raises(ValueError, match="upper must have the shape of lower"):
    conformal.mean_width(jnp.zeros(3), jnp.zeros(4))
  with pytest.raises(ValueError, match="y must have the shape of lower"):
    conformal.regression_coverage(jnp.zeros(3), jnp.zeros(3), jnp.zeros(2))


def test_conformal_imports_only_array_code():
  """Layer 1 (DESIGN.md): jax, numpy and jaxuq's array code; no models, data or plotting."""
  import pathlib

  import jaxuq
  from tests.helpers import imported_modules

  root = pathlib.Path(jaxuq.__file__).parent
  allowed = ("__future__", "collections", "functools", "typing", "numbers", "math", "fractions")
  allowed += ("jax", "numpy")
  allowed_jaxuq = ("jaxuq._src.conformal", "jaxuq._src.metrics", "jaxuq._src.keys")
  for path in [root / "conformal.py", *(root / "_src" / "conformal").glob("*.py")]:
    for name in imported_modules(path):
      ok = name.split(".")[0] in allowed or name.startswith(allowed_jaxuq)
      assert ok, f"{path.name} imports {name}"
