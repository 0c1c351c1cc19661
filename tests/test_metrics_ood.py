"""AUROC, average precision, ROC curve and FPR@TPR vs scikit-learn and brute force, with ties."""

from fractions import Fraction

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from jaxuq import metrics
from tests.jit_variants import all_variants


def mann_whitney(labels, scores):
  """The double sum over (positive, negative) pairs, ties counted half, as a fraction."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = sum(Fraction(int(p > q)) + Fraction(int(p == q), 2) for p in pos for q in neg)
  return wins / (len(pos) * len(neg))


def brute_threshold(labels, scores, target):
  """The largest distinct score t with TPR(t) >= target, and the FPR there (exact fractions)."""
  n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
  for t in sorted(set(scores.tolist()), reverse=True):
    tpr = Fraction(int(((scores >= t) & (labels == 1)).sum()), n_pos)
    if tpr >= Fraction(str(target)):  # the decimal written, e.g. 4/5 reaches 0.8
      return t, tpr, Fraction(int(((scores >= t) & (labels == 0)).sum()), n_neg)
  raise AssertionError("unreachable: the lowest threshold has TPR 1")


def case(seed, n, levels):
  """Random binary labels with both classes and integer-valued scores (many ties)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  labels[:2] = [0, 1]
  scores = rng.integers(0, levels, n).astype(np.float64) + 0.5 * labels * rng.random(n)
  return labels, np.round(scores, 1)


@all_variants
def test_hand_computed(variant):
  labels = np.array([0, 0, 1, 1, 0, 1])
  scores = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.9])
  # pairs (pos, neg): 0.4 vs (0.1 win, 0.4 tie, 0.8 loss) 1.5; 0.8 vs: 2.5; 0.9: 3 -> 7/9
  np.testing.assert_allclose(variant(metrics.auroc)(scores, labels), 7 / 9, rtol=1e-6)
  # thresholds 0.9: P 1, R 1/3; 0.8: P 2/3, R 2/3; 0.4: P 3/5, R 1 -> (1 + 2/3 + 3/5) / 3
  np.testing.assert_allclose(
    variant(metrics.average_precision)(scores, labels), (1 + 2 / 3 + 0.6) / 3
  )
  op = variant(metrics.threshold_at_tpr)(scores, labels, target_tpr=2 / 3)
  np.testing.assert_allclose([op.threshold, op.tpr, op.fpr], [0.8, 2 / 3, 1 / 3], rtol=1e-6)
  np.testing.assert_allclose(
    variant(metrics.fpr_at_tpr)(scores, labels, target_tpr=0.7),
    2 / 3,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    variant(metrics.fpr_at_tpr)(scores, labels, target_tpr=1.0),
    2 / 3,
    rtol=1e-6,
  )
  # Perfect, reversed and constant scores.
  assert float(variant(metrics.auroc)(labels * 1.0, labels)) == 1.0
  assert float(variant(metrics.auroc)(-labels * 1.0, labels)) == 0.0
  assert float(variant(metrics.auroc)(np.zeros(6), labels)) == 0.5
  assert float(variant(metrics.fpr_at_tpr)(labels * 1.0, labels)) == 0.0
  np.testing.assert_allclose(variant(metrics.average_precision)(np.zeros(6), labels), 0.5)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([8, 40]), st.sampled_from([2, 5, 1000]))
def test_match_sklearn_and_mann_whitney(seed, n, levels):
  labels, scores = case(seed, n, levels)
  with jax.enable_x64(True):
    auc = float(metrics.auroc(scores, labels))
    ap = float(metrics.average_precision(scores, labels))
  assert auc == pytest.approx(float(mann_whitney(labels, scores)), rel=1e-12, abs=1e-15)
  assert auc == pytest.approx(roc_auc_score(labels, scores), rel=1e-12)
  assert ap == pytest.approx(average_precision_score(labels, scores), rel=1e-12)
  # float32 inputs: the counts are exact, the ratio rounds once.
  assert float(metrics.auroc(scores.astype(np.float32), labels)) == pytest.approx(auc, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(
  st.integers(0, 2**31 - 1),
  st.sampled_from([8, 40]),
  st.sampled_from([2, 5, 1000]),
  st.sampled_from([0.5, 0.8, 0.9, 0.95, 1.0]),
)
def test_threshold_at_tpr_matches_brute_force_and_roc_curve(seed, n, levels, target):
  labels, scores = case(seed, n, levels)
  with jax.enable_x64(True):
    op = metrics.threshold_at_tpr(scores, labels, target_tpr=target)
  t, tpr, fpr = brute_threshold(labels, scores, target)
  assert float(op.threshold) == t
  assert float(op.tpr) == pytest.approx(float(tpr), rel=1e-12)
  assert float(op.fpr) == pytest.approx(float(fpr), rel=1e-12, abs=1e-15)
  assert float(op.tpr) >= target
  fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
  assert float(op.fpr) == pytest.approx(fprs[np.argmax(tprs >= target)], abs=1e-15)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([8, 40]), st.sampled_from([2, 5, 1000]))
