"""Calibration and conformal prediction inside ``jaxuq ood`` and ``jaxuq regression``.

Classification (``ood``): temperature scaling of the deterministic and of the
MC dropout logits, fit on held-out calibration digits, with ECE and NLL before
and after; split conformal sets (LAC, APS, RAPS) on the MC-averaged
probabilities, their coverage and sizes on test digits, what they look like
on out-of-distribution sets, and the set size as an OOD score. Regression:
90 % intervals from the MC samples, split conformal (absolute residuals, std
normalised, CQR), std scaling and isotonic recalibration, on held-out points
split at random into calibration and test halves.

Every function returns plain Python numbers and lists, ready for ``summary.json``.
"""

from __future__ import annotations

import functools
import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxuq import calibrate, conformal, metrics

ALPHAS = (0.05, 0.01)
# RAPS hyperparameters, fixed before seeing any data (no tuning split, so the
# calibration split serves the conformal quantile alone): the basic CNN ranks
# the right digit first about 99 % of the time, so only the top class goes
# unpenalised (k_reg = 1); lam = 0.01 is the middle of the grid of
# Angelopoulos et al. (2021), large enough to cut the tail of tiny probabilities.
RAPS_LAM, RAPS_K_REG = 0.01, 1
FIGURE_SETS = (("lac", 0.05), ("aps_randomized", 0.05))  # the set-size histograms drawn


def classification_methods() -> dict[str, conformal.ConformalClassifier]:
  """The conformal methods of ``jaxuq ood``, by name."""
  return {
    "lac": conformal.lac(),
    "aps": conformal.aps(),
    "aps_randomized": conformal.aps(randomized=True),
    "raps": conformal.raps(RAPS_LAM, RAPS_K_REG),
    "raps_randomized": conformal.raps(RAPS_LAM, RAPS_K_REG, randomized=True),
  }


def _quality(probs: Any, labels: np.ndarray) -> dict[str, float]:
  return {
    "nll": float(metrics.nll(probs, labels)),
    "ece": float(metrics.expected_calibration_error(probs, labels)),
    "accuracy": float((np.asarray(probs).argmax(-1) == labels).mean()),
  }


def temperature(
  cal_logits: Any, cal_labels: np.ndarray, test_logits: Any, test_labels: np.ndarray
) -> tuple[dict[str, Any], jax.Array]:
  """Fits ``T`` on the calibration logits; NLL/ECE/accuracy before and after, on both splits.

  ``*_logits`` are ``(n, classes)`` (deterministic) or ``(samples, n, classes)``
  (MC dropout: ``T`` divides every sample's logits before the average).

  Returns:
    ``(report, calibrated test probabilities)``.
  """
  fit = calibrate.fit_temperature(cal_logits, cal_labels)
  one = calibrate.TemperatureScaling(jnp.ones_like(fit.temperature), fit.nll)
  report: dict[str, Any] = {"temperature": float(fit.temperature)}
  after = None
  for split, logits, labels in (
    ("calibration", cal_logits, cal_labels),
    ("test_digits", test_logits, test_labels),
  ):
    before_p = calibrate.calibrated_probs(one, logits)
    after = calibrate.calibrated_probs(fit, logits)
    report[split] = {"before": _quality(before_p, labels), "after": _quality(after, labels)}
  assert after is not None
  return report, after


def _histogram(sizes: np.ndarray, classes: int) -> list[int]:
  return np.bincount(sizes, minlength=classes + 1).tolist()


def _sets(key: jax.Array, method: conformal.ConformalClassifier, threshold: Any, p: Any) -> Any:
  if method.randomized:
    return method.predict_set(key, threshold, p)
  return method.predict_set(threshold, p)


