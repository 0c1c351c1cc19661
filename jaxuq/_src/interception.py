"""The one place that depends on Flax's method interceptors.

:func:`intercept_calls` runs a handler instead of ``__call__`` of chosen linen
layers (dropout layers, BatchNorm, Dense) inside ``module.apply``. The
adapters switch dropout on with it, and exact enumeration and the closed form
record the layers a model runs. ``tests/test_interception.py`` fails loudly if
a Flax upgrade changes what this module relies on: ``nn.intercept_methods``,
and an interceptor context with ``.module`` and ``.method_name``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn

from jaxuq._src.dropout import Dropout

# The linen dropout layers jaxuq switches on, records and masks.
DROPOUT_LAYERS = (nn.Dropout, Dropout)

# handler(module, call, args, kwargs): ``call(*args, **kwargs)`` runs the layer.
Handler = Callable[[Any, Callable[..., Any], tuple, dict], Any]


@contextlib.contextmanager
def intercept_calls(layers: tuple[type, ...], handler: Handler) -> Iterator[None]:
  """Within the context, ``layer(*args, **kwargs)`` returns ``handler(layer, call, args, kwargs)``.

  Only ``__call__`` of linen modules that are instances of ``layers`` is
  intercepted; every other method and module runs as usual. Contexts nest: an
  inner handler's ``call`` runs the outer handlers, then the layer.
  """

  def interceptor(next_fun, fargs, fkwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, layers):
      return next_fun(*fargs, **fkwargs)
    return handler(module, next_fun, tuple(fargs), dict(fkwargs))

  with nn.intercept_methods(interceptor):
    yield


def first_input(args: tuple, kwargs: dict) -> Any:
  """A layer call's input: its first positional argument, else ``inputs=`` or ``x=``."""
  if args:
    return args[0]
  for name in ("inputs", "x"):
    if name in kwargs:
      return kwargs[name]
  raise TypeError(f"a layer was called without an input, got keywords {sorted(kwargs)}")