def test_roc_curve_matches_sklearn_and_its_area_is_auroc(seed, n, levels):
  labels, scores = case(seed, n, levels)
  with jax.enable_x64(True):
    ours = jax.tree.map(np.asarray, metrics.roc_curve(scores, labels))
    auc = float(metrics.auroc(scores, labels))
  assert ours.fpr.shape == ours.tpr.shape == ours.thresholds.shape == (n + 1,)
  fprs, tprs, thresholds = roc_curve(labels, scores, drop_intermediate=False)
  # Our points are sklearn's, each repeated once per input of its tie group.
  points = np.unique(np.stack([ours.fpr, ours.tpr, ours.thresholds], 1), axis=0)
  ref = np.stack([fprs, tprs, np.r_[np.inf, thresholds[1:]]], 1)
  np.testing.assert_allclose(points, np.unique(ref, axis=0), rtol=1e-12)
  area = np.sum(np.diff(ours.fpr) * (ours.tpr[1:] + ours.tpr[:-1]) / 2)
  assert area == pytest.approx(auc, rel=1e-12)


def test_permutation_invariance_and_bool_labels():
  labels, scores = case(7, 30, 4)
  perm = np.random.default_rng(0).permutation(30)
  for f in (metrics.auroc, metrics.average_precision, metrics.fpr_at_tpr):
    np.testing.assert_allclose(f(scores, labels), f(scores[perm], labels[perm]), rtol=1e-6)
    np.testing.assert_allclose(f(scores, labels), f(scores, labels.astype(bool)), rtol=1e-6)


@pytest.mark.parametrize("fill", [0, 1])
def test_one_class_only_under_jit_is_nan(fill):
  labels = np.full(4, fill, np.int32)
  for f in (metrics.auroc, metrics.fpr_at_tpr):
    assert np.isnan(jax.jit(f)(np.arange(4.0), labels)), f.__name__
  # Average precision needs positives only: all positive gives precision 1 everywhere.
  ap = float(jax.jit(metrics.average_precision)(np.arange(4.0), labels))
  assert ap == 1.0 if fill else np.isnan(ap)
  assert np.isnan(jax.jit(metrics.threshold_at_tpr)(np.arange(4.0), labels)).all()


def test_bad_inputs():
  labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])
  for f in (metrics.auroc, metrics.average_precision, metrics.fpr_at_tpr, metrics.roc_curve):
    with pytest.raises(ValueError, match="both classes"):
      f(scores, np.ones(4, np.int32))
    with pytest.raises(ValueError, match="both classes"):
      f(np.zeros(0), np.zeros(0, np.int32))
    with pytest.raises(ValueError, match=r"0 \(in distribution\) or 1"):
      f(scores, labels + 1)
    with pytest.raises(TypeError, match="integers or booleans"):
      f(scores, labels * 1.0)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
      f(scores[:3], labels)
    with pytest.raises(ValueError, match="scores must be 1-D"):
      f(scores[None], labels)
    with pytest.raises(ValueError, match="finite"):
      f(np.array([0.1, np.nan, 0.3, 0.4]), labels)
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match=r"target_tpr must be in \(0, 1\]"):
      metrics.fpr_at_tpr(scores, labels, target_tpr=bad)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99, 1.0])
def test_rates_are_correctly_rounded_under_jit_for_every_count(target):
  # XLA turned tp / n_pos into tp * (1 / n_pos) under jit, an ulp low: 20/25 missed 0.8 and
  # 41/41 missed 1.0, so the "first point reaching the target" was the top score (TPR 0).
  for n_pos in [*range(1, 21), 25, 41, 100, 200, 460]:  # 25, 41, 100, 200, 460 failed
    scores = np.r_[np.arange(n_pos, 0, -1), n_pos + 0.5, 0.5].astype(np.float32)
    labels = np.r_[np.ones(n_pos, int), 0, 0]
    op = metrics.threshold_at_tpr(scores, labels, target)
    t, tpr, fpr = brute_threshold(labels, scores, target)
    assert (float(op.threshold), float(op.tpr), float(op.fpr)) == (
      t,
      np.float32(float(tpr)),
      np.float32(float(fpr)),
    ), n_pos
  roc = metrics.roc_curve(scores, labels)
  assert float(roc.tpr[-1]) == 1.0 and float(roc.fpr[-1]) == 1.0
