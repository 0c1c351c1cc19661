"""Accept / reject: a logistic classifier on uncertainty features, with a TPR-targeted threshold.

The first stage of a two-stage pipeline: "is this input of the kind the model
was trained on?" before "which class is it?". Labels follow
:mod:`jaxuq.metrics`: 1 = out of distribution (reject), 0 = in distribution.
"""

from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxuq._src.keys import check_positive_int
from jaxuq._src.metrics import _checks
from jaxuq._src.metrics.ood import check_target_tpr, threshold_at_tpr
from jaxuq._src.metrics.samples import (
  check_prob_samples,
  class_std,
  max_probability,
  mutual_information,
  predictive_entropy,
)

FEATURE_NAMES = ("predictive_entropy", "mutual_information", "max_probability", "class_std")


class LogisticParams(NamedTuple):
  """A fitted logistic model ``p = σ(((x - loc) / scale) · weights + bias)``.

  Attributes:
    weights: shape ``(features,)``, on standardised features.
    bias: scalar.
    loc: per-feature mean of the training features, ``(features,)``.
    scale: per-feature standard deviation of the training features (1 where constant).
  """

  weights: jax.Array
  bias: jax.Array
  loc: jax.Array
  scale: jax.Array


class Rejector(NamedTuple):
  """A logistic model with its threshold: reject when the probability reaches it.

  Attributes:
    params: the :class:`LogisticParams`.
    threshold: reject an input when its out-of-distribution probability is ``>= threshold``.
    tpr: the fraction of out-of-distribution inputs rejected on the held-out
      data the threshold was chosen on.
    fpr: the fraction of in-distribution inputs rejected on those data.
  """

  params: LogisticParams
  threshold: jax.Array
  tpr: jax.Array
  fpr: jax.Array


class Decision(NamedTuple):
  """Per-input decision.

  Attributes:
    reject: True where the input is declared out of distribution, shape ``(batch,)``.
    probability: the model's probability that the input is out of distribution.
  """

  reject: jax.Array
  probability: jax.Array


_FEATURES = (predictive_entropy, mutual_information, max_probability, class_std)


def uncertainty_features(prob_samples: ArrayLike) -> jax.Array:
  """The features of :data:`FEATURE_NAMES` from sampled class probabilities.

  The metrics of the same names in :mod:`jaxuq.metrics`: predictive entropy,
  mutual information, the top probability of the mean prediction
  (:func:`jaxuq.metrics.max_probability`, a confidence: higher = more
  certain) and the class-averaged standard deviation over passes
  (:func:`jaxuq.metrics.class_std`). The values are checked once, then the
  four are computed in one jitted call.

  Args:
    prob_samples: shape ``(samples, batch, classes)``, rows summing to 1.

  Returns:
    Shape ``(batch, 4)``, columns in the order of :data:`FEATURE_NAMES`,
    float32 at least.

  Raises:
    ValueError: as :func:`jaxuq.metrics.predictive_entropy`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import reject
    >>> p = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two passes disagree fully
    >>> [round(v, 4) for v in reject.uncertainty_features(p)[0].tolist()]  # FEATURE_NAMES
    [0.6931, 0.6931, 0.5, 0.5]

  References:
    Gal, Y. (2016). Uncertainty in Deep Learning. PhD thesis, University of
    Cambridge, section 3.3.1.
    Hendrycks, D., Gimpel, K. (2017). A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks. ICLR.
  """
  return _features(check_prob_samples(prob_samples))


@jax.jit
def _features(p: jax.Array) -> jax.Array:
  return jnp.stack([f(p) for f in _FEATURES], axis=1)  # traced: shapes checked only


def _check_features(features: ArrayLike, num_features: int | None = None) -> jax.Array:
  f = _checks.as_float(features, "features")
  if f.ndim != 2 or f.shape[0] == 0 or (num_features is not None and f.shape[1] != num_features):
    want = "(batch, features)" if num_features is None else f"(batch, {num_features})"
    raise ValueError(f"features must have shape {want} with batch >= 1, got {f.shape}")
  _checks.check_finite(f, "features")
  return f.astype(_checks.result_dtype(f.dtype))  # bfloat16 features: fit in float32


def _check_nonnegative(value: object, name: str) -> float:
  if (
    isinstance(value, bool)
    or not isinstance(value, numbers.Real)
    or not 0 <= float(value) < float("inf")
  ):
    raise ValueError(f"{name} must be a finite non-negative float, got {value!r}")
  return float(value)


def predict_proba(params: LogisticParams, features: ArrayLike) -> jax.Array:
  """The probability that each input is out of distribution.

  Args:
    params: from :func:`fit_logistic`.
    features: shape ``(batch, features)``.

  Returns:
    Shape ``(batch,)``, in ``[0, 1]``.

  Raises:
    ValueError: ``features`` has the wrong shape or non-finite values.
  """
  f = _check_features(features, params.weights.shape[0])
  return jax.nn.sigmoid(_logits(params, f))


def _logits(params: LogisticParams, f: jax.Array) -> jax.Array:
  return ((f - params.loc[None]) / params.scale[None]) @ params.weights + params.bias


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _train(z, y, learning_rate, l2, *, num_steps):
  opt = optax.adam(learning_rate)
  wb = (jnp.zeros(z.shape[1], z.dtype), jnp.zeros((), z.dtype))

  def loss(wb):
    w, b = wb
    xent = optax.sigmoid_binary_cross_entropy(z @ w + b, y).mean()
    return xent + 0.5 * l2 * jnp.sum(jnp.square(w))

  def step(carry, _):
    wb, state = carry
    value, grads = jax.value_and_grad(loss)(wb)
    updates, state = opt.update(grads, state, wb)
    return (optax.apply_updates(wb, updates), state), value

  (wb, _), losses = jax.lax.scan(step, (wb, opt.init(wb)), None, length=num_steps)
  return wb, losses


