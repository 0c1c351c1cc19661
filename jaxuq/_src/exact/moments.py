"""The one result type of exact predictive moments, by enumeration or in closed form."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class Moments(NamedTuple):
  """Exact predictive moments of a dropout network, shaped like one output batch.

  Returned by :func:`jaxuq.exact.exact_moments` (every mask enumerated;
  float64 NumPy arrays) and :func:`jaxuq.exact.closed_form_moments` (one
  deterministic pass; JAX arrays in the model's dtype).

  Attributes:
    mean: ``(batch, ..., outputs)``.
    var: ``(batch, ..., outputs)``.
    cov: ``(batch, ..., outputs, outputs)``, the covariance across the last
      output axis, or ``None`` when not asked for.
  """

  mean: jax.Array | np.ndarray
  var: jax.Array | np.ndarray
  cov: jax.Array | np.ndarray | None
