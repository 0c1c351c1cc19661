"""Predictions of a trained deep ensemble, member axis first (like MC samples)."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxuq._src.adapters import from_linen
from jaxuq._src.keys import check_key, check_positive_int
from jaxuq._src.model_call import check_linen, mode_kwargs
from jaxuq._src.sampling import mc_sample
from jaxuq._src.static import Static
from jaxuq._src.training import TrainState, predict


def _member(tree: Any, k: int) -> Any:
  return jax.tree.map(lambda a: a[k], tree)


def member(states: Any, k: int) -> Any:
  """Member ``k`` of stacked ensemble states (or variables), as a single model's.

  ``k`` counts from 0; negative ``k`` counts from the end, as in Python.

  Raises:
    IndexError: ``k`` is not a member's index (JAX would clamp it to the last member).
    TypeError: ``k`` is not an int.
  """
  leaves = [a for a in jax.tree.leaves(states) if getattr(a, "ndim", 0) > 0]
  if isinstance(k, bool) or not isinstance(k, numbers.Integral):
    raise TypeError(f"k must be an int (a member's index), got {k!r}")
  count = leaves[0].shape[0] if leaves else 0
  if not -count <= int(k) < count:
    raise IndexError(f"k={k} is not a member of an ensemble of {count} (indices 0..{count - 1})")
  return _member(states, int(k))


def _stacked_variables(
  model: nn.Module, states: TrainState | Mapping[str, Any], x: jax.Array
) -> dict[str, Any]:
  """The members' variables, checked to carry a leading member axis over one model's shapes."""
  if isinstance(states, TrainState):
    variables = states.variables
  elif isinstance(states, Mapping) and "params" in states:
    variables = dict(states)
  else:
    raise TypeError("states must be a stacked TrainState or a stacked variables dict with 'params'")
  check_linen(model)
  one = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1], **mode_kwargs(model, False)))
  expected = jax.tree.map(jnp.shape, {k: one[k] for k in variables if k in one})
  given = jax.tree.map(jnp.shape, variables)
  if given == expected:
    raise ValueError(
      "states holds ONE model's variables (no leading member axis): ensemble_predict takes "
      "the stacked states of train_ensemble; for one model use jaxuq.train.predict(model, "
      "variables, x), or stack copies with jax.tree.map(lambda *a: jnp.stack(a), v1, v2, ...)"
    )
  leading = {
    s[0] if s else None for s in jax.tree.leaves(given, is_leaf=lambda t: isinstance(t, tuple))
  }
  stacked = jax.tree.map(lambda s: s[1:], given, is_leaf=lambda t: isinstance(t, tuple))
  if len(leading) != 1 or None in leading or stacked != expected:
    raise ValueError(
      f"states do not match {type(model).__name__}: expected one model's shapes {expected} "
      f"with a leading member axis, got {given}"
    )
  return variables


def ensemble_predict(
  model: nn.Module, states: TrainState | Mapping[str, Any], x: Any, *, batch_size: int = 1024
) -> jax.Array:
  """Deterministic predictions of every member (dropout off), member axis first.

  Args:
    model: the members' linen module.
    states: stacked ``TrainState`` (from :func:`train_ensemble`) or stacked variables.
    x: inputs ``(n, ...)``.
    batch_size: rows per forward pass.

  Returns:
    ``(num_members, n, ...)`` outputs (logits for a classifier): pass them to
    ``jaxuq.predictive_mean`` / ``predictive_std`` like MC samples.

  Raises:
    ValueError: ``states`` holds one model's variables (no member axis; use
      ``predict``) or variables of another model.
  """
  check_positive_int(batch_size, "batch_size")
  x = jnp.asarray(x)
  variables = _stacked_variables(model, states, x)
  return _ensemble_predict(Static(model), variables, x, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _ensemble_predict(model: Static, variables: Any, x: jax.Array, batch_size: int) -> jax.Array:
  # The model as a Static: compared by its settings, so one with unhashable fields (a list
  # of widths) is a valid static argument.
  return jax.vmap(lambda v: predict(model.value, v, x, batch_size=batch_size))(variables)


def ensemble_mc_sample(
  key: jax.Array,
  model: nn.Module,
  states: TrainState | Mapping[str, Any],
  x: Any,
  *,
  num_samples: int,
  chunk_size: int | None = None,
  shared_mask: bool = False,
) -> jax.Array:
  """MC dropout within every member: ``(num_members, num_samples, n, ...)``.

  Member ``k`` is sampled with ``jaxuq.mc_sample(jaxuq.from_linen(model,
  variables_k, train=False), keys[k], x, num_samples=...)`` (``deterministic=True``
  for a model that takes Flax's flag) where ``keys =
  jax.random.split(key, num_members)``: dropout on, BatchNorm on running
  averages. Reshape to ``(num_members * num_samples, n, ...)`` to pool the
  draws of all members as one predictive distribution.

  Args:
    key: typed PRNG key.
    model: the members' linen module (with dropout).
    states: stacked ``TrainState`` or stacked variables.
    x: inputs ``(n, ...)``.
    num_samples: MC passes per member.
    chunk_size: passed to ``mc_sample``.
    shared_mask: passed to ``from_linen``.

  Returns:
    Outputs with axes (member, sample, example, ...), each leaf of a pytree
    output so.
  """
  check_key(key)
  x = jnp.asarray(x)
  variables = _stacked_variables(model, states, x)
  num_members = jax.tree.leaves(variables)[0].shape[0]
  keys = jax.random.split(key, num_members)
  outs = []
  for k in range(num_members):
    mode = mode_kwargs(model, False)  # BatchNorm on running averages; from_linen turns dropout on
    fn = from_linen(model, _member(variables, k), shared_mask=shared_mask, **mode)
    outs.append(mc_sample(fn, keys[k], x, num_samples=num_samples, chunk_size=chunk_size))
  return jax.tree.map(lambda *a: jnp.stack(a), *outs)
