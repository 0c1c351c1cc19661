"""Small models and functions shared by the tests."""

import flax.linen as nn
import jax.numpy as jnp

import jaxuq


def mask_fn(key, x):
  """A predictive function whose output is its own dropout mask (and x)."""
  return {"mask": jaxuq.keep_mask(key, (x.shape[0], 7), 0.3), "x": x * 2}


class MLP(nn.Module):
  """A small ReLU MLP with jaxuq dropout after each hidden layer."""

  width: int = 32
  depth: int = 2
  rate: float = 0.5
  flax_dropout: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
      layer = nn.Dropout if self.flax_dropout else jaxuq.Dropout
      x = layer(self.rate, deterministic=not train)(x)
    return nn.Dense(1)(x)


def mlp_predictive(key, batch=16, **kwargs):
  model = MLP(**kwargs)
  x = jnp.linspace(-2.0, 3.0, batch)[:, None]
  return jaxuq.from_linen(model, model.init(key, x)), x
