"""Conformal classification: LAC, APS and RAPS scores and their prediction sets.

A method is a :class:`ConformalClassifier`, a NamedTuple of two pure
functions with the hyperparameters fixed when it is built. Every method
first computes the score of every candidate class, ``(n, classes)``; a
calibration example's score is its label's entry, and the prediction set is
``class_scores <= threshold``. So the sets and the calibration scores come
from one computation, and the guarantee of :func:`calibrate` carries over.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.conformal.quantile import ThresholdLike, threshold_value
from jaxuq._src.keys import check_key
from jaxuq._src.metrics import _checks

_LAYOUT = "(n, classes), or MC samples (samples, n, classes)"


class ConformalClassifier(NamedTuple):
  """A conformal classification method: scores and prediction sets, hyperparameters fixed.

  Built by :func:`lac`, :func:`aps` or :func:`raps`. ``probs`` are class
  probabilities of shape ``(n, classes)`` (e.g. the MC dropout mean) or MC
  samples of them, ``(samples, n, classes)``, which are averaged first.

  Attributes:
    score: ``score(probs, labels) -> (n,)``, the calibration scores of the
      true labels (higher is less conforming); randomised methods take the
      key first: ``score(key, probs, labels)``.
    predict_set: ``predict_set(threshold, probs) -> (n, classes)`` boolean
      masks, ``True`` for the classes in the set; randomised methods take the
      key first: ``predict_set(key, threshold, probs)``. ``threshold`` is a
      :class:`ConformalThreshold` (or a scalar score threshold).
    randomized: whether the functions take a key.
  """

  score: Callable[..., jax.Array]
  predict_set: Callable[..., jax.Array]
  randomized: bool


def _check_probs(probs: ArrayLike) -> jax.Array:
  p = _checks.as_float(probs, "probs")
  if p.ndim not in (2, 3):
    raise ValueError(f"probs must have shape {_LAYOUT}, got shape {p.shape}")
  _checks.check_nonempty(p, "probs", _LAYOUT)
  _checks.check_simplex(p, "probs")
  return p


def _check_bool(value: object, name: str) -> bool:
  if not isinstance(value, bool):
    raise TypeError(f"{name} must be True or False, got {value!r}")
  return value


@functools.partial(jax.jit, static_argnames=("kind", "k_reg"))
def _class_scores(
  p: jax.Array, key: jax.Array | None, *, kind: str, lam: float, k_reg: int
) -> jax.Array:
  """Every class's score, ``(n, classes)``, in the result dtype of ``p``."""
  dtype = p.dtype
  p = _checks.widen(p)
  if p.ndim == 3:
    p = p.mean(axis=0)
  if kind == "lac":
    return _checks.narrow(1 - p, dtype)
  n, classes = p.shape
  # Classes by decreasing probability; ties go to the lower class index first.
  order = jnp.argsort(-p, axis=1, stable=True)
  ranked = jnp.take_along_axis(p, order, axis=1)
  # The mass ranked strictly before each class (an exclusive cumulative sum).
  above = jnp.concatenate([jnp.zeros((n, 1), p.dtype), jnp.cumsum(ranked, axis=1)[:, :-1]], 1)
  ranked_scores = above  # not randomised: u = 0
  if key is not None:
    # float32 draws (then cast) whatever jax_enable_x64 says: the same sets in both modes
    u = jax.random.uniform(key, (n, 1), jnp.float32).astype(p.dtype)
    ranked_scores = above + u * ranked
  if kind == "raps":
    rank = jnp.arange(1, classes + 1, dtype=p.dtype)[None, :]
    ranked_scores = ranked_scores + lam * jnp.maximum(rank - k_reg, 0)
  rows = jnp.arange(n)[:, None]  # back to class order: a scatter, cheaper than a second sort
  scores = jnp.zeros_like(ranked_scores).at[rows, order].set(ranked_scores, unique_indices=True)
  return _checks.narrow(scores, dtype)


def _build(kind: str, randomized: bool, lam: float = 0.0, k_reg: int = 0) -> ConformalClassifier:
  settings = {"kind": kind, "lam": lam, "k_reg": k_reg}

  def label_scores(key: jax.Array | None, probs: ArrayLike, labels: ArrayLike) -> jax.Array:
    p = _check_probs(probs)
    y = _checks.check_labels(labels, p.shape[-2:-1], p.shape[-1])
    if key is not None:
      check_key(key)
    scores = _class_scores(p, key, **settings)
    return jnp.take_along_axis(scores, y[:, None], axis=1)[:, 0]

  def sets(key: jax.Array | None, threshold: ThresholdLike, probs: ArrayLike) -> jax.Array:
    t = threshold_value(threshold)
    p = _check_probs(probs)
    if key is not None:
      check_key(key)
    return _class_scores(p, key, **settings) <= t

  if randomized:

    def score(key: jax.Array, probs: ArrayLike, labels: ArrayLike) -> jax.Array:
      """The calibration scores of ``labels``, shape ``(n,)``; one uniform draw per example."""
      return label_scores(key, probs, labels)

    def predict_set(key: jax.Array, threshold: ThresholdLike, probs: ArrayLike) -> jax.Array:
      """Boolean masks ``(n, classes)``: the classes whose score is at most ``threshold``."""
      return sets(key, threshold, probs)

    return ConformalClassifier(score, predict_set, True)

  def fixed_score(probs: ArrayLike, labels: ArrayLike) -> jax.Array:
    """The calibration scores of ``labels``, shape ``(n,)``."""
    return label_scores(None, probs, labels)

  def fixed_predict_set(threshold: ThresholdLike, probs: ArrayLike) -> jax.Array:
    """Boolean masks ``(n, classes)``: the classes whose score is at most ``threshold``."""
    return sets(None, threshold, probs)

  return ConformalClassifier(fixed_score, fixed_predict_set, False)


