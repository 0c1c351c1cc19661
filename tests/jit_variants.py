"""Run a metric test eagerly and under ``jax.jit``, in the manner of ``chex.all_variants``.

Usage::

  @all_variants
  def test_x(variant):
    nll = variant(metrics.nll, static_argnames="reduction")
    ...

``static_argnames`` names the Python settings (``num_bins``, ``reduction``,
``target_tpr``, ``level`` ...) that the metrics check in plain Python; they
must be static under ``jax.jit``. Under jit only shapes are checked, so tests
of bad values stay eager.
"""

import jax
import pytest


def _eager(fn, static_argnames=()):
  del static_argnames
  return fn


def _jit(fn, static_argnames=()):
  return jax.jit(fn, static_argnames=static_argnames)


all_variants = pytest.mark.parametrize("variant", [_eager, _jit], ids=["eager", "jit"])
