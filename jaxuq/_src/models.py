"""The reference models of jaxuq's two seed experiments, as linen modules.

Every model takes ``train`` at call time: ``train=True`` switches dropout on
and makes BatchNorm normalise with the batch's statistics (and update its
running averages, collection ``'batch_stats'``, which must then be mutable);
``train=False`` switches dropout off and makes BatchNorm use its running
averages. MC dropout prediction is ``jaxuq.from_linen(model, variables,
train=False)``: the adapter forces every dropout layer on while BatchNorm keeps
its running averages.

Initialisers follow Keras's defaults (Glorot-uniform kernels, zero biases),
which the seed experiments used, unless the seed asked for another. Models
return raw outputs: regression values, or logits for classifiers (the softmax
is applied by the losses and metrics, never inside the model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from jaxuq._src.conv import Conv
from jaxuq._src.dropout import Dropout
from jaxuq._src.keys import check_positive_int, check_rate

Activation = Callable[[jax.Array], jax.Array]

_ACTIVATIONS: dict[str, Activation] = {
  "relu": nn.relu,
  "tanh": nn.tanh,
  "sigmoid": nn.sigmoid,
  "elu": nn.elu,
  "gelu": nn.gelu,
  "swish": nn.swish,
  "softplus": nn.softplus,
  "leaky_relu": nn.leaky_relu,
}

PLACEMENTS = ("all", "last")

glorot_uniform = nn.initializers.glorot_uniform()
he_uniform = nn.initializers.he_uniform()


def resolve_activation(activation: str | Activation) -> Activation:
  """Returns the activation function named ``activation`` (or ``activation`` if callable)."""
  if callable(activation):
    return activation
  if activation not in _ACTIVATIONS:
    raise ValueError(
      f"activation must be one of {sorted(_ACTIVATIONS)} or a callable, got {activation!r}"
    )
  return _ACTIVATIONS[activation]


class MLP(nn.Module):
  """A fully connected network with dropout: the seed regression model by default.

  ``depth`` hidden ``Dense(width)`` layers with ``activation``, each followed by
  ``jaxuq.Dropout(rate)`` (``placement='all'``) or only the last one followed by
  it (``placement='last'``), then a linear ``Dense(out_features)``. The default
  is the seed's 1 -> 4 x 1024 ReLU, dropout 0.5 -> 1 network (3,151,873
  parameters for a 1-dimensional input).

  Attributes:
    out_features: outputs per example (1 for MSE; 2 for a Gaussian NLL, whose
      loss reads them as the mean and the pre-softplus variance; the number of
      classes for a classifier, as logits).
    depth: number of hidden layers.
    width: units per hidden layer.
    activation: a name (``'relu'``, ``'tanh'``, ``'sigmoid'``, ``'elu'``,
      ``'gelu'``, ``'swish'``, ``'softplus'``, ``'leaky_relu'``) or a callable.
    rate: dropout rate (probability to drop a unit), in ``[0, 1)``.
    placement: ``'all'`` (dropout after every hidden layer) or ``'last'``
      (only after the last hidden layer).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxuq.models
    >>> net = jaxuq.models.MLP()
    >>> variables = net.init(jax.random.key(0), jnp.zeros((1, 1)))
    >>> sum(p.size for p in jax.tree.leaves(variables))
    3151873
  """

  out_features: int = 1
  depth: int = 4
  width: int = 1024
  activation: str | Activation = "relu"
  rate: float = 0.5
  placement: str = "all"

  def __post_init__(self) -> None:
    check_positive_int(self.out_features, "MLP.out_features")
    check_positive_int(self.depth, "MLP.depth")
    check_positive_int(self.width, "MLP.width")
    check_rate(self.rate, "MLP.rate")
    resolve_activation(self.activation)
    if self.placement not in PLACEMENTS:
      raise ValueError(f"MLP.placement must be one of {PLACEMENTS}, got {self.placement!r}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps ``x`` of shape ``(batch, features)`` to ``(batch, out_features)``."""
    act = resolve_activation(self.activation)
    for i in range(self.depth):
      x = act(nn.Dense(self.width, kernel_init=glorot_uniform)(x))
      if self.placement == "all" or i == self.depth - 1:
        x = Dropout(self.rate, deterministic=not train)(x)
    return nn.Dense(self.out_features, kernel_init=glorot_uniform)(x)


class BasicCNN(nn.Module):
  """The seed's basic MNIST classifier, returning logits.

  Conv(32, 3x3, valid, ReLU) -> MaxPool 2x2 -> Flatten -> Dense(100, ReLU,
  He-uniform) -> Dropout(0.25) -> Dense(num_classes). 542,230 parameters for
  28x28x1 inputs and 10 classes, as in Keras.

  Attributes:
    num_classes: number of output logits.
    rate: dropout rate before the output layer.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxuq.models
    >>> net = jaxuq.models.BasicCNN()
    >>> variables = net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    >>> sum(p.size for p in jax.tree.leaves(variables))
    542230
  """

  num_classes: int = 10
  rate: float = 0.25

  def __post_init__(self) -> None:
    check_positive_int(self.num_classes, "BasicCNN.num_classes")
    check_rate(self.rate, "BasicCNN.rate")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps images ``(batch, height, width, channels)`` to logits ``(batch, num_classes)``."""
    x = Conv(32, (3, 3), padding="VALID", kernel_init=glorot_uniform)(x)
    x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(100, kernel_init=he_uniform)(x))
    x = Dropout(self.rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=glorot_uniform)(x)


class DeepCNN(nn.Module):
  """The seed's deep MNIST classifier with BatchNorm, returning logits.

  Conv32(3) BN, Conv32(3) BN, Conv32(5, stride 2, same) BN, Dropout,
  Conv64(3) BN, Conv64(3) BN, Conv64(5, stride 2, same) BN, Dropout,
  Conv128(4) BN, Flatten, Dropout, Dense(num_classes); every convolution has a
  ReLU (before its BatchNorm, as in the seed) and is 'valid' unless marked
  'same'. BatchNorm uses Keras's momentum 0.99 and epsilon 1e-3. For 28x28x1
  inputs: 326,410 parameters and 832 BatchNorm statistics (Keras: 327,242
  parameters in all, 832 of them non-trainable).

  Attributes:
    num_classes: number of output logits.
    rate: rate of the three dropout layers.
  """

  num_classes: int = 10
  rate: float = 0.4

  def __post_init__(self) -> None:
    check_positive_int(self.num_classes, "DeepCNN.num_classes")
    check_rate(self.rate, "DeepCNN.rate")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps images ``(batch, 28, 28, channels)`` to logits ``(batch, num_classes)``."""

    def conv_bn(x: jax.Array, features: int, size: int, **kwargs: Any) -> jax.Array:
      conv = Conv(features, (size, size), kernel_init=glorot_uniform, **kwargs)
      x = nn.relu(conv(x))
      return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)(x)

    for features in (32, 64):
      x = conv_bn(x, features, 3, padding="VALID")
      x = conv_bn(x, features, 3, padding="VALID")
      x = conv_bn(x, features, 5, strides=(2, 2), padding="SAME")
      x = Dropout(self.rate, deterministic=not train)(x)
    x = conv_bn(x, 128, 4, padding="VALID")
    x = x.reshape(x.shape[0], -1)
    x = Dropout(self.rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=glorot_uniform)(x)
