"""The marginal coverage guarantee of split conformal prediction, checked statistically.

Each replicate has fresh exchangeable data (calibration and test examples
i.i.d.), calibrates on ``n`` examples and measures the coverage of ``N_TEST``
test examples; ``jax.vmap`` runs ``REPLICATES`` of them with fixed keys. The
guarantee: ``1 - alpha <= E[coverage] <= 1 - alpha + 1/(n + 1)`` (the upper
bound without ties among the scores), and without ties exactly
``E[coverage] = k/(n + 1)`` with ``k = ceil((n + 1)(1 - alpha))``. The mean
over replicates must meet both within 4 standard errors (the standard error
estimated from the replicates). The models are deliberately miscalibrated:
the guarantee does not depend on the model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxuq import conformal

REPLICATES = 2000
N_TEST = 100
CLASSES = 10
SETTINGS = [(19, 0.1), (50, 0.1), (100, 0.05)]
# (50, 0.1) runs always; the other two settings with the slow tests.
CASES = [pytest.param(n, a, marks=[] if n == 50 else [pytest.mark.slow]) for n, a in SETTINGS]

CLASSIFIERS = {
  "lac": lambda: conformal.lac(),
  "aps": lambda: conformal.aps(),
  "aps_rand": lambda: conformal.aps(randomized=True),
  "raps": lambda: conformal.raps(lam=0.05, k_reg=2),
  "raps_rand": lambda: conformal.raps(lam=0.05, k_reg=2, randomized=True),
}
REGRESSORS = {
  "absolute_residual": lambda alpha: conformal.absolute_residual(),
  "normalized_residual": lambda alpha: conformal.normalized_residual(),
  "cqr": lambda alpha: conformal.cqr(level=1 - alpha),
}


def _classification_data(n, seed, scale=2.0, temper=0.6):
  """Model probabilities ``softmax(scale z)``, labels from ``softmax(temper scale z)``.

  By default the model is over-confident: the true probabilities are flatter.

  Drawn with NumPy, ``(REPLICATES, n, ...)``: XLA on the CPU compiles a
  ``jax.random.normal`` of millions of entries for over ten seconds.
  """
  rng = np.random.default_rng(seed)
  logits = scale * rng.standard_normal((REPLICATES, n, CLASSES))
  labels = np.argmax(temper * logits + rng.gumbel(size=logits.shape), axis=-1)  # Gumbel-max
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  return (probs / probs.sum(-1, keepdims=True)).astype(np.float32), labels.astype(np.int32)


def _regression_data(n, seed, num_samples=20):
  """Heteroscedastic targets with t(5) noise; MC samples biased and too narrow."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(-2, 2, (REPLICATES, 1, n))
  y = np.sin(2 * x[:, 0]) + (0.1 + 0.4 * np.abs(x[:, 0])) * rng.standard_t(5.0, (REPLICATES, n))
  noise = rng.standard_normal((REPLICATES, num_samples, n))
  samples = np.sin(2 * x) + 0.1 + (0.05 + 0.2 * np.abs(x)) * noise
  return samples.astype(np.float32), y.astype(np.float32)


def _classification_coverage(method, n, alpha):
  def one(key, probs, labels):
    cal_key, test_key = jax.random.split(key)
    if method.randomized:
      scores = method.score(cal_key, probs[:n], labels[:n])
      sets = method.predict_set(test_key, conformal.calibrate(scores, alpha), probs[n:])
    else:
      scores = method.score(probs[:n], labels[:n])
      sets = method.predict_set(conformal.calibrate(scores, alpha), probs[n:])
    return conformal.set_coverage(sets, labels[n:]), conformal.mean_set_size(sets)

  keys = jax.random.split(jax.random.key(n), REPLICATES)
  return jax.jit(jax.vmap(one))(keys, *_classification_data(n + N_TEST, seed=n))


def _predictions(name, samples):
  if name == "absolute_residual":
    return (samples.mean(0),)
  if name == "normalized_residual":
    return (samples.mean(0), samples.std(0))
  return (samples,)


def _regression_coverage(name, n, alpha):
  method = REGRESSORS[name](alpha)

  def one(samples, y):
    cal, test = _predictions(name, samples[:, :n]), _predictions(name, samples[:, n:])
    threshold = conformal.calibrate(method.score(*cal, y[:n]), alpha)
    lower, upper = method.predict_interval(threshold, *test)
    return conformal.regression_coverage(lower, upper, y[n:]), conformal.mean_width(lower, upper)

  return jax.jit(jax.vmap(one))(*_regression_data(n + N_TEST, seed=n))


