"""NLL, Brier and ECE against scikit-learn and a slow float64 NumPy reference."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from sklearn.metrics import brier_score_loss, log_loss

from jaxuq import metrics
from tests.jit_variants import all_variants


def random_case(seed, n=50, classes=4, temperature=1.0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, classes)) / temperature
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  return probs, rng.integers(0, classes, n)


def ref_ece(probs, labels, num_bins):
  """Slow float64 ECE: loop over bins (lo, hi], top label, argmax ties to the lowest class."""
  probs = np.asarray(probs, np.float64)
  conf = probs.max(1)
  correct = (probs.argmax(1) == labels).astype(np.float64)
  ece, table = 0.0, []
  for b in range(num_bins):
    lo, hi = b / num_bins, (b + 1) / num_bins
    inside = (conf > lo) & (conf <= hi) if b > 0 else (conf <= hi)
    if inside.any():
      ece += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
      table.append((conf[inside].mean(), correct[inside].mean(), inside.sum()))
    else:
      table.append((np.nan, np.nan, 0))
  return ece, np.array(table)


@all_variants
def test_nll_and_brier_match_sklearn(variant):
  probs, labels = random_case(0, classes=5)
  with jax.enable_x64(True):
    np.testing.assert_allclose(
      variant(metrics.nll)(probs, labels),
      log_loss(labels, probs),
      rtol=1e-12,
    )
    ours = variant(metrics.brier_score)(probs, labels)
  ref = brier_score_loss(labels, probs, labels=list(range(5)))
  np.testing.assert_allclose(ours, ref, rtol=1e-12)
  per = variant(metrics.brier_score)(probs, labels, reduction="none")
  assert per.shape == (50,)
  np.testing.assert_allclose(per.mean(), ours, rtol=1e-6)


def test_binary_brier_is_twice_sklearns_binary_convention():
  probs, labels = random_case(1, classes=2)
  ours = metrics.brier_score(probs, labels)
  np.testing.assert_allclose(ours, 2 * brier_score_loss(labels, probs[:, 1]), rtol=1e-6)
  np.testing.assert_allclose(
    ours, brier_score_loss(labels, probs, labels=[0, 1], scale_by_half=False), rtol=1e-6
  )


@all_variants
def test_hand_computed_calibration(variant):
  probs = jnp.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
  labels = jnp.array([0, 1, 1, 1])
  np.testing.assert_allclose(
    variant(metrics.nll)(probs, labels, reduction="none"),
    -np.log([0.9, 0.1, 0.8, 0.5]),
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    variant(metrics.brier_score)(probs, labels),
    (0.02 + 1.62 + 0.08 + 0.5) / 4,
    rtol=1e-6,
  )
  # 5 bins: 0.5 -> bin (0.4, 0.6] (argmax tie -> class 0, wrong), 0.8 -> (0.6, 0.8],
  # 0.9, 0.9 -> (0.8, 1] with accuracy 1/2.
  diagram = variant(metrics.reliability_diagram)(probs, labels, num_bins=5)
  np.testing.assert_array_equal(diagram.counts, [0, 0, 1, 1, 2])
  np.testing.assert_allclose(diagram.confidence[2:], [0.5, 0.8, 0.9], rtol=1e-6)
  np.testing.assert_allclose(diagram.accuracy[2:], [0.0, 1.0, 0.5])
  assert np.isnan(diagram.confidence[:2]).all() and np.isnan(diagram.accuracy[:2]).all()
  np.testing.assert_allclose(diagram.edges, np.linspace(0, 1, 6), atol=1e-7)
  ece = (0.5 + 0.2 + 2 * 0.4) / 4
  np.testing.assert_allclose(
    variant(metrics.expected_calibration_error)(probs, labels, 5),
    ece,
    rtol=1e-6,
  )
  # Perfectly confident and right: 0; always-wrong certainty: 1.
  eye = jnp.eye(3)
  assert float(variant(metrics.expected_calibration_error)(eye, jnp.arange(3))) == 0.0
  assert float(variant(metrics.expected_calibration_error)(eye, jnp.array([1, 2, 0]))) == 1.0


@all_variants
def test_confidence_on_bin_edges_goes_to_the_lower_bin(variant):
  probs = jnp.array([[0.6, 0.4], [1.0, 0.0], [0.5, 0.5]])
  diagram = variant(metrics.reliability_diagram)(probs, jnp.array([0, 0, 0]), num_bins=5)
  np.testing.assert_array_equal(diagram.counts, [0, 0, 2, 0, 1])  # (0.4, 0.6], (0.8, 1]


def test_every_bin_count_puts_edge_confidences_in_the_lower_bin():
  # Under jit the edges b / B were b * (1 / B): 23 of B = 1..100 had edges an ulp low, so a
  # vote fraction k / 100 on an edge went one bin up (0.54 became 0.53999996).
  for num_bins in [*range(1, 16), 25, 50, 100]:  # 25, 50, 100 failed
    edges = (np.arange(num_bins + 1) / num_bins).astype(np.float32)
    conf = np.unique(np.maximum(edges, np.float32(0.5)))  # two classes: confidence >= 1/2
    probs = np.stack([conf, 1 - conf], axis=1)
    diagram = metrics.reliability_diagram(probs, np.zeros(len(conf), int), num_bins)
    want = np.bincount(np.searchsorted(edges, conf, "left") - 1, minlength=num_bins)
    want[0] += int((conf <= edges[0]).sum())  # none: conf > 0
    np.testing.assert_array_equal(diagram.counts, want, err_msg=f"num_bins={num_bins}")
    np.testing.assert_array_equal(diagram.edges, edges)


@settings(max_examples=25, deadline=None)
@given(
  st.integers(0, 2**31 - 1),
  st.sampled_from([1, 2, 15]),
  st.sampled_from([0.2, 1.0, 5.0]),
  st.booleans(),
)
def test_ece_matches_slow_reference(seed, num_bins, temperature, ties):
  probs, labels = random_case(seed, n=64, classes=3, temperature=temperature)
  if ties:  # repeated rows: equal confidences, argmax ties in equal rows
    probs[::2] = probs[1::2]
    probs[:4] = 1 / 3
  with jax.enable_x64(True):
    ece = metrics.expected_calibration_error(probs, labels, num_bins)
    diagram = metrics.reliability_diagram(probs, labels, num_bins)
  ref, table = ref_ece(probs, labels, num_bins)
  np.testing.assert_allclose(ece, ref, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(diagram.confidence, table[:, 0], rtol=1e-10)
  np.testing.assert_allclose(diagram.accuracy, table[:, 1], rtol=1e-10)
  np.testing.assert_array_equal(diagram.counts, table[:, 2])


def test_bad_inputs():
  probs, labels = random_case(3)
  with pytest.raises(ValueError, match=r"probs must have shape \(batch, classes\)"):
    metrics.nll(probs[None], labels)
  with pytest.raises(ValueError, match=r"labels must have shape \(50,\)"):
    metrics.brier_score(probs, labels[:-1])
  with pytest.raises(TypeError, match="integer class indices"):
    metrics.nll(probs, labels.astype(np.float32))
  with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
    metrics.nll(probs, labels + 4)
  with pytest.raises(ValueError, match="sum to 1"):
    metrics.expected_calibration_error(probs * 0.5, labels)
  with pytest.raises(ValueError, match="num_bins"):
    metrics.expected_calibration_error(probs, labels, num_bins=0)
  with pytest.raises(ValueError, match="reduction"):
    metrics.nll(probs, labels, reduction="sum")
  with pytest.raises(ValueError, match="must not be empty"):
    metrics.nll(np.zeros((0, 3)), np.zeros(0, np.int32))
