"""Per-point acquisition scores from MC softmax samples: higher = acquire first.

Each score takes ``probs`` of shape ``(samples, n, classes)`` (the softmax
outputs of ``samples`` MC dropout passes over ``n`` pool candidates, sample
axis first) and returns ``(n,)``. They are the uncertainty summaries of
:mod:`jaxuq.metrics` under the names of the active-learning literature, so the
formulas live in one place; sums run in float32 at least.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.typing import ArrayLike

from jaxuq._src.metrics.samples import (
  class_std,
  mutual_information,
  predictive_entropy,
  variation_ratio,
)


def bald(probs: ArrayLike) -> jax.Array:
  """BALD: the mutual information between a candidate's label and the model.

  ``I[y; ω] = H[p̄] - E_s H[p_s]``, high where the passes disagree with each
  other confidently (epistemic uncertainty); :func:`jaxuq.metrics.mutual_information`.

  Args:
    probs: class probabilities, shape ``(samples, n, classes)``; rows sum to 1.

  Returns:
    Shape ``(n,)``, in nats, in ``[0, log(classes)]`` (up to float32 rounding).

  Raises:
    ValueError: wrong number of axes, empty input, or (concrete inputs)
      values that are not probabilities.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.active import bald
    >>> p = jnp.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
    >>> [round(float(v), 4) for v in bald(p)]  # disagreeing passes vs a shared coin flip
    [0.6931, 0.0]

  References:
    Houlsby, N., Huszár, F., Ghahramani, Z., Lengyel, M. (2011). Bayesian
    Active Learning for Classification and Preference Learning. arXiv:1112.5745.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
  """
  return mutual_information(probs)


def max_entropy(probs: ArrayLike) -> jax.Array:
  """Max entropy: the entropy of the mean prediction, ``H[p̄]`` (total uncertainty).

  Args:
    probs: class probabilities, shape ``(samples, n, classes)``; rows sum to 1.

  Returns:
    Shape ``(n,)``, in nats, in ``[0, log(classes)]``.

  Raises:
    ValueError: as :func:`bald`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.active import max_entropy
    >>> p = jnp.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
    >>> [round(float(v), 4) for v in max_entropy(p)]  # both average to a coin flip
    [0.6931, 0.6931]

  References:
    Shannon, C. E. (1948). A Mathematical Theory of Communication.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
  """
  return predictive_entropy(probs)


def variation_ratios(probs: ArrayLike) -> jax.Array:
  """Variation ratios: ``1 - f_m / S``, the share of passes not voting for the modal class.

  Each pass votes for its ``argmax`` class (ties to the lowest index); ``f_m``
  is the number of votes of the most frequent class.

  Args:
    probs: class probabilities, shape ``(samples, n, classes)``; rows sum to 1.

  Returns:
    Shape ``(n,)``, in ``[0, 1 - 1/min(samples, classes)]``; a multiple of ``1/samples``.

  Raises:
    ValueError: as :func:`bald`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.active import variation_ratios
    >>> p = jnp.array([[[0.9, 0.1]], [[0.6, 0.4]], [[0.2, 0.8]], [[0.7, 0.3]]])
    >>> float(variation_ratios(p)[0])  # votes 0, 0, 1, 0
    0.25

  References:
    Freeman, L. C. (1965). Elementary Applied Statistics. Wiley.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
  """
  return variation_ratio(probs)


def mean_std(probs: ArrayLike) -> jax.Array:
  """Mean std: the standard deviation of each class probability over passes, averaged over classes.

  ``(1/C) Σ_c sqrt(E_s[p_sc²] - E_s[p_sc]²)`` (``ddof = 0``);
  :func:`jaxuq.metrics.class_std`.

  Args:
    probs: class probabilities, shape ``(samples, n, classes)``; rows sum to 1.

  Returns:
    Shape ``(n,)``, in ``[0, 0.5]``.

  Raises:
    ValueError: as :func:`bald`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.active import mean_std
    >>> float(mean_std(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]))[0])
    0.5

  References:
    Kampffmeyer, M., Salberg, A.-B., Jenssen, R. (2016). Semantic Segmentation
    of Small Objects and Modeling of Uncertainty in Urban Remote Sensing Images
    Using Deep Convolutional Neural Networks. CVPR Workshops.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
  """
  return class_std(probs)


def _mean_class_std(summary: Mapping[str, Any]) -> jax.Array:
  return summary["class_std"].mean(axis=-1)


# name -> (score of probs, the same score read from jaxuq.classification_reducer's summary)
POINTWISE: dict[str, tuple[Callable[[ArrayLike], jax.Array], Callable[..., jax.Array]]] = {
  "bald": (bald, lambda summary: summary["mutual_information"]),
  "max_entropy": (max_entropy, lambda summary: summary["predictive_entropy"]),
  "variation_ratios": (variation_ratios, lambda summary: summary["variation_ratio"]),
  "mean_std": (mean_std, _mean_class_std),
}
