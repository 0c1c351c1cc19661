"""How training calls a linen model: its call-time mode flag, ``train`` or ``deterministic``.

jaxuq's reference models take ``__call__(x, train: bool)``; Flax's own layers
and many user models take ``__call__(x, deterministic: bool)``. Training reads
the flag from the signature of the model's ``__call__``, so both work.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import flax.linen as nn

MODE_FLAGS = ("train", "deterministic")


def check_linen(model: Any, name: str = "model") -> None:
  """Raises unless ``model`` is a ``flax.linen.Module`` (an nnx model is named as such)."""
  if isinstance(model, nn.Module):
    return
  if type(model).__module__.startswith("flax.nnx") or any(
    c.__module__.startswith("flax.nnx") for c in type(model).__mro__
  ):
    raise TypeError(
      f"{name} must be a flax.linen Module; got the nnx model {type(model).__name__}. "
      "jaxuq.train trains linen modules: write the model with flax.linen, or wrap it with "
      "flax.nnx.bridge.ToLinen; jaxuq.from_nnx samples a trained nnx model"
    )
  raise TypeError(f"{name} must be a flax.linen Module, got {type(model).__name__}")


@functools.cache
def _mode_flag(cls: Any) -> str:
  parameters = inspect.signature(cls.__call__).parameters
  for flag in MODE_FLAGS:
    if flag in parameters:
      return flag
  raise TypeError(
    f"{cls.__name__}.__call__ takes neither `train` nor `deterministic`, so training cannot "
    "switch dropout and BatchNorm: add `train: bool = False` to __call__ and use "
    "`nn.Dropout(rate, deterministic=not train)` (or take `deterministic: bool`, as Flax's layers do)"
  )


def mode_flag(model: nn.Module) -> str:
  """The name of the model's call-time mode flag, ``'train'`` or ``'deterministic'``.

  Raises:
    TypeError: ``model.__call__`` takes neither.
  """
  cls: Any = type(model)
  return _mode_flag(cls)


def mode_kwargs(model: nn.Module, training: bool) -> dict[str, Any]:
  """The keyword that puts ``model`` in training (dropout on) or inference mode."""
  flag = mode_flag(model)
  return {flag: training if flag == "train" else not training}
