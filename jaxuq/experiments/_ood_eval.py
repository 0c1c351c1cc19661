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
SCORE_LABELS = {
  "class_std": "class std (seed)",
  "predictive_entropy": "predictive entropy",
  "mutual_information": "mutual information",
  "max_probability": "1 - max probability",
}


def scores(probs: Any) -> dict[str, np.ndarray]:
  """Uncertainty scores per input (higher = more likely out of distribution)."""
  return {
    "class_std": np.asarray(metrics.class_std(probs)),
    "predictive_entropy": np.asarray(metrics.predictive_entropy(probs)),
    "mutual_information": np.asarray(metrics.mutual_information(probs)),
    "max_probability": 1.0 - np.asarray(probs).mean(0).max(-1),
  }


def roc_points(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(FPR, TPR) of every threshold, OOD positive, ties kept together."""
  s = np.concatenate([in_scores, out_scores])
  y = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
  order = np.argsort(-s, kind="stable")
  s, y = s[order], y[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
  tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
  return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


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
  """Accept/reject on the test sets at two operating points, with the accuracy on accepted digits.

  ``at_target_tpr``: the rejector's threshold (chosen on held-out data to
  reject ``TPR`` of the letters); ``at_probability_0.5``: the plain logistic
  decision (reject when P(not a digit) >= 0.5), as in the seed. The
  per-class rejections returned are those at the target TPR.
  """
  p_d = np.asarray(reject.decide(rejector, reject.uncertainty_features(digits)).probability)
  p_o = {n: np.asarray(reject.decide(rejector, reject.uncertainty_features(p)).probability)
         for n, p in oods.items()}  # fmt: skip
  pred = np.asarray(digits).mean(0).argmax(-1)
  result: dict[str, Any] = {"accuracy_on_all_digits": float((pred == digit_labels).mean())}
  for point, threshold in (
    ("at_target_tpr", float(rejector.threshold)),
    ("at_probability_0.5", 0.5),
  ):
    accepted = p_d < threshold
    r: dict[str, Any] = {
      "threshold": threshold,
      "digits_accepted": float(accepted.mean()),
      "accuracy_on_accepted_digits": float((pred[accepted] == digit_labels[accepted]).mean())
      if accepted.any()
      else float("nan"),
    }
    for name, p in p_o.items():
      rej = p >= threshold
      truth = np.r_[np.zeros(len(p_d), bool), np.ones(len(p), bool)]
      r[name] = {
        "rejected": float(rej.mean()),
        "decision_accuracy": float((np.r_[~accepted, rej] == truth).mean()),
        "balanced_decision_accuracy": float(0.5 * (rej.mean() + accepted.mean())),
      }
    result[point] = r
  rejected = {"digits": p_d >= rejector.threshold}
  rejected |= {n: p >= rejector.threshold for n, p in p_o.items()}
  return result, rejected
