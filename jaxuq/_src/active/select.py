"""Acquisition: from MC samples (or scores) of a pool to the indices to label next.

:func:`acquisition` builds an :class:`Acquisition`, a named tuple of pure
functions with its settings fixed, as optax builds a ``GradientTransformation``.
Selection is top-k (ties broken uniformly at random by the key), optionally
stochastic (Kirsch et al. 2023): the Gumbel-top-k trick draws ``k`` indices
without replacement with probabilities proportional to ``score**beta``
("power"), ``exp(beta * score)`` ("softmax") or ``rank**-beta`` ("softrank").
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.active.batchbald import batchbald_select
from jaxuq._src.active.scores import POINTWISE
from jaxuq._src.keys import check_key_type, check_positive_int
from jaxuq._src.metrics.samples import check_prob_samples

NAMES = (*POINTWISE, "random", "batchbald")
STOCHASTIC = (None, "power", "softmax", "softrank")
MIN_BETA = 1e-30  # Gumbel noise (below ~90 in float32) / beta stays finite


class Acquisition(NamedTuple):
  """An acquisition function: pure functions with its settings fixed.

  Attributes:
    name: one of ``"bald"``, ``"max_entropy"``, ``"variation_ratios"``,
      ``"mean_std"``, ``"random"``, ``"batchbald"``.
    select: ``select(key, probs, k) -> (k,) int32``, distinct indices into the
      ``n`` candidates of ``probs`` ``(samples, n, classes)``, best first.
      Deterministic given ``key``; jit it with ``k`` static
      (``jax.jit(acq.select, static_argnums=2)``).
    select_from_scores: ``select_from_scores(key, scores, k) -> (k,) int32``
      from precomputed per-point scores ``(n,)`` (e.g. by
      :func:`jaxuq.active.score_pool`); ``None`` for BatchBALD, which needs
      the samples. ``"random"`` reads only ``n`` from ``scores``.
    score: ``score(probs) -> (n,)``, higher = acquire first; ``None`` for
      ``"random"`` and ``"batchbald"``.
    consistent: the samples must come from one network per sample for every
      candidate (the same dropout masks; BatchBALD's joint entropy needs it).
  """

  name: str
  select: Callable[[jax.Array, ArrayLike, int], jax.Array]
  select_from_scores: Callable[[jax.Array, ArrayLike, int], jax.Array] | None
  score: Callable[[ArrayLike], jax.Array] | None
  consistent: bool


def check_k(k: object, n: int) -> int:
  if isinstance(k, jax.core.Tracer):
    raise TypeError("k must be a static Python int; jit select with static_argnums=2")
  k = check_positive_int(k, "k")
  if k > n:
    raise ValueError(f"k must be at most the number of candidates n = {n}, got k = {k}")
  return k


def _check_scores(scores: ArrayLike) -> jax.Array:
  s = jnp.asarray(scores)
  if s.ndim != 1 or s.size == 0 or not jnp.issubdtype(s.dtype, jnp.floating):
    raise ValueError(f"scores must be a non-empty 1-D float array (n,), got {s.shape} {s.dtype}")
  if not isinstance(s, jax.core.Tracer) and not bool(jnp.isfinite(s).all()):
    raise ValueError("scores must be finite, got nan or inf")
  return s


@functools.partial(jax.jit, static_argnames=("k", "stochastic", "beta"))
def _top_k(key: jax.Array, scores: jax.Array, k: int, stochastic: str | None, beta: float):
  """Indices of the ``k`` largest perturbed scores; ties go uniformly at random."""
  noise_key, tie_key = jax.random.split(key)
  s = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
  if stochastic == "power":  # score <= 0 (rounding of an MI of 0) has probability 0
    s = jnp.log(jnp.where(s > 0, s, 0.0))
  elif stochastic == "softrank":
    # ranks of tied scores in a random order (the permutation below), not in pool order
    shuffled = jax.random.permutation(tie_key, s.shape[0])
    by_score = shuffled[jnp.argsort(-s[shuffled], stable=True)]
    rank = (
      jnp.empty(s.shape, jnp.int32).at[by_score].set(jnp.arange(1, s.shape[0] + 1, dtype=jnp.int32))
    )
    s = -jnp.log(rank.astype(s.dtype))
  if stochastic is not None and beta != math.inf:
    s = s + jax.random.gumbel(noise_key, s.shape, s.dtype) / beta
  order = jax.random.permutation(tie_key, s.shape[0])
  _, top = jax.lax.top_k(s[order], k)
  return order[top].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("n", "k"))
def _random(key: jax.Array, n: int, k: int) -> jax.Array:
  return jax.random.permutation(key, n)[:k].astype(jnp.int32)


def _pointwise(name: str, stochastic: str | None, beta: float) -> Acquisition:
  score = POINTWISE[name][0]

  def select_from_scores(key: jax.Array, scores: ArrayLike, k: int) -> jax.Array:
    check_key_type(key)
    s = _check_scores(scores)
    return _top_k(key, s, check_k(k, s.shape[0]), stochastic, beta)

  def select(key: jax.Array, probs: ArrayLike, k: int) -> jax.Array:
    check_key_type(key)
    p = check_prob_samples(probs)
    return _top_k(key, score(p), check_k(k, p.shape[1]), stochastic, beta)

  return Acquisition(name, select, select_from_scores, score, False)


def _random_acquisition() -> Acquisition:
  def select_from_scores(key: jax.Array, scores: ArrayLike, k: int) -> jax.Array:
    check_key_type(key)
    n = _check_scores(scores).shape[0]
    return _random(key, n, check_k(k, n))

  def select(key: jax.Array, probs: ArrayLike, k: int) -> jax.Array:
    check_key_type(key)
    n = check_prob_samples(probs).shape[1]
    return _random(key, n, check_k(k, n))

  return Acquisition("random", select, select_from_scores, None, False)


def _batchbald(num_configs: int) -> Acquisition:
  def select(key: jax.Array, probs: ArrayLike, k: int) -> jax.Array:
    check_key_type(key)
    p = check_prob_samples(probs)
    return batchbald_select(key, p, k=check_k(k, p.shape[1]), num_configs=num_configs)

  return Acquisition("batchbald", select, None, None, True)


@functools.cache
def _build(name: str, stochastic: str | None, beta: float, num_configs: int) -> Acquisition:
  if name == "random":
    return _random_acquisition()
  if name == "batchbald":
    return _batchbald(num_configs)
  return _pointwise(name, stochastic, beta)


def acquisition(
  name: str, *, stochastic: str | None = None, beta: float = 1.0, num_configs: int = 1000
) -> Acquisition:
  """Builds an acquisition function by name.

  Args:
    name: ``"bald"``, ``"max_entropy"``, ``"variation_ratios"``,
      ``"mean_std"`` (top-k of :func:`jaxuq.active.bald` etc.), ``"random"``
      (``k`` distinct indices uniformly at random) or ``"batchbald"``
      (greedy BatchBALD, see :func:`jaxuq.active.joint_entropy`).
    stochastic: for the per-point scores: ``None`` (top-k, ties broken at
      random by the key), or stochastic batch acquisition: ``"power"``
      (probability of each pick ``∝ score**beta``; scores ``<= 0`` never
      drawn before positive ones), ``"softmax"`` (``∝ exp(beta * score)``) or
      ``"softrank"`` (``∝ rank**-beta``, rank 1 = highest score). Drawn
      without replacement by the Gumbel-top-k trick.
    beta: the stochastic "coldness", positive; ``math.inf`` gives top-k.
    num_configs: BatchBALD only: at most this many label configurations of
      the chosen points are enumerated; beyond, this many are drawn. Memory of
      one step is about ``4 * samples * num_configs * classes`` bytes plus
      blocks of candidates bounded to 16 MiB; time about
      ``samples * num_configs * n * classes`` per pick.

  Returns:
    An :class:`Acquisition` (the same object for the same settings, so jitted
    selections compile once).

  Raises:
    ValueError: an unknown ``name`` or ``stochastic`` (the message lists the
      valid ones), ``beta`` not positive, ``num_configs`` not a positive int, or
      ``stochastic`` given for ``"random"`` or ``"batchbald"``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxuq.active import acquisition
    >>> p = jnp.array([[[0.9, 0.1], [1.0, 0.0], [0.5, 0.5]],
    ...                [[0.1, 0.9], [1.0, 0.0], [0.5, 0.5]]])
    >>> acquisition("bald").select(jax.random.key(0), p, 1).tolist()  # the disagreeing one
    [0]

  References:
    Houlsby, N., Huszár, F., Ghahramani, Z., Lengyel, M. (2011). Bayesian
    Active Learning for Classification and Preference Learning. arXiv:1112.5745.
    Gal, Y., Islam, R., Ghahramani, Z. (2017). Deep Bayesian Active Learning
    with Image Data. ICML.
    Kirsch, A., van Amersfoort, J., Gal, Y. (2019). BatchBALD: Efficient and
    Diverse Batch Acquisition for Deep Bayesian Active Learning. NeurIPS.
    Kirsch, A., Farquhar, S., Atighehchian, P., Jesson, A., Branchaud-Charron,
    F., Gal, Y. (2023). Stochastic Batch Acquisition: A Simple Baseline for
    Deep Active Learning. TMLR.
  """
  if name not in NAMES:
    raise ValueError(f"name must be one of {', '.join(map(repr, NAMES))}; got {name!r}")
  if stochastic not in STOCHASTIC:
    raise ValueError(f"stochastic must be one of {STOCHASTIC}, got {stochastic!r}")
  if stochastic is not None and name in ("random", "batchbald"):
    raise ValueError(
      f"stochastic={stochastic!r} applies to per-point scores only, not to {name!r}; "
      "use stochastic=None"
    )
  if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not beta > 0:
    raise ValueError(f"beta must be a positive float (math.inf for top-k), got {beta!r}")
  if beta < MIN_BETA:
    raise ValueError(
      f"beta must be at least {MIN_BETA:g}, got {beta!r}: the float32 Gumbel noise divided "
      "by a smaller beta overflows to inf, and the selection would no longer follow the "
      "scores (a tiny beta is a uniformly random choice: use acquisition('random'))"
    )
  num_configs = check_positive_int(num_configs, "num_configs")
  return _build(name, stochastic, float(beta), num_configs)