def lac() -> ConformalClassifier:
  """Least ambiguous set-valued classifiers (LAC, the "threshold" method): score ``1 - p_y``.

  The set holds every class with ``p_c >= 1 - threshold``. It gives the
  smallest average set size among sets with marginal coverage (for
  calibrated probabilities), but adapts little to hard examples: coverage
  is lower on them and higher on easy ones. The score is continuous in the
  probabilities, so there is nothing to randomise. Sets may be empty.

  Returns:
    A :class:`ConformalClassifier` with ``score(probs, labels)`` and
    ``predict_set(threshold, probs)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> lac = conformal.lac()
    >>> probs = jnp.array([[0.625, 0.25, 0.125], [0.25, 0.5, 0.25]])
    >>> lac.score(probs, jnp.array([1, 1])).tolist()  # 1 - 0.25, 1 - 0.5
    [0.75, 0.5]
    >>> lac.predict_set(0.75, probs).tolist()  # classes with p >= 0.25
    [[True, True, False], [True, True, True]]

  References:
    Sadinle, M., Lei, J., Wasserman, L. (2019). Least Ambiguous Set-Valued
    Classifiers With Bounded Error Levels. JASA 114(525), 223-234.
  """
  return _build("lac", False)


def aps(*, randomized: bool = False) -> ConformalClassifier:
  """Adaptive prediction sets (APS): the probability mass of the classes ranked up to the label.

  With the classes sorted by decreasing probability ``p_(1) >= p_(2) >= ...``
  (ties by class index) and ``r`` the label's rank, the score is
  ``p_(1) + ... + p_(r-1) + u p_(r)``; the set is every class whose score is
  at most the threshold, a run of top classes that grows on uncertain inputs.

  Not randomised, ``u = 0``: the mass ranked above the label, the smallest
  ``τ`` for which Romano et al.'s set "the top classes until their mass
  reaches ``τ``" holds it. The set is the top classes up to and including
  the first whose cumulative mass exceeds the threshold: never empty, and
  conservative, since every label ranked first scores 0 (when the top class
  is right more often than ``1 - alpha``, every set is the top class alone
  and the coverage is the accuracy).

  Randomised, ``u ~ Uniform(0, 1)``, one per example drawn as
  ``jax.random.uniform(key, (n, 1))``: the last class enters with a
  probability, which removes the ties. Coverage is then ``1 - alpha`` to
  within ``1/(n + 1)`` and the sets smaller; a set may be empty.

  Args:
    randomized: draw ``u`` uniformly (the functions then take ``key`` first).

  Returns:
    A :class:`ConformalClassifier`.

  Raises:
    TypeError: ``randomized`` not a bool.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> aps = conformal.aps()
    >>> probs = jnp.array([[0.625, 0.25, 0.125]])
    >>> aps.score(probs, jnp.array([1])).tolist()  # the mass ranked above class 1
    [0.625]
    >>> aps.predict_set(0.7, probs).tolist()  # masses above each class: 0, 0.625, 0.875
    [[True, True, False]]

  References:
    Romano, Y., Sesia, M., Candès, E. J. (2020). Classification with Valid and
    Adaptive Coverage. NeurIPS.
  """
  return _build("aps", _check_bool(randomized, "randomized"))


def raps(lam: float, k_reg: int, *, randomized: bool = False) -> ConformalClassifier:
  """Regularised adaptive prediction sets (RAPS): APS plus ``lam * max(0, rank - k_reg)``.

  The APS score of :func:`aps` plus a penalty on labels ranked below the
  ``k_reg`` top classes (``rank`` is 1-based), which keeps the long tail of
  small probabilities out of the sets: smaller, more stable sets. Not
  randomised with ``k_reg >= 1``, the sets are never empty.

  Args:
    lam: the penalty per rank beyond ``k_reg``, ``lam >= 0`` (``lam = 0`` is APS).
    k_reg: the number of top classes that go unpenalised, an int ``>= 0``.
    randomized: as :func:`aps`.

  Returns:
    A :class:`ConformalClassifier`.

  Raises:
    ValueError: ``lam`` negative or not finite, ``k_reg`` not a non-negative int.
    TypeError: ``randomized`` not a bool.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq import conformal
    >>> raps = conformal.raps(lam=0.5, k_reg=1)
    >>> probs = jnp.array([[0.625, 0.25, 0.125]])
    >>> raps.score(probs, jnp.array([2])).tolist()  # 0.875 + 0.5 * (3 - 1)
    [1.875]

  References:
    Angelopoulos, A. N., Bates, S., Malik, J., Jordan, M. I. (2021).
    Uncertainty Sets for Image Classifiers using Conformal Prediction. ICLR.
  """
  if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0 <= float(lam) < 1e300:
    raise ValueError(f"lam must be a finite float >= 0, got {lam!r}")
  if isinstance(k_reg, bool) or not isinstance(k_reg, numbers.Integral) or k_reg < 0:
    raise ValueError(f"k_reg must be an int >= 0, got {k_reg!r}")
  return _build("raps", _check_bool(randomized, "randomized"), float(lam), int(k_reg))
