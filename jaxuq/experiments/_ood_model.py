"""Models, training, prediction and the saved classifier of ``jaxuq ood`` / ``jaxuq classify``.

A saved classifier is a folder holding, per model ``NAME`` (``basic``, ``deep``):
``NAME.msgpack`` (the training state, written by ``jaxuq.train.train``, so
``--resume`` continues it) and ``NAME.json`` (the rejector, the number of MC
passes and how the model was trained).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxuq
from jaxuq import reject
from jaxuq.models import BasicCNN, DeepCNN
from jaxuq.train import (
  TrainState,
  ensemble_predict,
  init_state,
  predict,
  restore_checkpoint,
  train,
)
from jaxuq.train import train_ensemble as _train_ensemble

MODELS = {"basic": BasicCNN, "deep": DeepCNN}
LEARNING_RATE = 1e-3
BATCH_SIZE = 128


def make_model(name: str) -> nn.Module:
  """The seed's basic or deep CNN (10 logits)."""
  if name not in MODELS:
    raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
  return MODELS[name]()


def optimizer() -> optax.GradientTransformation:
  return optax.adam(LEARNING_RATE)


def fit(key: jax.Array, name: str, x: np.ndarray, y: np.ndarray, *, epochs: int,
        checkpoint: pathlib.Path, resume: bool, progress: bool) -> tuple[TrainState, dict, float]:  # fmt: skip
  """Trains one CNN with a checkpoint; without ``resume`` a stale checkpoint is removed first.

  ``loop='python'`` (jitted steps in a Python loop): on XLA:CPU the deep CNN's
  steps run about 10x slower inside the ``lax.scan`` of ``loop='scan'``.

  Returns ``(state, history as lists, seconds)``.
  """
  if not resume:
    checkpoint.unlink(missing_ok=True)
  start = time.perf_counter()
  state, history = train(
    key, make_model(name), optimizer(), x, y, loss="cross_entropy", epochs=epochs,
    batch_size=BATCH_SIZE, loop="python", checkpoint=checkpoint,
    progress=None if progress else False,
  )  # fmt: skip
  jax.block_until_ready(state.params)
  return state, {k: np.asarray(v).tolist() for k, v in history.items()}, time.perf_counter() - start


def fit_ensemble(key: jax.Array, name: str, x: np.ndarray, y: np.ndarray, *, num_members: int,
                 epochs: int, checkpoint: pathlib.Path, resume: bool,
                 progress: bool) -> tuple[TrainState, float]:  # fmt: skip
  """Trains ``num_members`` CNNs on bootstrap resamples in one jitted epoch; ``(states, seconds)``."""
  if not resume:
    checkpoint.unlink(missing_ok=True)
  start = time.perf_counter()
  states, _ = _train_ensemble(
    key, make_model(name), optimizer(), x, y, num_members=num_members, subsets="bootstrap",
    loss="cross_entropy", epochs=epochs, batch_size=BATCH_SIZE, holdout_validation=False,
    member_loop="map", checkpoint=checkpoint, progress=None if progress else False,
  )  # fmt: skip
  jax.block_until_ready(states.params)
  return states, time.perf_counter() - start


def mc_logits(key: jax.Array, name: str, variables: Any, x: np.ndarray, samples: int) -> jax.Array:
  """Logits of ``samples`` MC dropout passes, ``(samples, n, 10)``; BatchNorm on running averages."""
  f = jaxuq.from_linen(make_model(name), variables, train=False)
  return jaxuq.mc_sample(f, key, jnp.asarray(x), num_samples=samples, chunk_size=_chunk(samples))


def mc_probs(key: jax.Array, name: str, variables: Any, x: np.ndarray, samples: int) -> jax.Array:
  """Softmax of :func:`mc_logits` (the same key gives the same passes), ``(samples, n, 10)``."""
  return jax.nn.softmax(mc_logits(key, name, variables, x, samples), axis=-1)


def _chunk(samples: int) -> int:
  return min(samples, 10)  # bounds memory: 10 passes at a time


def deterministic_logits(name: str, variables: Any, x: np.ndarray) -> jax.Array:
  """Logits of the deterministic pass (dropout off), ``(n, 10)``."""
  return predict(make_model(name), variables, jnp.asarray(x), batch_size=512)


def deterministic_probs(name: str, variables: Any, x: np.ndarray) -> jax.Array:
  """Softmax of :func:`deterministic_logits`, ``(n, 10)``."""
  return jax.nn.softmax(deterministic_logits(name, variables, x), axis=-1)


def ensemble_probs(name: str, states: TrainState, x: np.ndarray) -> jax.Array:
  """Softmax of every member's deterministic pass, ``(members, n, 10)``."""
  logits = ensemble_predict(make_model(name), states, jnp.asarray(x), batch_size=512)
  return jax.nn.softmax(logits, axis=-1)


def save_classifier(folder: pathlib.Path, name: str, rejector: reject.Rejector, samples: int,
                    info: dict) -> pathlib.Path:  # fmt: skip
  """Writes ``NAME.json`` beside the training state: the rejector and the settings."""
  p = rejector.params
  record = {
    "model": name,
    "samples": samples,
    "features": list(reject.FEATURE_NAMES),
    "rejector": {
      "weights": np.asarray(p.weights).tolist(),
      "bias": float(p.bias),
      "loc": np.asarray(p.loc).tolist(),
      "scale": np.asarray(p.scale).tolist(),
      "threshold": float(rejector.threshold),
      "tpr": float(rejector.tpr),
      "fpr": float(rejector.fpr),
    },
    **info,
  }
  path = folder / f"{name}.json"
  path.write_text(json.dumps(record, indent=2))
  return path


def previous_train_seconds(folder: pathlib.Path, name: str) -> float:
  """Training seconds recorded by an earlier run in ``folder`` (0 if none), for resumed runs."""
  path = folder / f"{name}.json"
  return (
    float(json.loads(path.read_text()).get("train_seconds_total", 0.0)) if path.is_file() else 0.0
  )


def load_classifier(folder: pathlib.Path) -> list[tuple[str, Any, reject.Rejector, dict]]:
  """Every saved classifier in ``folder``: ``(name, variables, rejector, record)``, deep first."""
  folder = pathlib.Path(folder)
  found = []
  for name in ("deep", "basic"):
    meta, state_file = folder / f"{name}.json", folder / f"{name}.msgpack"
    if not (meta.is_file() and state_file.is_file()):
      continue
    record = json.loads(meta.read_text())
    target = init_state(jax.random.key(0), make_model(name), optimizer(), jnp.zeros((1, 28, 28, 1)))
    tree, _ = restore_checkpoint(state_file, {"state": target})
    r = record["rejector"]
    params = reject.LogisticParams(
      *(jnp.asarray(r[k], jnp.float32) for k in ("weights", "bias", "loc", "scale"))
    )
    rejector = reject.Rejector(params, jnp.asarray(r["threshold"]), jnp.asarray(r["tpr"]),
                               jnp.asarray(r["fpr"]))  # fmt: skip
    found.append((name, tree["state"].variables, rejector, record))
  if not found:
    raise FileNotFoundError(
      f"no saved classifier in {folder}: expected deep.json + deep.msgpack or basic.json + "
      "basic.msgpack, written by `jaxuq ood --out DIR` (in DIR/checkpoints)"
    )
  return found