def _check(coverage, n, alpha, exact=True):
  coverage = np.asarray(coverage, np.float64)
  mean, se = coverage.mean(), coverage.std(ddof=1) / np.sqrt(coverage.size)
  low, high = 1 - alpha, 1 - alpha + 1 / (n + 1)
  assert low - 4 * se <= mean <= high + 4 * se, (mean, se, low, high)
  if exact:  # continuous scores: E[coverage] = k / (n + 1)
    expected = conformal.quantile_rank(n, alpha) / (n + 1)
    assert abs(mean - expected) <= 4 * se, (mean, se, expected)
  return mean, se


@pytest.mark.parametrize(("n", "alpha"), CASES)
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classification_sets_cover(name, n, alpha):
  coverage, size = _classification_coverage(CLASSIFIERS[name](), n, alpha)
  _check(coverage, n, alpha)
  assert 1 <= float(size.mean()) < CLASSES  # informative sets, not all classes


@pytest.mark.parametrize(("n", "alpha"), CASES)
@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regression_intervals_cover(name, n, alpha):
  coverage, width = _regression_coverage(name, n, alpha)
  _check(coverage, n, alpha)
  assert np.isfinite(np.asarray(width)).all()


def test_non_randomised_aps_is_conservative_when_the_top_class_is_usually_right():
  """Every label ranked first scores 0: a tie that randomisation removes."""
  n, alpha = 50, 0.2
  probs, labels = _classification_data(n + N_TEST, seed=1, scale=10.0, temper=1.0)
  accuracy = (probs[:, n:].argmax(-1) == labels[:, n:]).mean()
  assert accuracy > 1 - alpha + 1 / (n + 1) + 0.02  # a calibrated model, right ~89 % of the time

  def one(key, probs, labels, method):
    cal_key, test_key = jax.random.split(key)
    if method.randomized:
      threshold = conformal.calibrate(method.score(cal_key, probs[:n], labels[:n]), alpha)
      sets = method.predict_set(test_key, threshold, probs[n:])
    else:
      sets = method.predict_set(
        conformal.calibrate(method.score(probs[:n], labels[:n]), alpha), probs[n:]
      )
    return conformal.set_coverage(sets, labels[n:]), conformal.mean_set_size(sets)

  keys = jax.random.split(jax.random.key(1), REPLICATES)
  fixed, randomized = conformal.aps(), conformal.aps(randomized=True)
  coverage, size = jax.jit(jax.vmap(lambda *a: one(*a, fixed)))(keys, probs, labels)
  assert 1.0 <= float(size.mean()) < 1.01  # the top class alone, nearly every time
  assert float(coverage.mean()) >= accuracy - 1e-6  # the top class is always in
  with pytest.raises(AssertionError):  # above the band
    _check(coverage, n, alpha, exact=False)
  randomized_coverage, _ = jax.jit(jax.vmap(lambda *a: one(*a, randomized)))(keys, probs, labels)
  _check(randomized_coverage, n, alpha)  # 1 - alpha to within 1/(n + 1)
  assert float(randomized_coverage.mean()) < float(coverage.mean()) - 0.02


def test_the_check_rejects_the_uncorrected_quantile():
  """Power: the plain (1 - alpha) empirical quantile undercovers, and the check says so."""
  n, alpha = 19, 0.1
  method = conformal.lac()

  def one(probs, labels):
    threshold = jnp.quantile(method.score(probs[:n], labels[:n]), 1 - alpha)  # no correction
    return conformal.set_coverage(method.predict_set(threshold, probs[n:]), labels[n:])

  coverage = jax.jit(jax.vmap(one))(*_classification_data(n + N_TEST, seed=n))
  with pytest.raises(AssertionError):
    _check(coverage, n, alpha, exact=False)


if __name__ == "__main__":  # the numbers of the report: mean coverage, standard error, size
  for n, alpha in SETTINGS:
    band = f"[{1 - alpha:.4f}, {1 - alpha + 1 / (n + 1):.4f}]"
    expected = conformal.quantile_rank(n, alpha) / (n + 1)
    print(f"n={n} alpha={alpha} band {band} k/(n+1)={expected:.4f}")
    for name, build in sorted(CLASSIFIERS.items()):
      cov, size = _classification_coverage(build(), n, alpha)
      m, se = float(cov.mean()), float(np.std(cov, ddof=1) / np.sqrt(REPLICATES))
      print(f"  {name:20s} coverage {m:.4f} ± {se:.4f}  mean size {float(size.mean()):.3f}")
    for name in sorted(REGRESSORS):
      cov, width = _regression_coverage(name, n, alpha)
      m, se = float(cov.mean()), float(np.std(cov, ddof=1) / np.sqrt(REPLICATES))
      print(f"  {name:20s} coverage {m:.4f} ± {se:.4f}  mean width {float(width.mean()):.3f}")
