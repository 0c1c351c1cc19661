"""Matmul and convolution FLOPs of a function, counted from its jaxpr (shapes only).

The benchmark's matmul floor needs the arithmetic of a forward pass on every
device. XLA's cost analysis cannot give it everywhere: on PJRT C API backends
(CUDA among them) it is not implemented and JAX returns ``None``, and after
optimization a GPU's matmuls are library calls it does not count. The jaxpr
is the same on every backend, so counting its ``dot_general`` and
``conv_general_dilated`` equations gives one definition for all: ``2 m n k``
for a matmul, ``2 x outputs x (kernel size / output features)`` for a
convolution. Elementwise work (biases, activations, masks) is not counted: the
floor is the rate of matrix products.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax


def matmul_flops(fn: Callable[..., Any], *args: Any) -> int:
  """FLOPs of the matrix products and convolutions of ``fn(*args)``.

  Args:
    fn: a function of arrays (traced abstractly: nothing runs).
    *args: its arguments, arrays or ``jax.ShapeDtypeStruct``.

  Returns:
    The count, a Python int (scans multiply their body by their length).

  Raises:
    ValueError: ``fn`` has a ``while`` loop or a branch whose work differs by
      branch (its count depends on values, not shapes).
  """
  return _count(jax.make_jaxpr(fn)(*args).jaxpr)


def _count(jaxpr: Any) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name == "scan":
      total += eqn.params["length"] * _count(eqn.params["jaxpr"].jaxpr)
    elif name == "cond":
      counts = {_count(b.jaxpr) for b in eqn.params["branches"]}
      if len(counts) > 1:
        raise ValueError(
          f"a cond's branches do {sorted(counts)} FLOPs: the count depends on values"
        )
      total += counts.pop()
    elif name == "shard_map":
      raise ValueError("a shard_map body runs per shard: its FLOPs are not counted here")
    elif name == "while":
      if _count(eqn.params["body_jaxpr"].jaxpr) or _count(eqn.params["cond_jaxpr"].jaxpr):
        raise ValueError("a while loop does matrix products: their count depends on values")
    else:
      total += sum(_count(sub) for sub in _subjaxprs(eqn))
  return total


def _dot_flops(eqn: Any) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
  rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
  return 2 * math.prod(lhs) * math.prod(rhs_free)


def _conv_flops(eqn: Any) -> int:
  kernel = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
  return 2 * math.prod(out) * math.prod(kernel) // out_features


def _subjaxprs(eqn: Any):
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      inner = getattr(v, "jaxpr", v)
      if hasattr(inner, "eqns"):
        yield inner