def conformal_sets(
  key: jax.Array,
  cal_probs: Any,
  cal_labels: np.ndarray,
  test_probs: dict[str, Any],
  digit_labels: np.ndarray,
) -> tuple[dict[str, Any], dict[tuple[str, float], dict[str, np.ndarray]]]:
  """Split conformal sets of every method at every alpha, on ``digits`` and the OOD sets.

  Args:
    key: for the randomised methods (one fold per method, alpha and set).
    cal_probs: MC-averaged probabilities of the calibration digits, ``(n, classes)``.
    cal_labels: their labels.
    test_probs: ``{set name: (m, classes)}`` MC-averaged probabilities;
      ``digits`` is in distribution, the others out of it.
    digit_labels: the labels of ``test_probs['digits']``.

  Returns:
    ``(report, {(method, alpha): {set name: (m,) set sizes}})``.
  """
  classes = int(np.shape(cal_probs)[-1])
  report: dict[str, Any] = {}
  sizes_out: dict[tuple[str, float], dict[str, np.ndarray]] = {}
  for i, (name, method) in enumerate(classification_methods().items()):
    k_score, k_sets = jax.random.split(jax.random.fold_in(key, i))
    scores = (
      method.score(k_score, cal_probs, cal_labels)
      if method.randomized
      else method.score(cal_probs, cal_labels)
    )
    report[name] = {}
    for j, alpha in enumerate(ALPHAS):
      threshold = conformal.calibrate(scores, alpha)
      sets = {
        s: np.asarray(_sets(jax.random.fold_in(k_sets, 100 * j + m), method, threshold, p))
        for m, (s, p) in enumerate(test_probs.items())
      }
      sizes = {s: m.sum(-1) for s, m in sets.items()}
      by_size = conformal.coverage_by_set_size(sets["digits"], digit_labels)
      r: dict[str, Any] = {
        "threshold": float(threshold.threshold),
        "digits": {
          "coverage": float(conformal.set_coverage(sets["digits"], digit_labels)),
          "mean_size": float(sizes["digits"].mean()),
          "fraction_empty": float((sizes["digits"] == 0).mean()),
          "size_histogram": _histogram(sizes["digits"], classes),
          "coverage_by_set_size": [
            None if not c else float(v)
            for v, c in zip(
              np.asarray(by_size.coverage).tolist(),
              np.asarray(by_size.counts).tolist(),
              strict=True,
            )
          ],
        },
      }
      for s, z in sizes.items():
        if s == "digits":
          continue
        r[s] = {
          "mean_size": float(z.mean()),
          "fraction_empty": float((z == 0).mean()),
          "fraction_not_singleton": float((z != 1).mean()),
          "size_histogram": _histogram(z, classes),
          "auroc_set_size": _auroc(sizes["digits"], z),
          "auroc_not_singleton": _auroc(sizes["digits"] != 1, z != 1),
        }
      report[name][str(alpha)] = r
      sizes_out[(name, alpha)] = sizes
  return report, sizes_out


def _auroc(s_in: np.ndarray, s_out: np.ndarray) -> float:
  """AUROC of a score, out-of-distribution positive (ties count one half)."""
  s = np.concatenate([s_in, s_out]).astype(np.float32)
  y = np.r_[np.zeros(len(s_in), np.int32), np.ones(len(s_out), np.int32)]
  return float(metrics.auroc(s, y))


def calibration_split_info(size: int, first_heldout_row: int) -> dict[str, Any]:
  """What ``summary.json`` says about the two calibration sets of digits."""
  return {
    "size": size,
    "sources": {
      "test_digits": f"{size} digits of the test set drawn at random from those not among the "
      "evaluated test digits (the same permutation): exchangeable with them, so the conformal "
      "guarantee applies; the figure and the main table use these",
      "heldout_training": f"training digits [{first_heldout_row}, {first_heldout_row + size}) "
      "as loaded: held out from training and disjoint from the accept/reject stage's held-out "
      "digits; MNIST's training and test digits come from different writers, so these are not "
      "exchangeable with the test digits and the guarantee need not hold",
    },
    "note": "each source fits its own temperatures and conformal thresholds",
    "conformal_on": "MC-averaged probabilities without temperature scaling",
    "raps": {
      "lam": RAPS_LAM,
      "k_reg": RAPS_K_REG,
      "chosen": "fixed before the run (no tuning split): k_reg = 1 as the top class is right "
      "~99 % of the time, lam = 0.01 from Angelopoulos et al.'s grid",
    },
  }


