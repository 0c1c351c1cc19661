"""jaxuq.plot: what the figures draw, checked against NumPy, and bad input refused by name."""

import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxuq import plot

pytest.importorskip("matplotlib")

X = np.linspace(-2, 3, 50)


def _samples(n=6, seed=0):
  return np.sin(2 * np.pi * X) - X + 0.1 * np.random.default_rng(seed).standard_normal((n, 50))


def _bars(container):
  heights = np.array([p.get_height() for p in container])
  edges = np.array(
    [p.get_x() for p in container] + [container[-1].get_x() + container[-1].get_width()]
  )
  return heights, edges


def test_score_histograms_span_negative_scores_and_match_numpy():
  rng = np.random.default_rng(1)
  a, b = rng.normal(0, 1, 500), rng.normal(1, 1, 300)  # half of a is negative
  fig = plot.score_histograms({"digits": {"s": a}, "letters": {"s": b}}, {"s": "score"})
  lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
  for container, data in zip(fig.axes[0].containers, (a, b), strict=True):
    heights, edges = _bars(container)
    ref, ref_edges = np.histogram(data, bins=40, range=(lo, hi), density=True)
    np.testing.assert_allclose(edges, ref_edges, atol=1e-12)
    np.testing.assert_allclose(heights, ref, rtol=1e-12)
    assert (heights * np.diff(edges)).sum() == pytest.approx(1.0)  # every score drawn


@pytest.mark.parametrize(
  "scores, labels, message",
  [
    ({"a": {"s": np.array([0.1, np.nan])}}, {"s": "s"}, r"scores\['a'\]\['s'\] holds 1 NaN or inf"),
    ({"a": {"s": np.array([0.1, np.inf])}}, {"s": "s"}, r"holds 1 NaN or infinite"),
    ({"a": {"s": np.array([])}}, {"s": "s"}, r"scores\['a'\]\['s'\] is empty"),
    ({}, {"s": "s"}, "scores must hold at least one data set"),
    ({"a": {"s": np.ones(3)}}, {}, "labels must name at least one score"),
  ],
)
def test_score_histograms_refuse_bad_scores(scores, labels, message):
  with pytest.raises(ValueError, match=message):
    plot.score_histograms(scores, labels)


def test_active_learning_curves_refuse_percentages():
  error = np.full((3, 1, 2), 40.0)  # 40 %, given as a percentage
  with pytest.raises(ValueError, match=r"rates in \[0, 1\].*got values 40\.\.40.*test_error / 100"):
    plot.active_learning_curves(np.arange(3), error, ["a"])
  with pytest.raises(ValueError, match=r"got values 0\.4\.\.inf"):
    plot.active_learning_curves(np.arange(3), np.where(error > 0, [[[0.4, np.inf]]], 0), ["a"])


def test_active_learning_curve_stops_at_the_first_incomplete_round():
  error = np.linspace(0.5, 0.05, 6)[:, None, None] * np.ones((1, 1, 2))
  error[2, 0, 1] = np.nan  # round 2 lacks a repeat; rounds 3-5 are complete again
  fig = plot.active_learning_curves(np.arange(0, 60, 10), error, ["a"])
  (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "a"]
  np.testing.assert_array_equal(line.get_xdata(), [0, 10])  # no line across the gap
  np.testing.assert_allclose(line.get_ydata(), 100 * error[:2, 0].mean(axis=1))
  error[0, 0, 0] = np.nan
  with pytest.raises(ValueError, match=r"no complete round for \['a'\]"):
    plot.active_learning_curves(np.arange(0, 60, 10), error, ["a"])


def test_regression_sweep_ylim_from_the_data_or_given():
  big = 50 + _samples()
  fig = plot.regression_sweep([{"x": X, "samples": big, "title": "a"}])
  lo, hi = fig.axes[0].get_ylim()
  m, s = big.mean(0), big.std(0, ddof=1)
  assert lo <= (m - 2 * s).min() and hi >= (m + 2 * s).max() and hi >= big.max()
  fig = plot.regression_sweep([{"x": X, "samples": big, "title": "a"}] * 2, ylim=(-10, 4))
  assert [ax.get_ylim() for ax in fig.axes[:2]] == [(-10, 4)] * 2
  with pytest.raises(ValueError, match="ylim must be"):
    plot.regression_sweep([{"x": X, "samples": big, "title": "a"}], ylim=(4, -10))
  with pytest.raises(ValueError, match="panels must hold at least one panel"):
    plot.regression_sweep([])


def test_per_class_bars_need_mean_rejected_in_every_class_or_none():
  rows = {"0": {"mean_class_std": 0.1}, "1": {"mean_class_std": 0.3, "mean_rejected": 0.5}}
  with pytest.raises(ValueError, match=r"breakdown\['digits'\]\['0'\] has no 'mean_rejected'"):
    plot.per_class_bars({"digits": rows})
  rows["0"]["mean_rejected"] = 0.2
  fig = plot.per_class_bars({"digits": rows})
  np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [0.2, 0.5])
  del rows["0"]["mean_rejected"], rows["1"]["mean_rejected"]
  assert len(plot.per_class_bars({"digits": rows}).axes) == 1  # none: no rejected axis
  with pytest.raises(ValueError, match=r"breakdown\['d'\] has no classes"):
    plot.per_class_bars({"d": {}})
  with pytest.raises(ValueError, match="breakdown must hold at least one data set"):
    plot.per_class_bars({})


