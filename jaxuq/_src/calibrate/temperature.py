"""Temperature scaling (Guo et al. 2017): one temperature fit by minimising the held-out NLL.

The fit is a safeguarded Newton iteration on ``u = log T`` inside a bracket
(``rtsafe``): each step takes the Newton step when the curvature is positive
and the step stays inside the bracket, and bisects otherwise; the sign of the
derivative shrinks the bracket. For deterministic logits the NLL is convex in
``1/T`` (a log-sum-exp of linear functions minus a linear one), so there is one
minimum and Newton converges quadratically; for MC dropout (probabilities
averaged over samples) convexity is not guaranteed, and the bracket still
guarantees convergence to a stationary point with a sign change of the slope.
The derivatives in ``log T`` are computed in closed form in one pass over the
logits (:func:`nll_derivatives`). The loop is a ``lax.while_loop`` with a
fixed cap: it runs under ``jax.jit``.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.calibrate.scaling import TemperatureScaling, as_samples, scaled_nll
from jaxuq._src.keys import check_positive_int
from jaxuq._src.metrics import _checks

# Stop after a Newton step shorter than this (the error after it is of its square), or once
# the bracket is narrower than the second: both in log T, i.e. relative changes of T.
_NEWTON_STEP = 1e-5
_BRACKET = 1e-6


def _check_bounds(bounds: object) -> tuple[float, float]:
  pair = tuple(bounds) if isinstance(bounds, (tuple, list)) else ()
  if len(pair) != 2:
    raise ValueError(f"bounds must be a pair (t_min, t_max), got {bounds!r}")
  for v in pair:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
      raise TypeError(f"bounds must be two positive floats, got {bounds!r}")
  lo, hi = float(pair[0]), float(pair[1])
  if not 0 < lo < hi < float("inf"):
    raise ValueError(f"bounds must satisfy 0 < t_min < t_max < inf, got {bounds!r}")
  return lo, hi


def fit_temperature(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  bounds: tuple[float, float] = (1e-3, 1e3),
  max_iter: int = 100,
) -> TemperatureScaling:
  """Fits the temperature ``T`` that minimises the NLL of held-out labels.

  Deterministic logits ``z`` of shape ``(batch, classes)``: minimises
  ``-(1/N) Σ_i log softmax(z_i / T)[y_i]``. MC dropout logits of shape
  ``(samples, batch, classes)``: the temperature divides every sample's
  logits *before* the probabilities are averaged over samples, and the NLL is
  that of the averaged probabilities,
  ``-(1/N) Σ_i log((1/S) Σ_s softmax(z_si / T)[y_i])``. Apply the fit with
  :func:`calibrated_probs`, which averages in the same way.

  The minimiser is found by safeguarded Newton steps on ``log T`` inside
  ``bounds`` (bisection where Newton would leave the bracket); it is accurate
  to about ``1e-6`` relative in ``T`` in float32. When the NLL keeps falling up
  to a bound (e.g. separable data whose argmax is always right, where the
  optimum is ``T -> 0``), that bound is returned. Computations run in float32
  at least (bfloat16 and float16 logits are widened), float64 under x64.
  Deterministic: the same inputs give the same fit; it runs under ``jax.jit``
  (``bounds`` and ``max_iter`` static), where only shapes are checked, and
  under ``jax.vmap``; not under reverse-mode ``jax.grad`` (the search is a
  ``lax.while_loop``). To differentiate through a fitted temperature, fit it
  first and wrap it in ``jax.lax.stop_gradient``, or differentiate the NLL at
  the fixed ``T`` (at the optimum its derivative in ``T`` is 0).

  Args:
    logits: shape ``(batch, classes)`` or ``(samples, batch, classes)`` (sample
      axis first), from held-out calibration data, not the training set.
    labels: integer classes, shape ``(batch,)``.
    bounds: the interval ``(t_min, t_max)`` searched for ``T``.
    max_iter: the cap on Newton / bisection steps (about 25 suffice for
      bisection alone over the default bounds).

  Returns:
    A :class:`TemperatureScaling` (``temperature`` and the calibration ``nll``).

  Raises:
    ValueError: logits without 2 or 3 axes, fewer than 2 classes, an empty
      calibration set, non-finite logits, logits that look like
      probabilities, labels of the wrong shape or out of range, bad
      ``bounds`` or ``max_iter``.
    TypeError: non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import fit_temperature
    >>> logits = jnp.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    >>> fit = fit_temperature(logits, jnp.array([0, 1, 1, 1]))  # 3 of 4 right: p = 3/4
    >>> round(float(fit.temperature), 4)  # 4 / T = log 3
    3.641

  References:
    Guo, C., Pleiss, G., Sun, Y., Weinberger, K. Q. (2017). On Calibration of
    Modern Neural Networks. ICML.
    Press, W. H., Teukolsky, S. A., Vetterling, W. T., Flannery, B. P. (2007).
    Numerical Recipes, 3rd ed., section 9.4 (rtsafe: Newton with bisection).
  """
  lo, hi = _check_bounds(bounds)
  max_iter = check_positive_int(max_iter, "max_iter")
  z = validate.check_logits(logits)
  y = validate.check_labels(labels, z)
  wide = _checks.compute_dtype(z.dtype)
  t, nll = _fit(as_samples(z).astype(wide), y, jnp.log(jnp.asarray([lo, hi], wide)), max_iter)
  return _checks.narrow(TemperatureScaling(temperature=t, nll=nll), z.dtype)


@functools.partial(jax.jit, static_argnums=3)
def _fit(z: jax.Array, y: jax.Array, log_bounds: jax.Array, max_iter: int):
  lo, hi = log_bounds[0], log_bounds[1]
  u = minimize_1d(functools.partial(nll_derivatives, z, y), lo, hi, max_iter)
  return jnp.exp(u), scaled_nll(z, y, jnp.exp(-u), jnp.zeros((), z.dtype))


def nll_derivatives(z: jax.Array, y: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """First and second derivatives of the NLL in ``u = log T``, in one pass over ``z``.

  With ``β = exp(-u)``, ``g_s = log softmax(β z_s)[y]`` has ``g' = z_y - E_q[z]``
  and ``g'' = -Var_q[z]`` in ``β`` (``q = softmax(β z_s)``); the per-example
  ``ℓ = log mean_s exp(g_s)`` has ``ℓ' = Σ_s w_s g'_s`` and
  ``ℓ'' = Σ_s w_s (g''_s + g'_s²) - ℓ'²`` with ``w = softmax_s(g)``; then
  ``d/du = -β d/dβ`` and ``d²/du² = β² d²/dβ² + β d/dβ``.
  """
  beta = jnp.exp(-u)
  log_q = jax.nn.log_softmax(beta * z, axis=-1)
  q = jnp.exp(log_q)
  mean = (q * z).sum(-1)
  var = (q * jnp.square(z - mean[..., None])).sum(-1)
  index = y[None, :, None]
  d1 = jnp.take_along_axis(z, index, axis=-1)[..., 0] - mean
  w = jax.nn.softmax(jnp.take_along_axis(log_q, index, axis=-1)[..., 0], axis=0)
  l1 = (w * d1).sum(0)
  l2 = (w * (jnp.square(d1) - var)).sum(0) - jnp.square(l1)
  f1, f2 = -l1.mean(), -l2.mean()  # the NLL's derivatives in beta
  return -beta * f1, jnp.square(beta) * f2 + beta * f1


def minimize_1d(grad_and_curvature, lo: jax.Array, hi: jax.Array, max_iter: int) -> jax.Array:
  """A minimiser in ``[lo, hi]`` by safeguarded Newton steps (jit-able).

  ``grad_and_curvature(u)`` returns the first and second derivatives of the
  objective at ``u``. Returns ``lo`` (``hi``) when the objective rises (falls)
  at that end; otherwise a point where the slope changes sign.
  """
  at_lo = grad_and_curvature(lo)[0] >= 0
  at_hi = grad_and_curvature(hi)[0] <= 0
  u0 = jnp.clip(jnp.zeros_like(lo), lo, hi)

  def cond(state):
    i, _, a, b, converged = state
    return (i < max_iter) & ~converged & (b - a > _BRACKET)

  def body(state):
    i, u, a, b, _ = state
    g, h = grad_and_curvature(u)
    a = jnp.where(g < 0, u, a)
    b = jnp.where(g > 0, u, b)
    newton = u - g / jnp.where(h > 0, h, 1)
    use_newton = (h > 0) & (newton > a) & (newton < b)
    new = jnp.where(use_newton, newton, 0.5 * (a + b))
    converged = (g == 0) | (use_newton & (jnp.abs(newton - u) < _NEWTON_STEP))
    return i + 1, jnp.where(g == 0, u, new), a, b, converged

  done = at_lo | at_hi
  _, u, _, _, _ = jax.lax.while_loop(cond, body, (0, u0, lo, hi, done))
  return jnp.where(at_lo, lo, jnp.where(at_hi, hi, u))
