"""Setting up a loop: acquisition functions by name, eager checks, the resume fingerprint."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxuq._src.active import checks
from jaxuq._src.active.round import RoundConfig
from jaxuq._src.active.select import NAMES, Acquisition, acquisition
from jaxuq._src.keys import check_key, check_positive_int
from jaxuq._src.losses import check_labels, resolve_loss
from jaxuq._src.model_call import check_linen, mode_flag, mode_kwargs
from jaxuq._src.static import Static, digest, model_entries, value_entries
from jaxuq._src.training import init_state


def resolve_select(select: Any) -> tuple[Static, str, bool]:
  """An acquisition function, its fingerprint label, and whether it needs consistent samples.

  ``select`` is a name of :func:`jaxuq.active.acquisition`, an
  :class:`~jaxuq.active.Acquisition`, or any callable ``select(key, probs, k)``.
  Consistent samples (BatchBALD) are drawn with one dropout mask per pass
  shared by every scored row: each pass is one network.
  """
  if isinstance(select, str):
    if select not in NAMES:
      raise ValueError(
        f"unknown acquisition function {select!r}; the names are {', '.join(NAMES)} "
        "(or pass jaxuq.active.acquisition(...) or a callable select(key, probs, k))"
      )
    acq = acquisition(select)
    return Static(acq.select), select, acq.consistent
  if isinstance(select, Acquisition):
    return Static(select.select), f"{select.name}:{digest(select.select)}", select.consistent
  if not callable(select):
    raise TypeError(
      f"an acquisition function must be a name, an Acquisition or a callable "
      f"select(key, probs, k), got {select!r}"
    )
  return Static(select), "callable:" + digest(select), False


def _array_fingerprint(a: Any) -> list[Any]:
  h = np.ascontiguousarray(np.asarray(a))
  return [list(h.shape), str(h.dtype), hashlib.sha256(h.tobytes()).hexdigest()]


def prepare(
  key,
  model,
  optimizer,
  data,
  seeds,
  selects,
  options,
  shared_mask: bool = False,
  check_positions: bool = False,
) -> tuple[RoundConfig, Any]:
  """Checks every argument eagerly; returns the round config and the state's shape."""
  check_key(key)
  check_linen(model)
  mode_flag(model)
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer)}")
  o = options
  pool_subset = checks.check_sizes(
    len(data[1]), seeds.shape[1], o["acquisitions"], o["acquisition_size"], o["pool_subset"]
  )
  for name in ("num_samples", "epochs", "batch_size", "eval_batch_size"):
    check_positive_int(o[name], name)
  eval_samples = checks.check_optional_positive(o["eval_samples"], "eval_samples")
  members = checks.check_optional_positive(o["members"], "members")
  if members == 1:
    raise ValueError("members must be at least 2 (an ensemble) or None (MC dropout), got 1")
  warm_start = checks.check_flag(o["warm_start"], "warm_start")
  even_batches = checks.check_flag(o["even_batches"], "even_batches")
  hyperparams = o["hyperparams"]
  if hyperparams is not None and not callable(hyperparams):
    raise TypeError(f"hyperparams must be a callable count -> dict, got {hyperparams!r}")
  objective = resolve_loss(o["loss"])
  x0 = jnp.asarray(data[0][:1])
  shape = jax.eval_shape(lambda: init_state(key, model, optimizer, x0))
  out = jax.eval_shape(lambda v: model.apply(v, x0, **mode_kwargs(model, False)), shape.variables)
  if objective.classifier:
    check_labels(jnp.asarray(data[1]), out.shape[-1], "y_pool")
    check_labels(jnp.asarray(data[3]), out.shape[-1], "y_test")
  if hyperparams is not None:
    names = getattr(shape.opt_state, "hyperparams", None)
    wanted = set(hyperparams(jnp.int32(seeds.shape[1])))
    if names is None or not wanted <= set(names):
      raise ValueError(
        f"hyperparams sets {sorted(wanted)}, but the optimizer has no such injected "
        "hyperparameters: build it with optax.inject_hyperparams(...)(...) naming them"
      )
  cfg = RoundConfig(
    objective=objective, selects=tuple(selects), epochs=o["epochs"], batch_size=o["batch_size"],
    acquisition_size=o["acquisition_size"], pool_subset=pool_subset,
    num_samples=o["num_samples"], eval_samples=eval_samples,
    eval_batch_size=o["eval_batch_size"], warm_start=warm_start,
    hyperparams=None if hyperparams is None else Static(hyperparams), members=members,
    shared_mask=shared_mask, even_batches=even_batches, check_positions=check_positions,
  )  # fmt: skip
  return cfg, shape


def fingerprint(key, model, optimizer, data, seeds, labels, options, run_keys) -> dict[str, Any]:
  """What a checkpoint must match to be resumed: data, keys, seed sets, functions and settings.

  ``run_keys`` are the runs' own keys (``split(key, repeats)[r]``). With
  JAX's non-partitionable threefry that key depends on ``repeats``, so without
  them a grid of 3 repeats run one by one and resumed as 1 repeat would
  continue repeat 0's checkpoint with another key.
  """
  o = {
    k: v
    for k, v in options.items()
    if k not in ("checkpoint", "stop_after", "progress", "callback")
  }
  o["loss"] = o["loss"] if isinstance(o["loss"], str) else digest(o["loss"])
  o["hyperparams"] = None if o["hyperparams"] is None else digest(o["hyperparams"])
  if o.get("members") is None:  # MC dropout: the fingerprint of runs made before ensembles
    o.pop("members", None)
  if not o.get("even_batches"):  # Keras-style batches: that of runs made before the option
    o.pop("even_batches", None)
  return {
    "key": np.asarray(jax.random.key_data(key)).tolist(),
    **model_entries(model),
    "optimizer": digest(optimizer),
    "optimizer_deep": digest(optimizer, deep=True),
    "loss_deep": options["loss"]
    if isinstance(options["loss"], str)
    else digest(options["loss"], deep=True),
    **value_entries(optimizer, options["loss"], model),
    "data": [_array_fingerprint(a) for a in data],
    "seeds": seeds.tolist(),
    "selects": labels,
    "options": o,
    "run_keys": np.asarray(jax.random.key_data(run_keys)).tolist(),
  }