def test_regression_band_is_mean_and_two_ddof1_stds():
  samples = _samples(7)
  fig = plot.regression_band(X[:, None], samples[..., None])  # (n, 1) and mc_sample's (S, n, 1)
  ax = fig.axes[0]
  (mean_line,) = [ln for ln in ax.lines if ln.get_label() == "MC mean"]
  np.testing.assert_allclose(mean_line.get_ydata(), samples.mean(0), rtol=1e-12)
  vertices = ax.collections[0].get_paths()[0].vertices  # the polygon: both edges of the band
  m, s = samples.mean(0), samples.std(0, ddof=1)
  for edge in (m - 2 * s, m + 2 * s):
    expected = np.stack([X, edge], axis=1)
    distance = np.abs(vertices[:, None, :] - expected[None]).sum(-1).min(axis=0)
    assert distance.max() < 1e-9  # every point of each edge is a vertex
  with pytest.raises(ValueError, match=r"at least 2 sample\(s\) \(rows\), got 1"):
    plot.regression_band(X, samples[:1])
  with pytest.raises(ValueError, match=r"got x \(40,\) and samples \(7, 50\)"):
    plot.regression_band(X[:40], samples)


def test_regression_animation_checks_its_arguments(tmp_path):
  samples = _samples(3)
  train = (X, X)
  with pytest.raises(ValueError, match=r"path must name a GIF file.*'.*a\.gif'"):
    plot.regression_animation(X, samples, train, tmp_path / "a.png")
  with pytest.raises(ValueError, match="fps must be a number > 0, got 0"):
    plot.regression_animation(X, samples, train, tmp_path / "a.gif", fps=0)
  with pytest.raises(ValueError, match=r"at least 1 sample\(s\) \(rows\), got 0"):
    plot.regression_animation(X, samples[:0], train, tmp_path / "a.gif")
  with pytest.raises(ValueError, match="no finite value"):
    plot.regression_animation(X, np.full_like(samples, np.nan), train, tmp_path / "a.gif")
  samples[0, 3] = np.nan  # one NaN: the y-range is that of the other values
  assert plot.regression_animation(X, samples, train, tmp_path / "new" / "a") == 3
  with Image.open(tmp_path / "new" / "a.gif") as gif:
    assert gif.format == "GIF" and gif.n_frames == 3


def test_small_regression_figures_refuse_bad_input():
  samples = _samples()
  with pytest.raises(ValueError, match="max_curves must be an int >= 1, got 0"):
    plot.regression_curves(X, samples, (X, X), max_curves=0)
  fig = plot.regression_curves(X, samples[..., None], (X, X), max_curves=2)
  assert len(fig.axes[0].lines) == 2 + 1
  fig = plot.regression_scatter([1.0, 2.0, 4.0], [1.5, 2.0, 3.0])  # lists
  np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [1.0, 4.0])
  with pytest.raises(ValueError, match="same number"):
    plot.regression_scatter([1.0, 2.0], [1.0])


def test_calibration_and_sets_accept_whole_float_sizes_and_refuse_others():
  rng = np.random.default_rng(2)
  probs = rng.dirichlet(np.ones(3), size=40)
  labels = rng.integers(0, 3, 40)
  sizes = np.array([1.0, 2.0, 2.0, 0.0])
  fig = plot.calibration_and_sets({"a": probs}, {"L": {"d": sizes}}, labels)
  heights = [p.get_height() for p in fig.axes[1].containers[0]]
  np.testing.assert_allclose(heights, np.bincount(sizes.astype(int)) / len(sizes))
  for bad, message in ((np.array([1.5]), r"whole numbers >= 0.*\[1\.5\]"),
                       (np.array([1, -1]), r"\[-1\]"), (np.array([], int), "is empty")):  # fmt: skip
    with pytest.raises(ValueError, match=r"set_sizes\['L'\]\['d'\] " + ".*" + message):
      plot.calibration_and_sets({"a": probs}, {"L": {"d": bad}}, labels)
  with pytest.raises(ValueError, match=r"set_sizes\['L'\] holds no data set"):
    plot.calibration_and_sets({"a": probs}, {"L": {}}, labels)


def test_roc_curves_need_a_set():
  with pytest.raises(ValueError, match="curves must hold at least one OOD set"):
    plot.roc_curves({})


HISTORY = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}


def test_paths_expand_home_make_folders_add_png_and_refuse_folders(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  plot.regression_losses(HISTORY, path="~/figs/losses")
  with Image.open(tmp_path / "home" / "figs" / "losses.png") as im:
    assert im.format == "PNG"
  with pytest.raises(ValueError, match="path must be a file to write, got the existing folder"):
    plot.regression_losses(HISTORY, path=tmp_path)
  assert not (tmp_path.parent / f"{tmp_path.name}.png").exists()
  rows = [{"model": "mlp", "batch": 8, "masks": t, "variant": "v", "speedup_vs_sequential": 0.1 * t}
          for t in (10, 100)]  # fmt: skip
  assert plot.speedup_figure(rows, tmp_path / "new" / "s.png", ["mlp"], [("v", "v")])
  assert (tmp_path / "new" / "s.png").is_file()
  with pytest.raises(ValueError, match="existing folder"):
    plot.speedup_figure(rows, tmp_path, ["mlp"], [("v", "v")])


def test_speedup_figure_without_speedups_writes_nothing(tmp_path):
  rows = [{"model": "mlp", "batch": 8, "masks": 10, "variant": "v"}]  # a failed row: no speedup
  out = pathlib.Path(tmp_path) / "s.png"
  assert plot.speedup_figure(rows, out, ["mlp"], [("v", "v")]) is False
  assert not out.exists()
