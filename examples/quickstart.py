"""Quick start: MC dropout predictions of a Flax model in one jitted call."""

# jaxuq-example: quick
import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxuq


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(64)(x))
    x = jaxuq.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(1)(x)


key, init_key = jax.random.split(jax.random.key(0))
x = jnp.linspace(-2.0, 3.0, 200)[:, None]
predict = jaxuq.from_linen(Net(), Net().init(init_key, x))  # f(key, x), dropout on
samples = jaxuq.mc_sample(predict, key, x, num_samples=100)  # shape (100, 200, 1)
print("mean predictive std:", float(jaxuq.predictive_std(samples).mean()))
