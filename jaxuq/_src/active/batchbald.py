"""BatchBALD: the joint mutual information of a batch, chosen greedily.

The state of the greedy search is a set of label configurations ``y_A`` of
the points chosen so far, each with ``log Π_{j∈A} p_s(y_j)`` for every MC
sample ``s`` (one network per sample: the probabilities of every candidate
must come from the same masks, "consistent MC dropout"). While there are at
most ``num_configs`` configurations they are all enumerated (weights
``P(y_A)``); beyond, ``num_configs`` configurations are drawn from ``P(y_A)``
(weights ``1/num_configs``) and extended one drawn label at a time. A
candidate ``i`` then scores ``Σ_g q_g H[P(y_i | y_A = g)] - E_s H[p_s(y_i)]``,
the gain ``I[y_A, y_i; ω] - I[y_A; ω]`` (the constant ``H[y_A]`` dropped).
Everything runs in log space, so long batches do not underflow.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import entr
from jax.typing import ArrayLike

from jaxuq._src.keys import check_key, check_positive_int
from jaxuq._src.metrics.samples import check_prob_samples

# Elements of (samples x configurations x classes) that one block of candidates may use.
_BLOCK_ELEMENTS = 1 << 22
# Largest enumeration joint_entropy(key=None) accepts: samples x classes^n.
_EXACT_ELEMENTS = 1 << 26
_HIGHEST = jax.lax.Precision.HIGHEST


class _Configs(NamedTuple):
  log_joint: jax.Array  # (samples, G): log Π_{j∈A} p_s(y_gj) of each configuration g
  weight: jax.Array  # (G,): P(y_A = g) when enumerated, 1/G when sampled
  exact: bool  # static: every configuration is enumerated


def _start(num_samples: int, dtype) -> _Configs:
  return _Configs(jnp.zeros((num_samples, 1), dtype), jnp.ones((1,), dtype), True)


def _posterior(log_joint: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Weights of the samples given each configuration ``(S, G)``, and ``log P(y_A = g)``."""
  top = log_joint.max(axis=0)
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  e = jnp.exp(log_joint - top[None])
  total = e.sum(axis=0)
  w = e / jnp.where(total > 0, total, 1.0)[None]
  return w, jnp.log(total) + top - math.log(log_joint.shape[0])


