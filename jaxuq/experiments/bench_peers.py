"""Peers in the same run: PyTorch and Keras 3 doing MC dropout the usual ways.

Each peer builds the same architecture as ``bench_cases`` (weights random: the
time does not depend on them) and returns a zero-argument function producing
``(masks, batch, outputs)`` samples as a NumPy array.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

from jaxuq.experiments.bench_cases import Case, loop_masks

PEERS = ("torch_loop", "torch_repeat", "keras_loop")


# The batch-repeat trick holds T copies of the batch's activations at once;
# beyond this many bytes for one layer's activations it is not attempted (it
# would swap or be killed rather than report a time).
REPEAT_LIMIT_BYTES = 4 * 2**30


def repeat_bytes(case: Case) -> int:
  """Bytes of the largest activation of T repeated batches (the batch-repeat trick)."""
  width = 26 * 26 * 32 if case.model == "cnn" else case.width
  return 4 * case.masks * case.batch * width


def available(name: str, case: Case | None = None) -> str | None:
  """None if peer ``name`` can run here, else why not."""
  module = "torch" if name.startswith("torch") else "keras"
  if importlib.util.find_spec(module) is None:
    return f"{module} is not installed (pip install -e '.[peers]')"
  if name == "torch_repeat" and case is not None:
    need = repeat_bytes(case)
    if need > REPEAT_LIMIT_BYTES:
      return (
        f"not run: one layer of {case.masks} repeated batches needs {need / 2**30:.2f} GiB "
        f"(limit {REPEAT_LIMIT_BYTES / 2**30:.0f} GiB)"
      )
  return None


def _torch_model(case: Case):
  import torch  # noqa: PLC0415
  from torch import nn  # noqa: PLC0415

  if case.model == "cnn":
    return nn.Sequential(
      nn.Conv2d(1, 32, 3),
      nn.ReLU(),
      nn.MaxPool2d(2),
      nn.Flatten(),
      nn.Linear(5408, 100),
      nn.ReLU(),
      nn.Dropout(0.25),
      nn.Linear(100, 10),
    ), torch.rand(case.batch, 1, 28, 28)
  layers: list = []
  width_in = 1
  for i in range(4):
    layers += [nn.Linear(width_in, case.width), nn.ReLU()]
    if case.model == "mlp" or i == 3:
      layers.append(nn.Dropout(0.5))
    width_in = case.width
  layers.append(nn.Linear(case.width, 1))
  return nn.Sequential(*layers), torch.linspace(-2, 3, case.batch)[:, None]


def build(
  name: str, case: Case, threads: int, loop_cap: int | None = None
) -> tuple[Callable[[], np.ndarray], int]:
  """Peer ``name`` on ``case``: a zero-argument run and how many masks one run computes.

  Loops run ``loop_masks(case, loop_cap)`` masks (the bench scales their time
  to T); the batch-repeat trick always runs all T at once.
  """
  n_loop = loop_masks(case, loop_cap)
  if name.startswith("torch"):
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, x = _torch_model(case)
    model.train()  # dropout on

    if name == "torch_loop":

      def loop() -> np.ndarray:
        with torch.no_grad():
          return torch.stack([model(x) for _ in range(n_loop)]).numpy()

      return loop, n_loop

    def repeat() -> np.ndarray:
      # The batch-repeat trick: T copies of the batch in one call.
      with torch.no_grad():
        big = x.repeat((case.masks,) + (1,) * (x.ndim - 1))
        return model(big).reshape(case.masks, case.batch, -1).numpy()

    return repeat, case.masks

  import os  # noqa: PLC0415

  os.environ.setdefault("KERAS_BACKEND", "jax")
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
    x = np.random.default_rng(0).random((case.batch, 28, 28, 1), dtype=np.float32)
  else:
    layers: list = [keras.Input((1,))]
    for i in range(4):
      layers.append(keras.layers.Dense(case.width, activation="relu"))
      if case.model == "mlp" or i == 3:
        layers.append(keras.layers.Dropout(0.5))
    layers.append(keras.layers.Dense(1))
    model = keras.Sequential(layers)
    x = np.linspace(-2, 3, case.batch, dtype=np.float32)[:, None]

  def keras_loop() -> np.ndarray:
    return np.stack([np.asarray(model(x, training=True)) for _ in range(n_loop)])

  return keras_loop, n_loop
