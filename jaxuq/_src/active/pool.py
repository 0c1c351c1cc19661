"""MC dropout over an unlabelled pool, chunk of examples by chunk: scores or samples.

Masks never depend on the chunking: sample ``s`` of pool example ``g`` is
``fn(fold_in(keys[s], g), x_g)`` (its own masks, as
:func:`jaxuq.mc_reduce_dataset` with ``per_example_keys=True``) or, with
``consistent=True``, ``fn(keys[s], x_g)`` (one network per sample for the
whole pool, as BatchBALD needs), with ``keys = jax.random.split(key,
num_samples)`` and each example run alone (batch of one, so batch statistics
never mix examples).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from tqdm.auto import tqdm

from jaxuq._src.active.scores import POINTWISE
from jaxuq._src.active.select import Acquisition, check_k
from jaxuq._src.keys import check_key, check_positive_int
from jaxuq._src.metrics import _checks
from jaxuq._src.reduce import mc_reduce
from jaxuq._src.reducers import classification_reducer
from jaxuq._src.sampling import mc_sample


@struct.dataclass
class _PoolExamples:
  """``fn`` run on each example alone, with the example's key or the sample's shared one."""

  fn: Any
  consistent: bool = struct.field(pytree_node=False)
  from_logits: bool = struct.field(pytree_node=False)

  def __call__(self, key: jax.Array, index: jax.Array, x: jax.Array) -> jax.Array:
    def one(i, example):
      k = key if self.consistent else jax.random.fold_in(key, i)
      out = self.fn(k, example[None])
      if not isinstance(out, jax.Array) or out.ndim < 2:  # checked while tracing
        what = type(out).__name__ if not isinstance(out, jax.Array) else f"shape {out.shape}"
        raise TypeError(
          "predictive_fn must return one array of class probabilities (or logits), shape "
          f"(batch, classes), got {what} for a batch of one; select the probabilities "
          "first, e.g. lambda key, x: f(key, x)['probs']"
        )
      return out[0]

    out = jax.vmap(one)(index, x)
    return jax.nn.softmax(out, axis=-1) if self.from_logits else out


def _chunks(pool_x: Any, chunk_size: int, progress: bool | None) -> Iterator[tuple]:
  """(rows, indices, x) per chunk; the last is padded to ``chunk_size`` rows.

  A JAX array is sliced where it lives; anything else (NumPy, ``np.memmap``)
  is read chunk by chunk on the host and sent to the device.
  """
  n = len(pool_x)
  size = min(chunk_size, n)
  xp: Any = jnp if isinstance(pool_x, jax.Array) else np
  with tqdm(total=n, unit="ex", disable=None if progress is None else not progress) as bar:
    for start in range(0, n, size):
      x = xp.asarray(pool_x[start : start + size])
      rows = len(x)
      index = np.arange(start, start + size, dtype=np.uint32)
      if rows < size:
        x = xp.concatenate([x, xp.repeat(x[-1:], size - rows, axis=0)])
      yield rows, jnp.asarray(index), jax.device_put(x)
      bar.update(rows)


def _over_pool(
  run, axis, key, predictive_fn, pool_x, num_samples, chunk_size, consistent, from_logits, progress
) -> jax.Array:
  """``run(fn, index, x, num_samples)`` on every chunk, joined along the example ``axis``."""
  check_key(key)
  if not callable(predictive_fn):
    raise TypeError(
      f"predictive_fn must be callable as fn(key, x), got {type(predictive_fn).__name__}"
    )
  if np.ndim(pool_x) < 1 or len(pool_x) == 0:
    raise ValueError(f"pool_x must hold at least one example, got shape {np.shape(pool_x)}")
  num_samples = check_positive_int(num_samples, "num_samples")
  chunk_size = check_positive_int(chunk_size, "chunk_size")
  fn = _PoolExamples(predictive_fn, bool(consistent), bool(from_logits))
  pieces: list[jax.Array] = []
  for rows, index, x in _chunks(pool_x, chunk_size, progress):
    out, mean_probs = run(fn, index, x, num_samples)
    if not pieces:  # the first chunk's values: logits or sigmoids would give finite garbage
      _checks.check_simplex(
        mean_probs[:rows],
        "predictive_fn's outputs (averaged over the samples; pass from_logits=True for logits)",
      )
    pieces.append(jax.lax.slice_in_dim(out, 0, rows, axis=axis))
  return jnp.concatenate(pieces, axis=axis)


def _score_name(score: str | Acquisition) -> str:
  name = score.name if isinstance(score, Acquisition) else score
  if name not in POINTWISE:
    why = {
      "batchbald": "; BatchBALD needs sample_pool(..., consistent=True)",
      "random": "; random acquisition scores nothing (use acquire or jax.random.permutation)",
    }.get(name, "")
    raise ValueError(
      f"score must be one of {', '.join(map(repr, POINTWISE))} (or an Acquisition of one), "
      f"got {name!r}{why}"
    )
  return name


def score_pool(
  key: jax.Array,
  predictive_fn: Callable[..., jax.Array],
  pool_x: np.ndarray | jax.Array,
  *,
  num_samples: int,
  score: str | Acquisition,
  chunk_size: int = 512,
  consistent: bool = False,
  from_logits: bool = False,
  sample_chunk_size: int | None = None,
  progress: bool | None = False,
) -> jax.Array:
  """Per-point acquisition scores of a pool, streamed: no chunk of examples keeps its samples.

  Each chunk of ``chunk_size`` examples is reduced over ``num_samples``
  passes with :func:`jaxuq.mc_reduce` and :func:`jaxuq.classification_reducer`
  (memory: one chunk of examples times ``sample_chunk_size`` samples), and
  the score is read from the summary. The masks are those of
  :func:`sample_pool` with the same key and ``consistent``, whatever the
  chunk size. BALD here is the reducer's difference of entropies, which
  differs from :func:`jaxuq.active.bald` of the samples by float32 rounding.

  Args:
    key: a typed PRNG key.
    predictive_fn: ``f(key, x) -> (batch, classes)`` probabilities (or logits
      with ``from_logits=True``), e.g. :func:`jaxuq.from_linen`'s.
    pool_x: the pool, ``(n, ...)``: an array or a ``np.memmap``.
    num_samples: MC dropout passes, a positive int.
    score: ``"bald"``, ``"max_entropy"``, ``"variation_ratios"``,
      ``"mean_std"``, or an :class:`Acquisition` of one of them.
    chunk_size: examples per chunk (one compilation serves every chunk).
    consistent: one network per sample for the whole pool (default: each
      example its own masks).
    from_logits: ``predictive_fn`` returns logits.
    sample_chunk_size: samples vmapped at once (``None``: chosen for memory).
    progress: show a progress bar (``None``: when the output is a terminal).

  Returns:
    Scores ``(n,)``, higher = acquire first.

  Raises:
    TypeError: ``key`` not a typed key, ``predictive_fn`` not callable or not
      returning one ``(batch, classes)`` array.
    ValueError: an unknown ``score``, an empty pool, a bad int setting, or
      outputs that are not probabilities (checked on the first chunk; logits
      need ``from_logits=True``).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxuq.active import score_pool
    >>> def f(key, x):  # a two-class "network" whose dropout flips the logit's sign
    ...   sign = jnp.where(jax.random.bernoulli(key, 0.5, x.shape), 1.0, -1.0)
    ...   return jax.nn.softmax(jnp.concatenate([x * sign, -x * sign], axis=-1))
    >>> s = score_pool(jax.random.key(0), f, jnp.array([[0.0], [3.0]]), num_samples=64,
    ...                score="bald", chunk_size=1)
    >>> bool(s[1] > s[0])
    True
  """
  read = POINTWISE[_score_name(score)][1]

  def run(fn, index, x, num_samples):
    summary = mc_reduce(
      fn,
      key,
      index,
      x,
      num_samples=num_samples,
      reducer=classification_reducer(),
      chunk_size=sample_chunk_size,
    )
    return read(summary), summary["mean_probs"]

  settings = (num_samples, chunk_size, consistent, from_logits, progress)
  return _over_pool(run, 0, key, predictive_fn, pool_x, *settings)


def sample_pool(
  key: jax.Array,
  predictive_fn: Callable[..., jax.Array],
  pool_x: np.ndarray | jax.Array,
  *,
  num_samples: int,
  chunk_size: int = 512,
  consistent: bool = True,
  from_logits: bool = False,
  sample_chunk_size: int | None = None,
  progress: bool | None = False,
) -> jax.Array:
  """The MC class probabilities ``(num_samples, n, classes)`` of a pool, chunk by chunk.

  What BatchBALD needs (the joint of the chosen points is read across
  candidates, so by default every candidate sees the same network per sample,
  ``consistent=True``). Memory: the result, ``4 * num_samples * n * classes``
  bytes in float32 (20 x 2,000 x 10: 1.6 MB; 20 x 60,000 x 10: 48 MB), plus
  one chunk's forward passes. Score a large pool first and pass the best
  candidates here when the result would not fit.

  Args:
    key, predictive_fn, pool_x, num_samples, chunk_size, from_logits, sample_chunk_size, progress:
      as :func:`score_pool`.
    consistent: one network per sample for the whole pool (default), or each
      example its own masks.

  Returns:
    Probabilities ``(num_samples, n, classes)``; ``score(result)`` equals
    :func:`score_pool` with the same key and ``consistent`` up to rounding.

  Raises:
    TypeError, ValueError: as :func:`score_pool`.
  """

  def run(fn, index, x, num_samples):
    probs = mc_sample(fn, key, index, x, num_samples=num_samples, chunk_size=sample_chunk_size)
    return probs, probs.mean(axis=0)

  settings = (num_samples, chunk_size, consistent, from_logits, progress)
  return _over_pool(run, 1, key, predictive_fn, pool_x, *settings)


def acquire(
  key: jax.Array,
  acquisition: Acquisition,
  predictive_fn: Callable[..., jax.Array],
  pool_x: np.ndarray | jax.Array,
  k: int,
  *,
  num_samples: int,
  chunk_size: int = 512,
  from_logits: bool = False,
  sample_chunk_size: int | None = None,
  progress: bool | None = False,
) -> jax.Array:
  """Chooses ``k`` pool examples to label: score (or sample) the pool, then select.

  Per-point scores are streamed with :func:`score_pool` (per-example masks);
  BatchBALD samples the pool with :func:`sample_pool` (``consistent=True``);
  ``"random"`` runs no network.

  Args:
    key: a typed PRNG key (split into a scoring and a selection key).
    acquisition: an :class:`Acquisition` from :func:`jaxuq.active.acquisition`.
    predictive_fn, pool_x, num_samples, chunk_size, from_logits, sample_chunk_size, progress: as
      :func:`score_pool`.
    k: how many examples, at most ``len(pool_x)``.

  Returns:
    ``(k,)`` int32 distinct indices into ``pool_x``.

  Raises:
    TypeError: ``acquisition`` is not an :class:`Acquisition`; and as
      :func:`score_pool`.
    ValueError: ``k`` not in ``[1, len(pool_x)]``; and as :func:`score_pool`.
  """
  if not isinstance(acquisition, Acquisition):
    raise TypeError(
      "acquisition must be a jaxuq.active.Acquisition, e.g. acquisition('bald'), got "
      f"{type(acquisition).__name__}"
    )
  check_key(key)
  if np.ndim(pool_x) < 1 or len(pool_x) == 0:
    raise ValueError(f"pool_x must hold at least one example, got shape {np.shape(pool_x)}")
  check_k(k, len(pool_x))  # before any scoring
  score_key, select_key = jax.random.split(key)
  options: dict[str, Any] = dict(
    num_samples=num_samples,
    chunk_size=chunk_size,
    from_logits=from_logits,
    sample_chunk_size=sample_chunk_size,
    progress=progress,
  )
  if acquisition.select_from_scores is None:
    probs = sample_pool(score_key, predictive_fn, pool_x, consistent=True, **options)
    return acquisition.select(select_key, probs, k)
  if acquisition.score is None:  # random
    return acquisition.select_from_scores(select_key, jnp.zeros(len(pool_x)), k)
  scores = score_pool(score_key, predictive_fn, pool_x, score=acquisition, **options)
  return acquisition.select_from_scores(select_key, scores, k)
