"""A predictive function traced once: its output shapes, its jaxpr, and a function that replays it.

``mc_sample`` and ``mc_reduce`` need three things of ``fn(key, *args)`` per
compilation: the shapes of one sample's output (to check memory), the sizes of
its key-dependent arrays (to pick a chunk) and the batched program itself.
Tracing a Flax model is Python work (module setup, interceptors, every layer's
checks) and each of the three used to trace it again. Here it is traced once;
the other two read the jaxpr, and the batched program evaluates the jaxpr under
``vmap``, which binds the same primitives the model's own code binds.

This module, :mod:`jaxuq._src.memory` and :mod:`jaxuq._src.flops` are the places that read jaxprs
(``jax.make_jaxpr``, ``jax.extend.core``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.extend.core import Jaxpr, jaxpr_as_fun

PyTree = Any


class Traced(NamedTuple):
  """One abstract trace of ``fn(key, *args)``."""

  fn: Callable[..., PyTree]  # replays the trace: same arguments and outputs as the function
  out_shape: PyTree  # one call's output, as jax.ShapeDtypeStruct leaves
  jaxpr: Jaxpr  # the open jaxpr; invars[0] is the key


def trace_once(fn: Callable[..., PyTree], key: Any, args: tuple) -> Traced:
  """Traces ``fn(key, *args)`` (arrays, tracers or shape structs) once.

  The returned ``Traced.fn`` must be called with arguments of the same tree
  structure, shapes and dtypes as those traced; values captured by ``fn``
  (parameters, or tracers of an enclosing ``jit``) are the jaxpr's constants.
  """
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(key, *args)
  in_tree = jax.tree.structure((key, *args))
  out_tree = jax.tree.structure(out_shape)
  replay = jaxpr_as_fun(closed)

  def call(k: Any, *a: Any) -> PyTree:
    leaves, tree = jax.tree.flatten((k, *a))
    if tree != in_tree:  # type: ignore[operator]
      raise ValueError(
        f"a traced function was called with {tree}, but it was traced with {in_tree}"
      )
    return jax.tree.unflatten(out_tree, replay(*leaves))

  return Traced(call, out_shape, closed.jaxpr)
