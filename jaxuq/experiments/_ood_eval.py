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
  """The features of :func:`jaxuq.reject.uncertainty_features` per input, by name.

  Oriented as OOD scores (higher = more likely out of distribution):
  ``max_probability`` enters as ``1 - max probability``.
  """
  features = np.asarray(reject.uncertainty_features(probs))
  named = {name: features[:, i] for i, name in enumerate(reject.FEATURE_NAMES)}
  named["max_probability"] = 1.0 - named["max_probability"]
  return named


def _pooled(s_in: np.ndarray, s_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """In- and out-of-distribution scores in one array, with labels (1 = out of distribution)."""
  y = np.concatenate([np.zeros(len(s_in), np.int32), np.ones(len(s_out), np.int32)])
  return np.concatenate([s_in, s_out]), y


def roc(s_in: np.ndarray, s_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(FPR, TPR) of every threshold, OOD positive, ties kept together (:func:`metrics.roc_curve`)."""
  curve = metrics.roc_curve(*_pooled(s_in, s_out))
  return np.asarray(curve.fpr), np.asarray(curve.tpr)


def detection(in_scores: dict[str, np.ndarray], out_scores: dict[str, np.ndarray]) -> dict:
  """AUROC, AUPR (average precision, OOD positive) and FPR at 95% TPR for every score."""
  result = {}
  for name, s_in in in_scores.items():
    s, y = _pooled(s_in, out_scores[name])
    result[name] = {
      "auroc": float(metrics.auroc(s, y)),
      "aupr": float(metrics.average_precision(s, y)),
      "fpr_at_95_tpr": float(metrics.fpr_at_tpr(s, y, TPR)),
    }
  return result


def per_class(
  s: dict[str, np.ndarray], labels: np.ndarray, names: tuple[str, ...], extra: dict | None = None
) -> dict[str, dict[str, float]]:
  """Mean of each score (and of each ``extra`` per-input array) per class."""
  # On the host: indexing a device array by a mask compiled one program per class and score.
  values = {m: np.asarray(v, np.float64) for m, v in (s | (extra or {})).items()}
  labels = np.asarray(labels)
  out: dict[str, dict[str, float]] = {}
  for k, name in enumerate(names):
    rows = labels == k
    if rows.any():
      out[name] = {"count": float(rows.sum())}
      out[name] |= {f"mean_{m}": float(v[rows].mean()) for m, v in values.items()}
  return out


def digit_quality(probs: Any, labels: np.ndarray) -> dict[str, Any]:
  """Accuracy, NLL, Brier, ECE, AURC and the accuracy-coverage curve of the mean prediction."""
  mean = np.asarray(probs).mean(0)
  correct = mean.argmax(-1) == labels
  entropy = np.asarray(metrics.predictive_entropy(probs))
  curve = metrics.accuracy_coverage_curve(entropy, correct)
  pick = np.unique(np.linspace(0, len(curve.coverage) - 1, 51).round().astype(int))
  return {
    "accuracy": float(correct.mean()),
    "nll": float(metrics.nll(mean, labels)),
    "brier": float(metrics.brier_score(mean, labels)),
    "ece": float(metrics.expected_calibration_error(mean, labels)),
    "aurc": float(metrics.aurc(entropy, correct)),
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