def _conditional_entropy(configs: _Configs, candidates: jax.Array) -> jax.Array:
  """``Σ_g q_g H[P(y_i | g)]`` for candidates ``(n, S, C)``, in blocks of bounded memory."""
  w, _ = _posterior(configs.log_joint)
  num_configs, classes = w.shape[1], candidates.shape[-1]
  block = max(1, _BLOCK_ELEMENTS // (num_configs * classes))

  def one(p: jax.Array) -> jax.Array:  # (S, C) -> ()
    cond = jnp.einsum("sg,sc->gc", w, p, precision=_HIGHEST)
    return jnp.dot(configs.weight, entr(cond).sum(axis=-1), precision=_HIGHEST)

  return jax.lax.map(one, candidates, batch_size=min(block, candidates.shape[0]))


def _extend(configs: _Configs, p: jax.Array, key: jax.Array, num_configs: int) -> _Configs:
  """The configurations of ``A ∪ {j}`` from those of ``A`` and ``p = p_s(y_j)``, ``(S, C)``."""
  num_samples, count = configs.log_joint.shape
  classes = p.shape[-1]
  expanded = configs.log_joint[:, :, None] + jnp.log(p)[:, None, :]  # (S, G, C)
  if configs.exact and count * classes <= num_configs:
    log_joint = expanded.reshape(num_samples, count * classes)
    return _Configs(log_joint, jnp.exp(_posterior(log_joint)[1]), True)
  w, _ = _posterior(configs.log_joint)
  cond = jnp.einsum("sg,sc->gc", w, p, precision=_HIGHEST)  # P(y_j | y_A = g)
  if configs.exact:  # draw (g, y_j) pairs from P(y_A, y_j)
    joint = (configs.weight[:, None] * cond).reshape(-1)
    flat = jax.random.categorical(key, jnp.log(joint), shape=(num_configs,))
    log_joint = expanded.reshape(num_samples, count * classes)[:, flat]
  else:  # each drawn configuration draws its own y_j
    label = jax.random.categorical(key, jnp.log(cond), axis=-1)
    log_joint = jnp.take_along_axis(expanded, label[None, :, None], axis=2)[..., 0]
  weight = jnp.full((num_configs,), 1.0 / num_configs, log_joint.dtype)
  return _Configs(log_joint, weight, False)


def _wide(p: jax.Array) -> jax.Array:
  return p.astype(jnp.promote_types(p.dtype, jnp.float32))


@functools.partial(jax.jit, static_argnames=("num_configs",))
def _joint_entropy(key: jax.Array, p: jax.Array, num_configs: int) -> jax.Array:
  p = _wide(p)
  configs = _start(p.shape[0], p.dtype)
  for j, k in enumerate(jax.random.split(key, max(p.shape[1] - 1, 1))[: p.shape[1] - 1]):
    configs = _extend(configs, p[:, j], k, num_configs)
  log_marginal = _posterior(configs.log_joint)[1]
  head = -jnp.where(configs.weight > 0, configs.weight * log_marginal, 0.0).sum()
  return head + _conditional_entropy(configs, jnp.swapaxes(p[:, -1:], 0, 1))[0]


def joint_entropy(
  probs: ArrayLike, *, key: jax.Array | None = None, num_configs: int = 1000
) -> jax.Array:
  """The entropy of the joint prediction ``H[y_1, ..., y_n]`` of ``n`` points.

  ``P(y_1..y_n) = (1/S) Σ_s Π_j p_s(y_j)``: sample ``s`` must be one network
  for every point (the same dropout masks, see :func:`jaxuq.active.sample_pool`
  with ``consistent=True``). Without ``key`` every one of the ``classes^n``
  configurations is enumerated. With ``key``, configurations of the first
  ``n - 1`` points are enumerated while there are at most ``num_configs`` of
  them and drawn from ``P`` beyond (``num_configs`` draws); the last point's
  labels are always summed exactly. The estimate is unbiased, with a standard
  error that falls as ``1/sqrt(num_configs)``.

  Args:
    probs: class probabilities, shape ``(samples, n, classes)``.
    key: a typed PRNG key to estimate from drawn configurations; ``None`` for
      the exact enumeration.
    num_configs: how many configurations at most (enumerated or drawn).

  Returns:
    A scalar, in nats (float32 at least).

  Raises:
    ValueError: bad ``probs`` (as :func:`jaxuq.active.bald`), a bad
      ``num_configs``, or ``key=None`` with more than ``2**26`` enumerated
      elements (``samples * classes**n``).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.active import joint_entropy
    >>> p = jnp.array([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    >>> round(float(joint_entropy(p)), 4)  # two copies of one coin: log 2, not 2 log 2
    0.6931

  References:
    Kirsch, A., van Amersfoort, J., Gal, Y. (2019). BatchBALD: Efficient and
    Diverse Batch Acquisition for Deep Bayesian Active Learning. NeurIPS.
  """
  p = check_prob_samples(probs)
  num_configs = check_positive_int(num_configs, "num_configs")
  samples, n, classes = p.shape
  if key is None:
    if samples * classes**n > _EXACT_ELEMENTS:
      raise ValueError(
        f"joint_entropy(key=None) enumerates samples * classes**n = {samples} * {classes}**{n} "
        f"elements, more than 2**26; pass key=jax.random.key(...) to estimate it from "
        "num_configs drawn configurations"
      )
    return _joint_entropy(jax.random.key(0), p, num_configs=max(classes ** (n - 1), 1))
  check_key(key)
  return _joint_entropy(key, p, num_configs=num_configs)


@functools.partial(jax.jit, static_argnames=("k", "num_configs"))
def batchbald_select(key: jax.Array, p: jax.Array, k: int, num_configs: int) -> jax.Array:
  """The greedy BatchBALD batch of ``k`` indices (arguments already checked).

  Steps whose configurations are enumerated (their number grows) are unrolled;
  once they are drawn (a fixed number), the remaining steps run in one loop.
  """
  p = _wide(p)
  candidates = jnp.swapaxes(p, 0, 1)  # (n, S, C)
  expected = entr(p).sum(axis=-1).mean(axis=0)  # E_s H[p_s(y_i)], (n,)
  keys = jax.random.split(key, k)

  def pick(configs: _Configs, taken: jax.Array) -> jax.Array:
    gain = _conditional_entropy(configs, candidates) - expected
    return jnp.argmax(jnp.where(taken, -jnp.inf, gain)).astype(jnp.int32)

  configs = _start(p.shape[0], p.dtype)
  taken = jnp.zeros(p.shape[1], bool)
  chosen = jnp.zeros(k, jnp.int32)
  step = 0
  while step < k and configs.exact:
    j = pick(configs, taken)
    chosen, taken = chosen.at[step].set(j), taken.at[j].set(True)
    if step + 1 < k:
      configs = _extend(configs, candidates[j], keys[step], num_configs)
    step += 1
  if step == k:
    return chosen

  def body(i, carry):
    log_joint, taken, chosen = carry
    configs = _Configs(log_joint, jnp.full((num_configs,), 1.0 / num_configs, p.dtype), False)
    j = pick(configs, taken)
    extended = _extend(configs, candidates[j], keys[i], num_configs).log_joint
    return extended, taken.at[j].set(True), chosen.at[i].set(j)

  _, _, chosen = jax.lax.fori_loop(step, k, body, (configs.log_joint, taken, chosen))
  return chosen
