"""Vector scaling (Guo et al. 2017): a scale and a bias per class, fit by minimising the NLL.

The per-class affine map of the logits has ``2 * classes`` parameters; it is
fit with optax's L-BFGS (zoom line search) started from the temperature
scaling solution (``scale = 1/T``, ``bias = 0``), so the calibration NLL is
never worse than temperature scaling's. For deterministic logits the NLL is
convex in the parameters (the scaled logits are linear in them).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxuq._src.calibrate import validate
from jaxuq._src.calibrate.scaling import VectorScaling, as_samples, scaled_nll
from jaxuq._src.calibrate.temperature import fit_temperature
from jaxuq._src.keys import check_positive_int
from jaxuq._src.metrics import _checks

# Stop once the gradient's norm falls below this.
_GTOL = 1e-6


def fit_vector_scaling(
  logits: ArrayLike, labels: ArrayLike, *, max_iter: int = 200
) -> VectorScaling:
  """Fits a per-class scale and bias of the logits by minimising the NLL of held-out labels.

  Calibrated probabilities are ``softmax(scale * z + bias)``; for MC dropout
  logits ``(samples, batch, classes)`` the map acts on every sample's logits
  before the probabilities are averaged over samples, and the NLL minimised is
  that of the averaged probabilities (as in :func:`fit_temperature`). With
  many classes and few calibration examples the extra parameters can overfit;
  temperature scaling (one parameter) is then the safer choice.

  Args:
    logits: shape ``(batch, classes)`` or ``(samples, batch, classes)``, from
      held-out calibration data.
    labels: integer classes, shape ``(batch,)``.
    max_iter: the cap on L-BFGS steps (it stops earlier once the gradient's
      norm is below 1e-6).

  Returns:
    A :class:`VectorScaling`; apply it with :func:`calibrated_probs`.

  Raises:
    ValueError: as :func:`fit_temperature`.
    TypeError: non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxuq.calibrate import fit_vector_scaling
    >>> logits = jnp.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    >>> fit = fit_vector_scaling(logits, jnp.array([0, 0, 0, 1]))
    >>> round(float(fit.nll), 4)  # class 0 made certain, class 1 at 1/2: ½ log 2
    0.3466

  References:
    Guo, C., Pleiss, G., Sun, Y., Weinberger, K. Q. (2017). On Calibration of
    Modern Neural Networks. ICML.
    Liu, D. C., Nocedal, J. (1989). On the Limited Memory BFGS Method for Large
    Scale Optimization. Mathematical Programming 45, 503-528.
  """
  max_iter = check_positive_int(max_iter, "max_iter")
  z = validate.check_logits(logits)
  y = validate.check_labels(labels, z)
  start = fit_temperature(z, y)
  wide = _checks.compute_dtype(z.dtype)
  scale, bias, nll = _fit(as_samples(z).astype(wide), y, start.temperature.astype(wide), max_iter)
  return _checks.narrow(VectorScaling(scale=scale, bias=bias, nll=nll), z.dtype)


@functools.partial(jax.jit, static_argnums=3)
def _fit(z: jax.Array, y: jax.Array, temperature: jax.Array, max_iter: int):
  num_classes = z.shape[-1]

  def loss(params):
    return scaled_nll(z, y, params[0], params[1])

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)
  params = (jnp.full((num_classes,), 1 / temperature), jnp.zeros((num_classes,), z.dtype))

  def cond(state):
    i, _, _, gnorm = state
    return (i < max_iter) & (gnorm > _GTOL)

  def body(state):
    i, params, opt_state, _ = state
    value, grad = value_and_grad(params, state=opt_state)
    updates, opt_state = opt.update(grad, opt_state, params, value=value, grad=grad, value_fn=loss)
    return i + 1, optax.apply_updates(params, updates), opt_state, optax.tree.norm(grad)

  init = (0, params, opt.init(params), jnp.asarray(jnp.inf, z.dtype))
  _, fitted, _, _ = jax.lax.while_loop(cond, body, init)
  # Keep the start (the temperature solution) should the search end anywhere worse.
  start_loss, fitted_loss = loss(params), loss(fitted)
  better = fitted_loss <= start_loss
  scale = jnp.where(better, fitted[0], params[0])
  bias = jnp.where(better, fitted[1] - fitted[1].mean(), params[1])
  return scale, bias, jnp.where(better, fitted_loss, start_loss)
