"""Temperature scaling (Guo et al. 2017): one temperature fit by minimising the held-out NLL.

The fit is a safeguarded Newton iteration on ``u = log T`` inside a bracket
(``rtsafe``): each step takes the Newton step when the curvature is positive
and the step stays inside the bracket, and bisects otherwise; the sign of the
derivative shrinks the bracket. For deterministic logits the NLL is convex in
``1/T`` (a log-sum-exp of linear functions minus a linear one), so there is one
minimum and Newton converges quadratically; for MC dropout (probabilities
averaged over samples) convexity is not guaranteed, and the bracket still
guarantees convergence to a stationary point with a sign change of the slope.
The loop is a ``lax.while_loop`` with a fixed cap: it runs under ``jax.jit``.
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

# Stop once a step moves log T by less than this (a relative change of T).
_XTOL = 1e-7


def _check_bounds(bounds: object) -> tuple[float, float]:
  try:
    lo, hi = bounds  # type: ignore[misc]
  except (TypeError, ValueError):
    raise ValueError(f"bounds must be a pair (t_min, t_max), got {bounds!r}") from None
  for v in (lo, hi):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
      raise TypeError(f"bounds must be two positive floats, got {bounds!r}")
  if not 0 < float(lo) < float(hi) < float("inf"):
    raise ValueError(f"bounds must satisfy 0 < t_min < t_max < inf, got {bounds!r}")
  return float(lo), float(hi)


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
  (``bounds`` and ``max_iter`` static), where only shapes are checked.

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
    3.6410

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
  zero = jnp.zeros((), z.dtype)

  def loss(u: jax.Array) -> jax.Array:
    return scaled_nll(z, y, jnp.exp(-u), zero)

  u = minimize_1d(loss, log_bounds[0], log_bounds[1], max_iter)
  return jnp.exp(u), loss(u)


def minimize_1d(f, lo: jax.Array, hi: jax.Array, max_iter: int) -> jax.Array:
  """A minimiser of the scalar ``f`` in ``[lo, hi]`` by safeguarded Newton steps (jit-able).

  Returns ``lo`` (``hi``) when ``f`` rises (falls) at that end with the slope
  pointing outward; otherwise a point where the slope changes sign.
  """
  grad = jax.grad(f)

  def grad_and_curvature(u):
    return jax.jvp(grad, (u,), (jnp.ones_like(u),))

  g_lo, g_hi = grad(lo), grad(hi)
  at_lo, at_hi = g_lo >= 0, g_hi <= 0
  u0 = jnp.clip(jnp.zeros_like(lo), lo, hi)

  def cond(state):
    i, _, _, _, step = state
    return (i < max_iter) & (step > _XTOL)

  def body(state):
    i, u, a, b, _ = state
    g, h = grad_and_curvature(u)
    a = jnp.where(g < 0, u, a)
    b = jnp.where(g > 0, u, b)
    newton = u - g / jnp.where(h > 0, h, 1)
    new = jnp.where((h > 0) & (newton > a) & (newton < b), newton, 0.5 * (a + b))
    new = jnp.where(g == 0, u, new)
    return i + 1, new, a, b, jnp.abs(new - u)

  done = at_lo | at_hi
  step0 = jnp.where(done, 0.0, jnp.inf).astype(lo.dtype)
  _, u, _, _, _ = jax.lax.while_loop(cond, body, (0, u0, lo, hi, step0))
  return jnp.where(at_lo, lo, jnp.where(at_hi, hi, u))
