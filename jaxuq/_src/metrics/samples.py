"""Uncertainty summaries of sampled class probabilities (MC dropout passes or ensemble members).

Every function takes ``prob_samples`` of shape ``(samples, batch, classes)``:
the softmax outputs of each stochastic pass, sample axis first. Entropies are in
nats (natural logarithm) with ``0 log 0 = 0``. Means over samples run in
float32 at least (float64 under x64); results are float32 at least.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import entr, xlogy
from jax.typing import ArrayLike

from jaxuq._src.metrics import _checks
from jaxuq._src.summaries import predictive_std

_LAYOUT = "(samples, batch, classes)"


def check_prob_samples(prob_samples: ArrayLike) -> jax.Array:
  p = _checks.as_float(prob_samples, "prob_samples")
  _checks.check_ndim(p, 3, "prob_samples", _LAYOUT)
  _checks.check_nonempty(p, "prob_samples", _LAYOUT)
  _checks.check_simplex(p, "prob_samples")
  return p


def _wide(f, prob_samples: ArrayLike) -> jax.Array:
  """``f`` of the checked samples in the accumulation dtype, returned in the result dtype."""
  p = check_prob_samples(prob_samples)
  return _checks.narrow(f(_checks.widen(p)), p.dtype)


def predictive_entropy(prob_samples: ArrayLike) -> jax.Array:
  """The entropy of the mean prediction: total uncertainty.

  ``H[p̄] = -Σ_c p̄_c log p̄_c`` with ``p̄ = (1/S) Σ_s p_s``.

  Args:
    prob_samples: class probabilities, shape ``(samples, batch, classes)``;
      each row must sum to 1 (checked when not traced; never renormalised).

  Returns:
    Shape ``(batch,)``, in nats, between 0 and ``log(classes)``.

  Raises:
    ValueError: wrong number of axes, empty input, or (when the values are
      known) entries outside ``[0, 1]`` or rows not summing to 1.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import predictive_entropy
    >>> p = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two passes disagree fully
    >>> round(float(predictive_entropy(p)[0]), 4)  # log 2
    0.6931

  References:
    Gal, Y. (2016). Uncertainty in Deep Learning. PhD thesis, University of
    Cambridge, section 3.3.1.
  """
  return _wide(_predictive_entropy, prob_samples)


@jax.jit
def _predictive_entropy(p: jax.Array) -> jax.Array:
  return entr(p.mean(axis=0)).sum(axis=-1)


def expected_entropy(prob_samples: ArrayLike) -> jax.Array:
  """The mean entropy of the sampled predictions: aleatoric uncertainty.

  ``E_s H[p_s] = -(1/S) Σ_s Σ_c p_sc log p_sc``.

  Args:
    prob_samples: shape ``(samples, batch, classes)``, see :func:`predictive_entropy`.

  Returns:
    Shape ``(batch,)``, in nats.

  Raises:
    ValueError: as :func:`predictive_entropy`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import expected_entropy
    >>> p = jnp.array([[[1.0, 0.0]], [[0.5, 0.5]]])  # one certain pass, one coin flip
    >>> round(float(expected_entropy(p)[0]), 4)  # (0 + log 2) / 2
    0.3466

  References:
    Houlsby, N., Huszár, F., Ghahramani, Z., Lengyel, M. (2011). Bayesian
    Active Learning for Classification and Preference Learning. arXiv:1112.5745.
  """
  return _wide(_expected_entropy, prob_samples)


@jax.jit
def _expected_entropy(p: jax.Array) -> jax.Array:
  return entr(p).sum(axis=-1).mean(axis=0)


def mutual_information(prob_samples: ArrayLike) -> jax.Array:
  """The mutual information between prediction and model (BALD): epistemic uncertainty.

  ``I = H[p̄] - E_s H[p_s] = (1/S) Σ_s KL(p_s ‖ p̄)``. It is computed in the KL
  form, a mean of non-negative terms, which keeps small values accurate (the
  difference of two entropies cancels); it is not clipped, so it can be
  negative only by rounding (about ``1e-7`` in float32).

  Args:
    prob_samples: shape ``(samples, batch, classes)``, see :func:`predictive_entropy`.

  Returns:
    Shape ``(batch,)``, in nats, between 0 and ``log(classes)``.

  Raises:
    ValueError: as :func:`predictive_entropy`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import mutual_information
    >>> p = jnp.array([[[0.5, 0.5]], [[0.5, 0.5]]])  # agreeing passes: no epistemic part
    >>> float(mutual_information(p)[0])
    0.0

  References:
    Houlsby, N., Huszár, F., Ghahramani, Z., Lengyel, M. (2011). Bayesian
    Active Learning for Classification and Preference Learning. arXiv:1112.5745.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
  """
  return _wide(_mutual_information, prob_samples)


@jax.jit
def _mutual_information(p: jax.Array) -> jax.Array:
  kl = xlogy(p, p) - xlogy(p, p.mean(axis=0)[None])  # 0 where p_sc = 0 (0 log p̄ = 0)
  return kl.sum(axis=-1).mean(axis=0)


def variation_ratio(prob_samples: ArrayLike) -> jax.Array:
  """The fraction of passes whose predicted class is not the modal one.

  ``VR = 1 - f_m / S`` with ``f_m`` the number of passes voting for the most
  frequent ``argmax`` class (an ``argmax`` tie within a pass goes to the lowest
  class index, as ``jnp.argmax``).

  Args:
    prob_samples: shape ``(samples, batch, classes)``, see :func:`predictive_entropy`.

  Returns:
    Shape ``(batch,)``, between 0 and at most ``1 - 1/min(S, classes)``.

  Raises:
    ValueError: as :func:`predictive_entropy`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import variation_ratio
    >>> p = jnp.array([[[0.9, 0.1]], [[0.6, 0.4]], [[0.2, 0.8]]])  # votes 0, 0, 1
    >>> round(float(variation_ratio(p)[0]), 4), float(variation_ratio(p[:2])[0])
    (0.3333, 0.0)

  References:
    Freeman, L. C. (1965). Elementary Applied Statistics. Wiley.
    Gal, Y. (2016). Uncertainty in Deep Learning. PhD thesis, section 3.3.1.
  """
  return _wide(_variation_ratio, prob_samples)


@jax.jit
def _variation_ratio(p: jax.Array) -> jax.Array:
  votes = jax.nn.one_hot(p.argmax(axis=-1), p.shape[-1], dtype=jnp.int32).sum(axis=0)
  others = p.shape[0] - votes.max(axis=-1)  # an exact integer: 0 when every pass agrees
  return others.astype(p.dtype) / p.shape[0]


def max_probability(prob_samples: ArrayLike) -> jax.Array:
  """The top class probability of the mean prediction: the confidence ``max_c p̄_c``.

  ``1 - max_probability`` is the usual uncertainty score (higher = more
  uncertain), the maximum softmax probability baseline of out-of-distribution
  detection applied to the MC mean.

  Args:
    prob_samples: shape ``(samples, batch, classes)``, see :func:`predictive_entropy`.

  Returns:
    Shape ``(batch,)``, between ``1/classes`` and 1.

  Raises:
    ValueError: as :func:`predictive_entropy`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import max_probability
    >>> p = jnp.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    >>> round(float(max_probability(p)[0]), 4)
    0.7

  References:
    Hendrycks, D., Gimpel, K. (2017). A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks. ICLR.
  """
  return _wide(_max_probability, prob_samples)


@jax.jit
def _max_probability(p: jax.Array) -> jax.Array:
  return p.mean(axis=0).max(axis=-1)


def class_std(prob_samples: ArrayLike, *, average: bool = True, ddof: int = 0) -> jax.Array:
  """The standard deviation of each class probability over passes, and its class average.

  ``σ_c = sqrt((1/(S - ddof)) Σ_s (p_sc - p̄_c)²)``; with ``average=True``
  ``(1/C) Σ_c σ_c``. This is the measure of the seed write-up (the spread of
  the softmax outputs over MC dropout passes).

  Args:
    prob_samples: shape ``(samples, batch, classes)``, see :func:`predictive_entropy`.
    average: average over classes (default) or return every class.
    ddof: 0 (default, as NumPy and Keras code) or 1.

  Returns:
    Shape ``(batch,)`` if ``average`` else ``(batch, classes)``.

  Raises:
    ValueError: as :func:`predictive_entropy`, or a bad ``ddof``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.metrics import class_std
    >>> float(class_std(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]))[0])  # each class 0 or 1
    0.5

  References:
    Kampffmeyer, M., Salberg, A.-B., Jenssen, R. (2016). Semantic Segmentation of
    Small Objects and Modeling of Uncertainty in Urban Remote Sensing Images Using
    Deep Convolutional Neural Networks. CVPR Workshops.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning with
    Image Data. ICML (its "mean STD" acquisition function).
  """
  if not isinstance(average, bool):
    raise TypeError(f"average must be a bool, got {average!r}")
  std = predictive_std(check_prob_samples(prob_samples), ddof=ddof)
  return std.mean(axis=-1) if average else std
