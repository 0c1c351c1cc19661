"""The model and optimizer of Gal, Islam & Ghahramani (2017)'s MNIST experiment.

The paper's model is Keras's MNIST CNN example: convolution-ReLU-convolution-
ReLU-max pooling-dropout-dense-ReLU-dropout-dense-softmax, with 32 kernels of
4x4, 2x2 pooling, 128 dense units and dropout 0.25 and 0.5. Its weight decay
is scaled by the training-set size (``c / N``); the optimizer here is Adam
with an L2 penalty ``(c / N) * ||W||^2`` on every kernel, coupled through the
gradient as Keras's ``l2`` regulariser is, with ``N`` read at run time from
the labelled set (``optax.inject_hyperparams``), so one compiled round serves
every size.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from jaxuq import Dropout
from jaxuq.models import Conv

glorot_uniform = nn.initializers.glorot_uniform()


class GalCNN(nn.Module):
  """conv(32, 4x4)-relu-conv(32, 4x4)-relu-maxpool(2)-dropout-dense(128)-relu-dropout-dense.

  Attributes:
    num_classes: output logits.
    rates: the two dropout rates (after pooling, after the dense layer).
  """

  num_classes: int = 10
  rates: tuple[float, float] = (0.25, 0.5)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps images ``(batch, height, width, channels)`` to logits ``(batch, num_classes)``."""
    for _ in range(2):
      x = nn.relu(Conv(32, (4, 4), padding="VALID", kernel_init=glorot_uniform)(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = Dropout(self.rates[0], deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(128, kernel_init=glorot_uniform)(x))
    x = Dropout(self.rates[1], deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=glorot_uniform)(x)


def _kernels(params: Any) -> Any:
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def _adam_l2(weight_decay: float, learning_rate: float) -> optax.GradientTransformation:
  return optax.chain(
    optax.add_decayed_weights(weight_decay, mask=_kernels), optax.adam(learning_rate)
  )


def optimizer(learning_rate: float = 1e-3) -> optax.GradientTransformation:
  """Adam with an injected ``weight_decay`` (set each round by :func:`weight_decay`)."""
  return optax.inject_hyperparams(_adam_l2)(weight_decay=0.0, learning_rate=learning_rate)


def weight_decay(c: float):
  """``count -> {'weight_decay': 2 c / count}``: Keras's ``l2(c / N)`` as a decayed-weight term."""

  def hyperparams(count: jax.Array) -> dict[str, jax.Array]:
    return {"weight_decay": 2.0 * c / count}

  return hyperparams
