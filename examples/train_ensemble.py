"""Train a dropout MLP and a deep ensemble on the seed's 1-D regression, compare uncertainties."""

# jaxuq-example: quick
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxuq
from jaxuq.models import MLP
from jaxuq.train import ensemble_predict, train, train_ensemble

# The seed's data: y = sin(2 pi x) - x on [-2, -1.5) and [-1, 0.5), a gap in between.
grid = np.concatenate([np.arange(-2.0, -1.5, 0.001), np.arange(-1.0, 0.5, 0.001)])
x = jnp.asarray(grid[:, None], jnp.float32)
y = jnp.sin(2 * jnp.pi * x) - x
net = MLP(width=128, depth=3, rate=0.1)  # the seed is MLP(): 4 x 1024, rate 0.5

state, history = train(
  jax.random.key(0), net, optax.adam(3e-3), x, y, epochs=20, batch_size=32,
  val_fraction=0.1, progress=False,
)  # fmt: skip
print(f"one model: loss {history['loss'][-1]:.4f}, val_loss {history['val_loss'][-1]:.4f}")

states, ens_history = train_ensemble(
  jax.random.key(1), net, optax.adam(3e-3), x, y, num_members=5, subsets="bootstrap",
  epochs=20, batch_size=32, progress=False,
)  # fmt: skip
print("ensemble out-of-bag val_loss per member:", np.round(ens_history["val_loss"][-1], 4))

x_test = jnp.array([[-1.75], [-1.25], [0.0], [1.5], [2.5]])  # data, gap, data, outside, far
mc = jaxuq.mc_sample(
  jaxuq.from_linen(net, state.variables, train=False), jax.random.key(2), x_test, num_samples=100
)
members = ensemble_predict(net, states, x_test)  # (5, 5, 1): member axis first, like samples


def row(name, values):
  print(f"{name:<16}" + "".join(f"{float(v):>8.3f}" for v in np.ravel(values)))


row("x", x_test)
row("MC dropout std", jaxuq.predictive_std(mc))
row("ensemble std", jaxuq.predictive_std(members))
