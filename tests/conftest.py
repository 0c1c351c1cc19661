"""Shared test settings: strict rank promotion, float32 matmuls, warnings as errors (pyproject).

Matmul precision: the suite checks jaxuq's contract ("outputs agree to
floating-point rounding") at float32 precision on every backend. On NVIDIA
GPUs JAX's default precision for float32 matmuls is TF32 (10-bit mantissa),
whose rounding differs between a batched and a single product by up to ~1e-3
relative; ``highest`` restores float32 there and changes nothing on CPU.
``tests/test_precision.py`` checks the default precision separately, against
TF32's error bound.
"""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
# Commands run by the tests must not write to (or read from) the user's
# compilation cache; tests/test_compile_cache.py turns it on explicitly.
os.environ.setdefault("JAXUQ_NO_COMPILE_CACHE", "1")
# Subprocesses (the CLI, examples) check samples at float32 precision too.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


@pytest.fixture
def key():
  return jax.random.key(0)


def pytest_collection_modifyitems(config, items):
  """Tests marked slow run first (a stable sort keeps the others' order).

  With two xdist workers, a 40-70 s test that happened to start near the end
  ran alone while the other worker idled; started first, the long tests share
  the workers and the run ends on short ones.
  """
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)
