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

from jaxuq._src.dropout import check_layer_input, layer_rate
from jaxuq._src.exact.linen import check_linen
from jaxuq._src.exact.moments import Moments
from jaxuq._src.filtering import StaticPart, as_arrays, combine, partition
from jaxuq._src.interception import DROPOUT_LAYERS, first_input, intercept_calls


def _refuse(why: str) -> ValueError:
  return ValueError(
    f"closed-form moments need exactly one dropout layer whose output goes straight into "
    f"a final nn.Dense layer whose output the model returns; {why}. Use "
    "jaxuq.exact.exact_moments (enumeration, few units) or jaxuq.mc_sample instead."
  )


def _analyse(f: Any, args: tuple, covariance: bool) -> Moments:
  """Runs the model once, dropout as identity, recording the dropout and Dense calls."""
  dropouts: list[tuple[Any, jax.Array, jax.Array, float]] = []  # (module, h, output, rate)
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
      # The sampling path's checks (rate in [0, 1 - 2**-20], a float input, broadcast_dims
      # in range): a rate of 1.5 gave negative variances here, an int input a number.
      rate = layer_rate(module)
      if rate == 0.0:
        return inputs
      check_layer_input(module, inputs)
      out = inputs * jnp.ones((), inputs.dtype)  # E[dropout(h)] = h, as a new value
      dropouts.append((module, inputs, out, rate))
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
  module, h, d, rate = dropouts[0]
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
  dtype = y.dtype
  # In at least float32, cast back at the end: in float16 h**2 overflowed (h = 300 gave an
  # infinite variance of 18), in bfloat16 var and cov's diagonal were rounded apart.
  work = jnp.promote_types(dtype, jnp.float32)
  h2 = jnp.square(h.astype(work))
  w = kernel.astype(work)
  factor = jnp.asarray(rate / (1.0 - rate), work)
  # The moments' own products at full precision: a GPU's default (TF32) or a user's
  # "bfloat16" matmul precision would put 1e-3 to 1e-2 relative errors into exact answers.
  full = jax.lax.Precision.HIGHEST
  if covariance:
    cov = jnp.einsum("...k,ko,kp->...op", h2, w, w, precision=full) * factor
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)  # var is cov's diagonal, to the bit
    return Moments(y, var.astype(dtype), cov.astype(dtype))
  var = jnp.matmul(h2, jnp.square(w), precision=full) * factor
  return Moments(y, var.astype(dtype), None)


@functools.partial(jax.jit, static_argnames=("static", "covariance"))
def _closed_form_jit(static: StaticPart, dynamic: list[Any], args: tuple, *, covariance: bool):
  return _analyse(combine(static, dynamic), args, covariance)


def closed_form_moments(fn: Any, *args: Any, covariance: bool = False) -> Moments:
  """Exact MC-dropout mean and variance in one deterministic forward pass.

  Holds when the model's only dropout layer (rate ``r`` > 0; layers of rate 0
  are ignored) sits right before its final ``nn.Dense`` layer, whose output the
  model returns, as in the seed's "last layer only" variant and the tiny
  network. The model is checked while it is traced; any other structure is
  refused. Moments are those of the model's nominal rate; ``jaxuq.Dropout``
  samples masks whose drop and keep probabilities are within ``2**-17`` of
  ``r`` and ``1 - r``, and within ``2**-13`` of ``min(r, 1 - r)`` relatively
  when that is at least ``2**-20`` (so its variance factor ``r / (1 - r)`` is
  within about ``2**-12`` relatively); below, within ``2**-33`` absolutely.
  Dropout layers are checked as the samplers check them (rate, a float input,
  ``broadcast_dims`` in range). The products are computed in at least float32
  and cast to the model's dtype; with ``covariance``, ``var`` is the diagonal
  of ``cov``.

  Args:
    fn: a predictive function from :func:`jaxuq.from_linen`.
    *args: the inputs.
    covariance: also return the covariance across the outputs.

  Returns:
    :class:`jaxuq.exact.Moments` of JAX arrays in the model's dtype, for any batch.
    ``cov`` is across the final Dense layer's output axis (the last axis).

  Raises:
    TypeError: ``fn`` is not from :func:`jaxuq.from_linen`, or a dropout layer
      gets a non-float input.
    ValueError: the model's structure is not "one dropout, then the final
      Dense", or a dropout layer's rate or ``broadcast_dims`` is invalid.

  Examples:
    >>> import jaxuq.exact
    >>> m = jaxuq.exact.closed_form_moments(jaxuq.exact.tiny_predictive(), jaxuq.exact.tiny_input())
    >>> float(m.mean[0, 0]), round(float(m.var[0, 0]), 1)
    (51.0, 80733.3)
  """
  f = check_linen(fn)
  static, dynamic = partition(f)
  return _closed_form_jit(static, dynamic, as_arrays(args), covariance=bool(covariance))
