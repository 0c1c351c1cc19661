"""Per-example training losses and metrics on raw model outputs.

A loss maps ``(outputs, targets)`` of one batch to one value per example,
shape ``(batch,)``; the training loop averages them. Classifier outputs are
logits: the softmax is applied here, never in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxuq._src.gaussian import normal_nll
from jaxuq._src.static import Static

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _per_example_mean(values: jax.Array) -> jax.Array:
  return values.reshape(values.shape[0], -1).mean(axis=1)


def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Squared error averaged over each example's outputs.

  Args:
    outputs: predictions, ``(batch, ...)``.
    targets: values of the same size (``(batch,)`` against ``(batch, 1)`` is fine).

  Returns:
    ``(batch,)`` mean squared errors.
  """
  targets = jnp.reshape(targets, outputs.shape).astype(outputs.dtype)
  return _per_example_mean(jnp.square(outputs - targets))


def gaussian_nll(outputs: jax.Array, targets: jax.Array, min_variance: float = 1e-6) -> jax.Array:
  """Negative log-likelihood of a Gaussian whose mean and variance the model predicts.

  The last axis of ``outputs`` holds two values per target: the mean and the
  raw variance, mapped through ``softplus(raw) + min_variance``.

  Args:
    outputs: ``(batch, ..., 2)``.
    targets: ``(batch, ...)``, one value per mean.
    min_variance: floor added to the variance for numerical safety.

  Returns:
    ``(batch,)`` negative log-likelihoods (nats), averaged over each example's targets.

  References:
    Nix & Weigend, "Estimating the mean and variance of the target probability
    distribution", ICNN 1994; Lakshminarayanan et al., "Simple and scalable
    predictive uncertainty estimation using deep ensembles", NeurIPS 2017.
  """
  if outputs.shape[-1:] != (2,):
    raise ValueError(
      f"gaussian_nll needs outputs whose last axis holds (mean, raw variance): size 2, got "
      f"outputs of shape {outputs.shape}; give the model 2 outputs per target"
    )
  mean, raw = outputs[..., 0], outputs[..., 1]
  targets = jnp.reshape(targets, mean.shape).astype(outputs.dtype)
  variance = jax.nn.softplus(raw) + min_variance
  return _per_example_mean(normal_nll(mean, variance, targets))


def gaussian_mean_variance(
  outputs: jax.Array, min_variance: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
  """The mean and variance that :func:`gaussian_nll` reads from ``outputs`` ``(..., 2)``."""
  return outputs[..., 0], jax.nn.softplus(outputs[..., 1]) + min_variance


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy of integer class labels.

  Args:
    logits: ``(batch, classes)``.
    labels: ``(batch,)`` integers in ``[0, classes)``.

  Returns:
    ``(batch,)`` cross-entropies (nats).
  """
  labels = jnp.reshape(labels, logits.shape[:-1]).astype(jnp.int32)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """``(batch,)`` 1.0 where the largest logit is the label, else 0.0."""
  labels = jnp.reshape(labels, logits.shape[:-1])
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


LOSSES: dict[str, LossFn] = {
  "mse": mse,
  "gaussian_nll": gaussian_nll,
  "cross_entropy": cross_entropy,
}


class Objective(NamedTuple):
  """A loss as a static (hashable) setting of the jitted training step.

  Attributes:
    loss: the per-example loss, compared by its fingerprint (a fresh but
      equal closure shares the compiled step).
    classifier: whether accuracy is tracked (the loss is cross-entropy).
  """

  loss: Static
  classifier: bool

  def __call__(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return self.loss.value(outputs, targets)


def resolve_loss(loss: str | LossFn) -> Objective:
  """The :class:`Objective` of a loss name or callable.

  A callable loss counts as a classifier loss (accuracy is tracked, labels are
  checked) if it is :func:`cross_entropy` or optax's
  ``softmax_cross_entropy_with_integer_labels``, which it wraps.

  Raises:
    ValueError: an unknown loss name.
  """
  if callable(loss):
    classifier = loss is cross_entropy or loss is optax.softmax_cross_entropy_with_integer_labels
    return Objective(Static(loss), classifier)
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
  return Objective(Static(LOSSES[loss]), loss == "cross_entropy")


def check_labels(y: jax.Array, num_classes: int, name: str = "y") -> None:
  """Raises unless ``y`` holds integer class labels in ``[0, num_classes)`` (checked on the host).

  Out-of-range labels would not fail in training: optax's cross-entropy wraps
  ``-1`` around to the last class and gives NaN for ``num_classes`` or more.

  Raises:
    TypeError: ``y`` is not of an integer dtype.
    ValueError: a label outside ``[0, num_classes)``.
  """
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise TypeError(
      f"{name} must hold integer class labels for loss='cross_entropy', got dtype {y.dtype}; "
      f"pass {name}.astype(int) if the values are whole class indices"
    )
  if y.size == 0:
    return
  low, high = int(jnp.min(y)), int(jnp.max(y))
  if low < 0 or high >= num_classes:
    raise ValueError(
      f"{name} must hold class labels in [0, {num_classes}) for a model with {num_classes} "
      f"outputs, found labels in [{low}, {high}]; relabel the classes as 0..{num_classes - 1} "
      "or give the model more outputs"
    )
