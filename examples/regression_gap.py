"""Regression with a gap: MC dropout is unsure where there was no data (reference experiment 1).

The seed MLP (1 -> 4 x 1024 ReLU, dropout 0.5 -> 1) on y = sin(2 pi x) - x from
[-2, -1.5) and [-1, 0.5); 100 MC dropout networks over [-2, 3). About 1.5
minutes on 2 CPU cores; JAXUQ_EXAMPLE_SMALL=1 runs a small network in seconds.
"""

import os

import jax
import numpy as np
import optax

import jaxuq
from jaxuq.data import in_training_range, regression_test_inputs, regression_train_data
from jaxuq.models import MLP
from jaxuq.train import train

small = bool(os.environ.get("JAXUQ_EXAMPLE_SMALL"))
data_key, train_key, sample_key = jax.random.split(jax.random.key(0), 3)
x, y = regression_train_data(data_key, noise=0.0)
model = MLP(width=64 if small else 1024, depth=4, rate=0.5)  # activation='tanh', placement='last'
state, history = train(train_key, model, optax.adam(1e-3), x, y, epochs=10 if small else 30,
                       batch_size=32, val_fraction=0.1)  # fmt: skip

x_test = regression_test_inputs()  # (5000, 1) over [-2, 3)
predict = jaxuq.from_linen(model, state.variables, shared_mask=True, train=False)
samples = jaxuq.mc_sample(predict, sample_key, x_test, num_samples=100)[..., 0]  # (100, 5000)
std = np.asarray(jaxuq.predictive_std(samples))

inside = in_training_range(x_test[:, 0])
gap = (x_test[:, 0] >= -1.5) & (x_test[:, 0] < -1.0)
beyond = x_test[:, 0] >= 0.5
print(f"final val loss {history['val_loss'][-1]:.4f}")
print(f"mean predictive std: inside {std[inside].mean():.3f}, gap {std[gap].mean():.3f}, "
      f"beyond 0.5 {std[beyond].mean():.3f} ({std[beyond].mean() / std[inside].mean():.1f}x)")  # fmt: skip
y_test = np.sin(2 * np.pi * x_test[inside, 0]) - x_test[inside, 0]
print("90% coverage inside:", float(jaxuq.metrics.interval_coverage(samples[:, inside], y_test)))
