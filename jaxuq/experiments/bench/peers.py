"""Peers in the same run: PyTorch and Keras 3 doing MC dropout the usual ways.

Each peer builds the same architecture as ``cases`` (weights random: the time
does not depend on them) on the device jaxuq runs on: PyTorch on CUDA when
JAX's default device is a GPU and PyTorch sees one, else on the CPU; Keras 3
on its JAX backend, hence on JAX's default device. On CUDA, PyTorch runs with
TF32 off (``torch_loop``, ``torch_repeat``) and on (the ``_tf32`` variants).
Each returns a zero-argument function producing ``(masks, batch, outputs)``
samples, finished on the device (CUDA synchronised) when it returns.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

from jaxuq.experiments.bench.cases import Case, loop_masks

PEERS = ("torch_loop", "torch_loop_tf32", "torch_repeat", "torch_repeat_tf32", "keras_loop")


# The batch-repeat trick holds T copies of the batch's activations at once;
# beyond this many bytes for one layer's activations it is not attempted (it
# would swap or be killed rather than report a time). On CUDA the limit is a
# quarter of the GPU's memory instead.
REPEAT_LIMIT_BYTES = 4 * 2**30


def repeat_bytes(case: Case) -> int:
  """Bytes of the largest activation of T repeated batches (the batch-repeat trick)."""
  width = 26 * 26 * 32 if case.model == "cnn" else case.width
  return 4 * case.masks * case.batch * width


def torch_device() -> str:
  """``'cuda'`` when JAX's default device is a GPU and PyTorch sees CUDA, else ``'cpu'``."""
  import jax  # noqa: PLC0415
  import torch  # noqa: PLC0415

  on_gpu = jax.devices()[0].platform == "gpu"
  return "cuda" if on_gpu and torch.cuda.is_available() else "cpu"


def available(name: str, case: Case | None = None) -> str | None:
  """None if peer ``name`` can run here, else why not."""
  module = "torch" if name.startswith("torch") else "keras"
  if module == "keras" and os.environ.get("KERAS_BACKEND", "jax") != "jax":
    return (
      f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}: the Keras peer runs Keras 3 on JAX "
      "(JAX's device, JAX's arrays); unset KERAS_BACKEND or set it to jax"
    )
  if importlib.util.find_spec(module) is None:
    return f"{module} is not installed (pip install -e '.[peers]')"
  if name.endswith("_tf32") and torch_device() != "cuda":
    return "TF32 is a CUDA setting: not run where PyTorch runs on the CPU"
  if name.startswith("torch_repeat") and case is not None:
    need, limit = repeat_bytes(case), repeat_limit_bytes()
    if need > limit:
      return (
        f"not run: one layer of {case.masks} repeated batches needs {need / 2**30:.2f} GiB "
        f"(limit {limit / 2**30:.1f} GiB)"
      )
  return None


def repeat_limit_bytes() -> int:
  """The most bytes one layer of the batch-repeat trick may take here (see ``REPEAT_LIMIT_BYTES``)."""
  if torch_device() == "cuda":
    import torch  # noqa: PLC0415

    return torch.cuda.get_device_properties(0).total_memory // 4
  return REPEAT_LIMIT_BYTES


def release_memory() -> None:
  """Gives PyTorch's cached CUDA memory back, so that JAX's next case finds it."""
  import sys  # noqa: PLC0415

  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.empty_cache()


def describe(name: str) -> dict:
  """Where and how peer ``name`` runs: its device and float32 matmul precision."""
  if name.startswith("torch"):
    device = torch_device()
    tf32 = device == "cuda" and name.endswith("_tf32")
    return {"device": device, "precision": "tf32" if tf32 else "float32"}
  import jax  # noqa: PLC0415

  return {"device": str(jax.devices()[0]), "precision": "jax default"}


