"""Accept / reject: logistic model on uncertainty features, TPR-targeted threshold, decisions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jaxuq import metrics, reject


@functools.partial(jax.jit, static_argnums=1)
def synthetic_prob_samples(key, n, ood):
  """In distribution: passes agree on a confident class; out: diffuse, disagreeing passes."""
  k_class, k_noise = jax.random.split(key)
  classes = jax.random.randint(k_class, (n,), 0, 10)
  scale = jnp.where(ood, 1.5, 6.0)[None, :, None]
  logits = scale * jax.nn.one_hot(classes, 10)[None] + jnp.where(ood, 1.5, 0.3)[
    None, :, None
  ] * jax.random.normal(k_noise, (20, n, 10))
  return jax.nn.softmax(logits, axis=-1)


@functools.cache
def synthetic_split(seed, n=600):
  key = jax.random.key(seed)
  labels = (jnp.arange(n) % 3 == 0).astype(jnp.int32)  # a third out of distribution
  return reject.uncertainty_features(synthetic_prob_samples(key, n, labels == 1)), labels


def test_uncertainty_features_are_the_metrics():
  p = synthetic_prob_samples(jax.random.key(1), 600, jnp.arange(600) % 2 == 0)
  f = reject.uncertainty_features(p)
  assert f.shape == (600, len(reject.FEATURE_NAMES))
  np.testing.assert_allclose(f[:, 0], metrics.predictive_entropy(p), rtol=1e-6)
  np.testing.assert_allclose(f[:, 1], metrics.mutual_information(p), rtol=1e-6)
  np.testing.assert_allclose(f[:, 2], metrics.max_probability(p), rtol=1e-6)
  np.testing.assert_allclose(f[:, 2], np.asarray(p).mean(0).max(-1), rtol=1e-6)
  np.testing.assert_allclose(f[:, 3], metrics.class_std(p), rtol=1e-6)


def test_separable_features_accuracy_and_heldout_tpr():
  train, held, test = synthetic_split(0), synthetic_split(1), synthetic_split(2)
  rejector = reject.fit_rejector(*train, *held, target_tpr=0.95)
  # On the held-out data the threshold was chosen on, the target TPR is reached.
  decision = reject.decide(rejector, held[0])
  rejected_ood, n_ood = int(decision.reject[held[1] == 1].sum()), int(held[1].sum())
  assert rejected_ood >= 0.95 * n_ood
  assert rejected_ood / n_ood == pytest.approx(float(rejector.tpr))
  assert float(decision.reject[held[1] == 0].mean()) == pytest.approx(float(rejector.fpr))
  # On fresh data from the same distributions: the classifier separates perfectly at 0.5
  # and the TPR-targeted decision is nearly always right (it trades ~5% of OOD for FPR 0).
  decision = reject.decide(rejector, test[0])
  is_ood = np.asarray(test[1]) == 1
  assert float(((np.asarray(decision.probability) >= 0.5) == is_ood).mean()) >= 0.99
  accuracy = float((np.asarray(decision.reject) == is_ood).mean())
  assert accuracy >= 0.95, accuracy
  assert float(np.asarray(decision.reject)[~is_ood].mean()) <= 0.01
  np.testing.assert_array_equal(decision.reject, decision.probability >= rejector.threshold)
  assert float(metrics.auroc(decision.probability, test[1])) >= 0.99


def test_logistic_fit_matches_sklearn():
  """Same objective as sklearn's L2 logistic regression with C = 1 / (l2 n) on standardised features."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 3)) * [1.0, 5.0, 0.2] + [0.0, 2.0, -1.0]
  y = (x @ [1.0, -0.3, 4.0] + rng.normal(size=200) > -3.0).astype(np.int32)
  l2 = 0.01
  params = reject.fit_logistic(x, y, num_steps=3000, learning_rate=0.05, l2=l2)
  z = (x - x.mean(0)) / x.std(0)
  ref = LogisticRegression(C=1 / (l2 * 200), tol=1e-10, max_iter=10_000).fit(z, y)
  np.testing.assert_allclose(params.weights, ref.coef_[0], rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(params.bias, ref.intercept_[0], rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(reject.predict_proba(params, x), ref.predict_proba(z)[:, 1], atol=1e-3)


def test_decide_runs_under_jit_and_constant_feature_is_harmless():
  f, y = synthetic_split(3)
  f = jnp.concatenate([f, jnp.ones((600, 1))], axis=1)  # a constant column: scale 1
  params = reject.fit_logistic(f, y, num_steps=50)
  assert float(params.scale[-1]) == 1.0
  rejector = reject.choose_threshold(params, f, y, target_tpr=0.5)
  eager = reject.decide(rejector, f)
  jitted = jax.jit(reject.decide)(rejector, f)
  np.testing.assert_array_equal(eager.reject, jitted.reject)
  np.testing.assert_allclose(eager.probability, jitted.probability, rtol=1e-6)


def test_bad_inputs():
  f, y = synthetic_split(4)
  with pytest.raises(ValueError, match=r"features must have shape \(batch, features\)"):
    reject.fit_logistic(f[:, 0], y)
  with pytest.raises(ValueError, match="both classes"):
    reject.fit_logistic(f, jnp.zeros(600, jnp.int32))
  with pytest.raises(ValueError, match=r"labels must have shape \(600,\)"):
    reject.fit_logistic(f, y[:-1])
  with pytest.raises(TypeError, match="integers or booleans"):
    reject.fit_logistic(f, y * 1.0)
  with pytest.raises(ValueError, match="finite"):
    reject.fit_logistic(f.at[0, 0].set(jnp.nan), y)
  with pytest.raises(ValueError, match="num_steps must be a positive int"):
    reject.fit_logistic(f, y, num_steps=0)
  with pytest.raises(ValueError, match="learning_rate"):
    reject.fit_logistic(f, y, learning_rate=-1.0)
  with pytest.raises(ValueError, match="l2"):
    reject.fit_logistic(f, y, l2=-1.0)
  params = reject.fit_logistic(f, y, num_steps=5)
  with pytest.raises(ValueError, match=r"features must have shape \(batch, 4\)"):
    reject.predict_proba(params, f[:, :3])
  with pytest.raises(ValueError, match="target_tpr must be in"):
    reject.choose_threshold(params, f, y, target_tpr=0.0)


def test_bfloat16_features_fit_like_float32():
  """Low-precision features are fitted in float32: the same model as float32 features."""
  features, labels = synthetic_split(3, 300)
  f16 = jnp.asarray(features, jnp.bfloat16)
  low = reject.fit_logistic(f16, labels)
  ref = reject.fit_logistic(np.asarray(f16, np.float32), labels)
  assert low.weights.dtype == jnp.float32
  for a, b in zip(low, ref, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
