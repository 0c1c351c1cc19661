"""The numbers of ``jaxuq ood``: OOD detection, per-class breakdown, accept/reject, selective accuracy.

Every function takes sampled class probabilities ``(samples, n, classes)``
(MC dropout passes or ensemble members) as NumPy/JAX arrays and returns plain
Python numbers and lists, ready for ``summary.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxuq import metrics, reject

TPR = 0.95


def scores(probs: Any) -> dict[str, np.ndarray]:
  """Uncertainty scores per input (higher = more likely out of distribution)."""
  return {
    "class_std": np.asarray(metrics.class_std(probs)),
    "predictive_entropy": np.asarray(metrics.predictive_entropy(probs)),
    "mutual_information": np.asarray(metrics.mutual_information(probs)),
    "max_probability": 1.0 - np.asarray(probs).mean(0).max(-1),
  }


def detection(in_scores: dict[str, np.ndarray], out_scores: dict[str, np.ndarray]) -> dict:
  """AUROC, AUPR (average precision, OOD positive) and FPR at 95% TPR for every score."""
  result = {}
  for name, s_in in in_scores.items():
    s = np.concatenate([s_in, out_scores[name]])
    y = np.concatenate([np.zeros(len(s_in), np.int32), np.ones(len(out_scores[name]), np.int32)])
    result[name] = {
      "auroc": float(metrics.auroc(y, s)),
      "aupr": float(metrics.average_precision(y, s)),
      "fpr_at_95_tpr": float(metrics.fpr_at_tpr(y, s, TPR)),
    }
  return result


def per_class(
  s: dict[str, np.ndarray], labels: np.ndarray, names: tuple[str, ...], extra: dict | None = None
) -> dict[str, dict[str, float]]:
  """Mean of each score (and of each ``extra`` per-input array) per class."""
  extra = extra or {}
  out: dict[str, dict[str, float]] = {}
  for k, name in enumerate(names):
    rows = labels == k
    if rows.any():
      out[name] = {"count": float(rows.sum())}
      out[name] |= {f"mean_{m}": float(v[rows].mean()) for m, v in (s | extra).items()}
  return out


def digit_quality(probs: Any, labels: np.ndarray) -> dict[str, Any]:
  """Accuracy, NLL, Brier, ECE, AURC and the accuracy-coverage curve of the mean prediction."""
  mean = np.asarray(probs).mean(0)
  correct = mean.argmax(-1) == labels
  entropy = np.asarray(metrics.predictive_entropy(probs))
  curve = metrics.accuracy_coverage_curve(correct, entropy)
  pick = np.unique(np.linspace(0, len(curve.coverage) - 1, 51).round().astype(int))
  return {
    "accuracy": float(correct.mean()),
    "nll": float(metrics.nll(mean, labels)),
    "brier": float(metrics.brier_score(mean, labels)),
    "ece": float(metrics.expected_calibration_error(mean, labels)),
    "aurc": float(metrics.aurc(correct, entropy)),
    "coverage_curve": {
      "uncertainty": "predictive_entropy",
      "coverage": np.asarray(curve.coverage)[pick].round(5).tolist(),
      "accuracy": np.asarray(curve.accuracy)[pick].round(5).tolist(),
    },
  }


def fit_stage(
  heldout_digits: Any, heldout_letters: Any, seed: int
) -> tuple[reject.Rejector, dict[str, Any]]:
  """Fits the logistic rejector on held-out digits vs held-out letters (half fit, half threshold)."""
  f = np.concatenate(
    [reject.uncertainty_features(heldout_digits), reject.uncertainty_features(heldout_letters)]
  )
  y = np.concatenate(
    [np.zeros(heldout_digits.shape[1], np.int32), np.ones(heldout_letters.shape[1], np.int32)]
  )
  order = np.random.default_rng(seed).permutation(len(y))
  a, b = order[: len(y) // 2], order[len(y) // 2 :]
  rejector = reject.fit_rejector(f[a], y[a], f[b], y[b], target_tpr=TPR)
  info = {
    "features": list(reject.FEATURE_NAMES),
    "fit_rows": int(len(a)),
    "threshold_rows": int(len(b)),
    "target_tpr": TPR,
    "threshold": float(rejector.threshold),
    "weights_standardised": np.asarray(rejector.params.weights).tolist(),
  }
  return rejector, info


def apply_stage(
  rejector: reject.Rejector,
  digits: Any,
  digit_labels: np.ndarray,
  oods: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Accept/reject on the test sets: decision accuracy, rates, accuracy on accepted digits."""
  rej_d = np.asarray(reject.decide(rejector, reject.uncertainty_features(digits)).reject)
  pred = np.asarray(digits).mean(0).argmax(-1)
  accepted = ~rej_d
  result: dict[str, Any] = {
    "digits_accepted": float(accepted.mean()),
    "accuracy_on_accepted_digits": float((pred[accepted] == digit_labels[accepted]).mean())
    if accepted.any()
    else float("nan"),
    "accuracy_on_all_digits": float((pred == digit_labels).mean()),
  }
  rejected = {"digits": rej_d}
  for name, probs in oods.items():
    rej_o = np.asarray(reject.decide(rejector, reject.uncertainty_features(probs)).reject)
    rejected[name] = rej_o
    truth = np.concatenate([np.zeros_like(rej_d), np.ones_like(rej_o)])
    decision = np.concatenate([rej_d, rej_o])
    result[name] = {
      "rejected": float(rej_o.mean()),
      "decision_accuracy": float((decision == truth).mean()),
      "balanced_decision_accuracy": float(0.5 * (rej_o.mean() + accepted.mean())),
    }
  return result, rejected