# --- regression -----------------------------------------------------------------------------

LEVEL = 0.9
BETA = 1e-6  # added to the MC std in the normalised score: keeps it finite where the std is 0
METHODS = ("mc", "conformal_residual", "conformal_std", "cqr", "std_scaling", "isotonic")


def intervals(cal_samples: np.ndarray, cal_y: np.ndarray, samples: np.ndarray,
              level: float = LEVEL) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
  """Every method's central ``level`` interval for ``samples (S, n)``, fit on the calibration points.

  ``mc``: the samples' own quantiles (no calibration); ``conformal_residual``:
  MC mean ± the conformal quantile of ``|y - mean|``; ``conformal_std``: the
  same residuals divided by the MC std; ``cqr``: the MC quantile interval
  conformalised; ``std_scaling``: mean ± z · s · std (Gaussian, ``s`` fit by
  :func:`jaxuq.calibrate.fit_std_scaling`); ``isotonic``: the recalibrated
  sample quantiles of :func:`jaxuq.calibrate.fit_quantile_recalibration`.
  """
  out = _intervals_jit(jnp.asarray(cal_samples), jnp.asarray(cal_y), jnp.asarray(samples), level)
  return {k: (np.asarray(out[k][0]), np.asarray(out[k][1])) for k in METHODS}


def _intervals(cal_samples: jax.Array, cal_y: jax.Array, samples: jax.Array,
               level: float) -> dict[str, tuple[jax.Array, jax.Array]]:  # fmt: skip
  """:func:`intervals` in JAX, traceable: one program for every method (and, vmapped, split)."""
  alpha = 1 - level
  mean_c, std_c = cal_samples.mean(0), cal_samples.std(0, ddof=1)
  mean, std = samples.mean(0), samples.std(0, ddof=1)
  out = {"mc": metrics.central_interval(samples, level)}
  plain = conformal.absolute_residual()
  t = conformal.calibrate(plain.score(mean_c, cal_y), alpha)
  out["conformal_residual"] = plain.predict_interval(t, mean)
  norm = conformal.normalized_residual(beta=BETA)
  t = conformal.calibrate(norm.score(mean_c, std_c, cal_y), alpha)
  out["conformal_std"] = norm.predict_interval(t, mean, std)
  cqr = conformal.cqr(level)
  out["cqr"] = cqr.predict_interval(
    conformal.calibrate(cqr.score(cal_samples, cal_y), alpha), samples
  )
  z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
  half = z * calibrate.scale_std(calibrate.fit_std_scaling(mean_c, std_c, cal_y), std)
  out["std_scaling"] = (mean - half, mean + half)
  iso = calibrate.fit_quantile_recalibration(cal_samples, cal_y)
  out["isotonic"] = calibrate.recalibrated_interval(iso, samples, level)
  return out


_intervals_jit = jax.jit(_intervals, static_argnums=3)

# Splits scored side by side in :func:`split_coverage_counts`: at most this many
# bytes of gathered samples per step (the whole grid of 100 splits for the seed
# experiment's 100 samples x 200 held-out points; chunks for larger runs).
SPLIT_BYTES = 2**26


@functools.partial(jax.jit, static_argnames=("level", "batch"))
def _split_counts(samples: jax.Array, y: jax.Array, cal: jax.Array, test: jax.Array, *,
                  level: float, batch: int) -> dict[str, jax.Array]:  # fmt: skip
  def one(idx: tuple[jax.Array, jax.Array]) -> dict[str, jax.Array]:
    c, t = idx
    found = _intervals(samples[:, c], y[c], samples[:, t], level)
    return {k: ((lo <= y[t]) & (y[t] <= hi)).sum() for k, (lo, hi) in found.items()}

  return jax.lax.map(one, (cal, test), batch_size=batch)


