"""The 7-parameter network of the first reference experiment (SEEDS.md, part A).

1 input -> Dense(2, ReLU) -> Dropout(0.7) -> Dense(1). With the seed's weights
the hidden activations at ``x = 2`` are ``[11, 15]``, so only four outputs are
possible: 11, 11 - 110/0.3, 11 + 150/0.3 and 11 + 40/0.3.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxuq._src.adapters import LinenPredictive, from_linen
from jaxuq._src.dropout import Dropout

TINY_RATE = 0.7
TINY_X = 2.0  # the seed's input


class TinyNet(nn.Module):
  """1 -> Dense(2, ReLU) -> jaxuq.Dropout(rate) -> Dense(1).

  Attributes:
    rate: dropout rate of the hidden layer (the seed's 0.7).
  """

  rate: float = TINY_RATE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = nn.relu(nn.Dense(2, name="hidden")(x))
    h = Dropout(self.rate, deterministic=not train, name="dropout")(h)
    return nn.Dense(1, name="out")(h)


def tiny_variables(dtype: DTypeLike | None = None) -> dict[str, Any]:
  """The seed's weights: ``w1=[[3,7]]``, ``b1=[5,1]``, ``w2=[[-10],[10]]``, ``b2=[11]``.

  Args:
    dtype: the parameters' dtype; ``None`` is JAX's default float (float32, or
      float64 inside ``jax.enable_x64(True)``).

  Returns:
    ``{'params': ...}`` for :class:`TinyNet`.
  """
  a = lambda v: jnp.asarray(v, dtype)  # noqa: E731
  return {
    "params": {
      "hidden": {"kernel": a([[3.0, 7.0]]), "bias": a([5.0, 1.0])},
      "out": {"kernel": a([[-10.0], [10.0]]), "bias": a([11.0])},
    }
  }


def tiny_input(dtype: DTypeLike | None = None) -> jax.Array:
  """The seed's input ``x = 2`` as a batch of one example with one feature: ``(1, 1)``."""
  return jnp.full((1, 1), TINY_X, dtype)


def tiny_predictive(dtype: DTypeLike | None = None, **kwargs: Any) -> LinenPredictive:
  """``f(key, x)`` of the tiny network with the seed's weights (dropout on).

  Args:
    dtype: see :func:`tiny_variables`.
    **kwargs: passed to :func:`jaxuq.from_linen` (e.g. ``shared_mask``).
  """
  return from_linen(TinyNet(), tiny_variables(dtype), **kwargs)