def _torch_model(case: Case, device: str):
  import torch  # noqa: PLC0415
  from torch import nn  # noqa: PLC0415

  if case.model == "cnn":
    model = nn.Sequential(
      nn.Conv2d(1, 32, 3),
      nn.ReLU(),
      nn.MaxPool2d(2),
      nn.Flatten(),
      nn.Linear(5408, 100),
      nn.ReLU(),
      nn.Dropout(0.25),
      nn.Linear(100, 10),
    )
    x = torch.rand(case.batch, 1, 28, 28)
  else:
    layers: list = []
    width_in = 1
    for i in range(4):
      layers += [nn.Linear(width_in, case.width), nn.ReLU()]
      if case.model == "mlp" or i == 3:
        layers.append(nn.Dropout(0.5))
      width_in = case.width
    layers.append(nn.Linear(case.width, 1))
    model = nn.Sequential(*layers)
    x = torch.linspace(-2, 3, case.batch)[:, None]
  return model.to(device), x.to(device)


def _set_tf32(torch: Any, on: bool) -> None:
  """TF32 for float32 matmuls and convolutions on or off (process-wide in PyTorch).

  PyTorch 2.9 and later name it ``fp32_precision`` (``'tf32'`` or
  ``'ieee'``); older versions ``allow_tf32``.
  """
  matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
  if conv is not None and hasattr(matmul, "fp32_precision"):
    matmul.fp32_precision = "tf32" if on else "ieee"
    conv.fp32_precision = "tf32" if on else "ieee"
  else:
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on


def _build_torch(name: str, case: Case, threads: int, n_loop: int) -> tuple[Callable, int]:
  import torch  # noqa: PLC0415

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  device = torch_device()
  model, x = _torch_model(case, device)
  model.train()  # dropout on
  tf32 = name.endswith("_tf32")

  def finish(out: Any) -> Any:
    if device == "cuda":
      torch.cuda.synchronize()
    return out

  def loop() -> Any:
    _set_tf32(torch, tf32)  # set on each run: variants in one process alternate
    with torch.no_grad():
      return finish(torch.stack([model(x) for _ in range(n_loop)]))

  def repeat() -> Any:
    # The batch-repeat trick: T copies of the batch in one call.
    _set_tf32(torch, tf32)
    with torch.no_grad():
      big = x.repeat((case.masks,) + (1,) * (x.ndim - 1))
      return finish(model(big).reshape(case.masks, case.batch, -1))

  if name.startswith("torch_loop"):
    return loop, n_loop
  return repeat, case.masks


def _build_keras(case: Case, n_loop: int) -> tuple[Callable, int]:
  os.environ.setdefault("KERAS_BACKEND", "jax")
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import keras  # noqa: PLC0415

  keras.utils.set_random_seed(0)
  if case.model == "cnn":
    model = keras.Sequential(
      [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(10),
      ]
    )
    x = jax.random.uniform(jax.random.key(0), (case.batch, 28, 28, 1))
  else:
    layers: list = [keras.Input((1,))]
    for i in range(4):
      layers.append(keras.layers.Dense(case.width, activation="relu"))
      if case.model == "mlp" or i == 3:
        layers.append(keras.layers.Dropout(0.5))
    layers.append(keras.layers.Dense(1))
    model = keras.Sequential(layers)
    x = jnp.linspace(-2.0, 3.0, case.batch, dtype=jnp.float32)[:, None]

  def keras_loop() -> Any:
    return jnp.stack([model(x, training=True) for _ in range(n_loop)])

  return keras_loop, n_loop


def build(name: str, case: Case, threads: int, loop_cap: int | None = None) -> tuple[Callable, int]:
  """Peer ``name`` on ``case``: a zero-argument run and how many masks one run computes.

  Loops run ``loop_masks(case, loop_cap)`` masks (the bench scales their time
  to T); the batch-repeat trick always runs all T at once.
  """
  n_loop = loop_masks(case, loop_cap)
  if name.startswith("torch"):
    return _build_torch(name, case, threads, n_loop)
  return _build_keras(case, n_loop)