def split_coverage_counts(samples: np.ndarray, y: np.ndarray, cal: np.ndarray, test: np.ndarray,
                          level: float = LEVEL) -> dict[str, np.ndarray]:  # fmt: skip
  """Per method, how many test points each split's interval covers: ``(splits,)`` ints.

  Split ``i`` fits on points ``cal[i]`` and tests on ``test[i]`` (index
  arrays of shapes ``(splits, n_cal)`` and ``(splits, n_test)``), exactly as
  :func:`intervals` would one split at a time; the splits run in one
  compiled program, vmapped in batches of at most :data:`SPLIT_BYTES`.
  """
  cal, test = np.asarray(cal), np.asarray(test)
  step = samples.shape[0] * (cal.shape[1] + test.shape[1]) * samples.dtype.itemsize
  batch = max(1, min(len(cal), SPLIT_BYTES // max(step, 1)))
  out = _split_counts(jnp.asarray(samples), jnp.asarray(y), jnp.asarray(cal), jnp.asarray(test),
                      level=level, batch=batch)  # fmt: skip
  return {k: np.asarray(out[k]) for k in METHODS}


def _cover(lo: np.ndarray, hi: np.ndarray, y: np.ndarray) -> dict[str, float]:
  return {"coverage": float(((lo <= y) & (y <= hi)).mean()), "width": float((hi - lo).mean())}


def regression_intervals(
  seed: int,
  hold_samples: np.ndarray,
  hold_y: np.ndarray,
  grid_samples: np.ndarray,
  grid_truth: np.ndarray,
  regions: dict[str, np.ndarray],
  *,
  splits: int = 100,
) -> dict[str, Any]:
  """90 % intervals of every method: held-out coverage and width, and per region of the grid.

  The held-out points (all inside the training range, never trained on) are
  split at random, with ``numpy.random.default_rng(seed)``, into a
  calibration half and a test half, so calibration and test points are
  exchangeable; ``splits`` further random splits give the mean and spread of
  the held-out coverage. On the test grid the truth is the noise-free target,
  and coverage there is conditional on the region: the guarantee is marginal
  over points like the calibration ones, i.e. inside the training range.
  """
  if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
    raise ValueError(f"splits must be a positive int, got {splits!r}")
  n = len(hold_y)
  rng = np.random.default_rng(seed)
  perm = rng.permutation(n)
  cal, test = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
  ev = np.concatenate([hold_samples[:, test], grid_samples], axis=1)
  found = intervals(hold_samples[:, cal], hold_y[cal], ev)
  methods: dict[str, Any] = {}
  for name, (lo, hi) in found.items():
    k = len(test)
    r: dict[str, Any] = {"heldout_test": _cover(lo[:k], hi[:k], hold_y[test])}
    r["grid"] = {g: _cover(lo[k:][m], hi[k:][m], grid_truth[m]) for g, m in regions.items()}
    methods[name] = r
  perms = np.stack([rng.permutation(n) for _ in range(splits)])
  counts = split_coverage_counts(hold_samples, hold_y, perms[:, : n // 2], perms[:, n // 2 :])
  for name in found:
    covs = counts[name] / (n - n // 2)  # float64, as NumPy's mean of the covered points
    methods[name]["heldout_random_splits"] = {
      "splits": splits,
      "coverage_mean": float(np.mean(covs)),
      "coverage_sd": float(np.std(covs, ddof=1)) if splits > 1 else 0.0,
    }
  c = jnp.asarray(hold_samples[:, cal])  # the factor std_scaling used above, computed alike
  fit = calibrate.fit_std_scaling(c.mean(0), c.std(0, ddof=1), jnp.asarray(hold_y[cal]))
  return {
    "level": LEVEL,
    "std_scaling_factor": float(fit.scale),
    "calibration_points": int(len(cal)),
    "test_points": int(len(test)),
    "split": f"the held-out points split at random in halves (numpy default_rng({seed})); "
    "grid coverage is of the noise-free target, per region",
    "methods": methods,
  }