def fit_logistic(
  features: ArrayLike,
  labels: ArrayLike,
  *,
  num_steps: int = 500,
  learning_rate: float = 0.05,
  l2: float = 1e-3,
) -> LogisticParams:
  """Fits ``P(out of distribution | features)`` by L2-regularised logistic regression.

  Features are standardised with their training mean and standard deviation;
  the convex loss ``mean BCE + (l2 / 2) ‖w‖²`` is minimised full-batch by
  ``num_steps`` steps of optax's Adam from zero weights (deterministic: no key).

  Args:
    features: shape ``(batch, features)``, e.g. from :func:`uncertainty_features`.
    labels: 1 = out of distribution, 0 = in distribution, shape ``(batch,)``;
      both classes must be present.
    num_steps: optimisation steps.
    learning_rate: Adam's step size.
    l2: the weight penalty (not on the bias).

  Returns:
    The :class:`LogisticParams`.

  Raises:
    ValueError: bad shapes, non-finite features, labels not 0/1 or a single
      class, or bad settings.

  References:
    Cox, D. R. (1958). The Regression Analysis of Binary Sequences. JRSS B 20(2).
    Kingma, D. P., Ba, J. (2015). Adam: A Method for Stochastic Optimization. ICLR.
  """
  num_steps = check_positive_int(num_steps, "num_steps")
  if not _check_nonnegative(learning_rate, "learning_rate") > 0:
    raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
  l2 = _check_nonnegative(l2, "l2")
  f = _check_features(features)
  y = _checks.check_binary_labels(labels, f.shape[0]).astype(f.dtype)
  loc = f.mean(axis=0)
  std = f.std(axis=0)
  scale = jnp.where(std > 0, std, 1.0)
  (w, b), _ = _train((f - loc[None]) / scale[None], y, learning_rate, l2, num_steps=num_steps)
  return LogisticParams(weights=w, bias=b, loc=loc, scale=scale)


def choose_threshold(
  params: LogisticParams, features: ArrayLike, labels: ArrayLike, target_tpr: float = 0.95
) -> Rejector:
  """Chooses the rejection threshold on held-out data for a target true-positive rate.

  The highest threshold on the predicted probability that rejects at least
  ``target_tpr`` of the held-out out-of-distribution inputs
  (:func:`jaxuq.metrics.threshold_at_tpr`): the fewest in-distribution inputs
  rejected among thresholds reaching the target. Use data not seen by
  :func:`fit_logistic`.

  Args:
    params: from :func:`fit_logistic`.
    features: held-out features, shape ``(batch, features)``.
    labels: 1 = out of distribution, 0 = in distribution, both present.
    target_tpr: the fraction of out-of-distribution inputs to reject, in ``(0, 1]``.

  Returns:
    A :class:`Rejector` with the achieved rates on these data.

  Raises:
    ValueError: bad shapes or labels, ``target_tpr`` outside ``(0, 1]``.
  """
  target_tpr = check_target_tpr(target_tpr)
  op = threshold_at_tpr(predict_proba(params, features), labels, target_tpr)
  return Rejector(params=params, threshold=op.threshold, tpr=op.tpr, fpr=op.fpr)


def decide(rejector: Rejector, features: ArrayLike) -> Decision:
  """Accepts or rejects each input: reject where ``P(out of distribution) >= threshold``.

  Args:
    rejector: from :func:`choose_threshold` or :func:`fit_rejector`.
    features: shape ``(batch, features)``.

  Returns:
    A :class:`Decision` (``reject``, ``probability``).

  Raises:
    ValueError: ``features`` has the wrong shape or non-finite values.
  """
  p = predict_proba(rejector.params, features)
  return Decision(reject=p >= rejector.threshold, probability=p)


def fit_rejector(
  features: ArrayLike,
  labels: ArrayLike,
  heldout_features: ArrayLike,
  heldout_labels: ArrayLike,
  target_tpr: float = 0.95,
  **fit_kwargs,
) -> Rejector:
  """:func:`fit_logistic` on one split, then :func:`choose_threshold` on another.

  Args:
    features: training features, shape ``(batch, features)``.
    labels: training labels, 1 = out of distribution.
    heldout_features: features for choosing the threshold.
    heldout_labels: their labels.
    target_tpr: the fraction of out-of-distribution inputs to reject.
    **fit_kwargs: ``num_steps``, ``learning_rate``, ``l2`` of :func:`fit_logistic`.

  Returns:
    A :class:`Rejector`.

  Raises:
    ValueError: as :func:`fit_logistic` and :func:`choose_threshold`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxuq import reject
    >>> x = jax.random.normal(jax.random.key(0), (200, 2))
    >>> y = (jnp.arange(200) % 2).astype(jnp.int32)
    >>> x = x + 4.0 * y[:, None]  # out-of-distribution inputs are shifted
    >>> r = reject.fit_rejector(x[:100], y[:100], x[100:], y[100:], target_tpr=0.9)
    >>> bool(r.tpr >= 0.9), bool(r.fpr < 0.1)
    (True, True)
  """
  params = fit_logistic(features, labels, **fit_kwargs)
  return choose_threshold(params, heldout_features, heldout_labels, target_tpr)
