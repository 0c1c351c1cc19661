"""Closed-form dropout moments when the only dropout feeds the final Dense layer.

With inverted dropout (rate ``r``) on features ``h`` right before an output
layer ``y = d @ W + b``, each unit ``d_k = h_k z_k / (1 - r)`` with independent
``z_k ~ Bernoulli(1 - r)``, so ``E[d_k] = h_k`` and
``Var[d_k] = h_k**2 r / (1 - r)``. Hence, per input,

* ``mean = h @ W + b`` (the deterministic forward pass),
* ``var_o = sum_k (h_k W_ko)**2 r / (1 - r)``,
* ``cov_op = sum_k h_k**2 W_ko W_kp r / (1 - r)``,

exactly, in one deterministic forward pass.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import meta

from jaxuq._src.exact.linen import check_linen
from jaxuq._src.exact.moments import Moments
from jaxuq._src.filtering import StaticPart, combine, partition
from jaxuq._src.interception import DROPOUT_LAYERS, first_input, intercept_calls


def _refuse(why: str) -> ValueError:
  return ValueError(
    f"closed-form moments need exactly one dropout layer whose output goes straight into "
    f"a final nn.Dense layer whose output the model returns; {why}. Use "
    "jaxuq.exact.exact_moments (enumeration, few units) or jaxuq.mc_sample instead."
  )


def _analyse(f: Any, args: tuple, covariance: bool) -> Moments:
  """Runs the model once, dropout as identity, recording the dropout and Dense calls."""
  dropouts: list[tuple[Any, jax.Array, jax.Array]] = []  # (module, h, output)
  denses: list[tuple[Any, jax.Array, jax.Array, jax.Array]] = []  # (module, input, kernel, out)

  def record(module, call, fargs, fkwargs):
    if isinstance(module, nn.MultiHeadDotProductAttention):
      if float(module.dropout_rate) > 0.0:  # sampled by from_linen whatever its flag says
        raise _refuse(
          f"{type(module).__name__} drops attention weights (dropout_rate="
          f"{module.dropout_rate}), randomness the closed form does not cover"
        )
      return call(*fargs, **fkwargs)
    inputs = first_input(fargs, fkwargs)
    if isinstance(module, DROPOUT_LAYERS):
      if float(module.rate) == 0.0:
        return inputs
      out = inputs * jnp.ones((), inputs.dtype)  # E[dropout(h)] = h, as a new value
      dropouts.append((module, inputs, out))
      return out
    y = call(*fargs, **fkwargs)
    # unboxed: a kernel built with nn.with_partitioning is a Partitioned box
    denses.append((module, inputs, meta.unbox(module.variables["params"]["kernel"]), y))
    return y

  try:
    with intercept_calls((*DROPOUT_LAYERS, nn.Dense, nn.MultiHeadDotProductAttention), record):
      y = f.module.apply(f.variables, *args, **dict(f.apply_kwargs))
  except flax.errors.InvalidRngError as e:  # attention dropout, noise layers: no key given
    raise _refuse(
      "the model draws random numbers besides its dropout layers (attention dropout, a "
      f"noise layer), which the closed form does not cover: {str(e).splitlines()[0]}"
    ) from None
  if len(dropouts) != 1:
    raise _refuse(
      f"{type(f.module).__name__} runs {len(dropouts)} dropout layers with a positive rate"
    )
  module, h, d = dropouts[0]
  if (h.ndim - 1) in {b % h.ndim for b in module.broadcast_dims}:
    raise _refuse("its mask is shared along the feature axis (broadcast_dims)")
  fed = [x for x in denses if x[1] is d]
  if len(fed) != 1:
    raise _refuse("the dropout's output does not go straight into one nn.Dense layer")
  dense, _, kernel, out = fed[0]
  if type(dense) is not nn.Dense:  # a subclass may compute anything from its kernel
    raise _refuse(
      f"the layer it feeds is {type(dense).__name__}, a subclass of nn.Dense, whose output "
      "need not be inputs @ kernel + bias"
    )
  if out is not y:
    raise _refuse(
      "the Dense layer it feeds is not the last: the model does not return its output as it is"
    )
  rate = float(module.rate)
  dtype = y.dtype
  h2 = jnp.square(h.astype(dtype))
  w = kernel.astype(dtype)
  factor = jnp.asarray(rate / (1.0 - rate), dtype)
  # The moments' own products at full precision: a GPU's default (TF32) or a user's
  # "bfloat16" matmul precision would put 1e-3 to 1e-2 relative errors into exact answers.
  full = jax.lax.Precision.HIGHEST
  var = jnp.matmul(h2, jnp.square(w), precision=full) * factor
  cov = jnp.einsum("...k,ko,kp->...op", h2, w, w, precision=full) * factor if covariance else None
  return Moments(y, var, cov)


@functools.partial(jax.jit, static_argnames=("static", "covariance"))
def _closed_form_jit(static: StaticPart, dynamic: list[Any], args: tuple, *, covariance: bool):
  return _analyse(combine(static, dynamic), args, covariance)


def closed_form_moments(fn: Any, *args: Any, covariance: bool = False) -> Moments:
  """Exact MC-dropout mean and variance in one deterministic forward pass.

  Holds when the model's only dropout layer (rate ``r`` > 0; layers of rate 0
  are ignored) sits right before its final ``nn.Dense`` layer, whose output the
  model returns, as in the seed's "last layer only" variant and the tiny
  network. The model is checked while it is traced; any other structure is
  refused. Moments are those of the model's nominal rate (``jaxuq.Dropout``
  samples masks whose keep probability is within ``2**-17`` of ``1 - r``, and
  within ``2**-13`` of it relatively).

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs.
    covariance: also return the covariance across the outputs.

  Returns:
    :class:`jaxuq.exact.Moments` of JAX arrays in the model's dtype, for any batch.

  Raises:
    TypeError: ``fn`` is not from :func:`jaxuq.from_linen`.
    ValueError: the model's structure is not "one dropout, then the final Dense".

  Examples:
    >>> import jaxuq.exact
    >>> m = jaxuq.exact.closed_form_moments(jaxuq.exact.tiny_predictive(), jaxuq.exact.tiny_input())
    >>> float(m.mean[0, 0]), round(float(m.var[0, 0]), 1)
    (51.0, 80733.3)
  """
  f = check_linen(fn)
  static, dynamic = partition(f)
  return _closed_form_jit(static, dynamic, args, covariance=bool(covariance))
