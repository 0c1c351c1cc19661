"""jaxuq.plot: every figure draws from plain arrays; matplotlib only inside it, only when drawing."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxuq import plot

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_importing_jaxuq_and_jaxuq_plot_imports_no_matplotlib():
  code = "import sys, jaxuq, jaxuq.plot, jaxuq.data; print('matplotlib' in sys.modules)"
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert proc.stdout.strip() == "False"


def test_only_the_plot_package_imports_matplotlib():
  pattern = re.compile(r"^\s*(import|from)\s+matplotlib", re.MULTILINE)
  found = {
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "jaxuq").rglob("*.py")
    if pattern.search(p.read_text())
  }
  assert found == {"jaxuq/_src/plot/figure.py", "jaxuq/_src/plot/regression.py"}


def test_a_missing_matplotlib_is_named(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(
    ImportError, match=r"jaxuq.plot.regression_losses needs matplotlib: pip install 'jaxuq\[plot\]'"
  ):
    plot.regression_losses({"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]})


@pytest.fixture
def regression_arrays():
  rng = np.random.default_rng(0)
  x = np.linspace(-2, 3, 50)
  samples = np.sin(2 * np.pi * x) - x + 0.1 * rng.standard_normal((6, 50))
  train = (x[:20, None], (np.sin(2 * np.pi * x) - x)[:20, None])
  return x, samples, train


def _png(path):
  with Image.open(path) as im:
    assert im.format == "PNG" and im.size[0] > 100
  return True


def test_regression_figures(regression_arrays, tmp_path):
  x, samples, train = regression_arrays
  fig = plot.regression_losses(
    {"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]}, path=tmp_path / "l.png"
  )
  assert fig.axes[0].get_yscale() == "log" and _png(tmp_path / "l.png")
  fig = plot.regression_curves(x, samples, train, max_curves=4, path=tmp_path / "c.png")
  assert len(fig.axes[0].lines) == 4 + 1  # the curves and the target
  plot.regression_scatter(samples.mean(0), samples[0], path=tmp_path / "s.png")
  cf = (samples.mean(0), samples.std(0))
  fig = plot.regression_band(x, samples, train, closed_form=cf, title="t", path=tmp_path / "b.png")
  assert fig.axes[0].get_title() == "t"
  assert plot.regression_animation(x, samples, train, tmp_path / "a.gif", name="run") == 6
  with Image.open(tmp_path / "a.gif") as gif:
    assert gif.n_frames == 6
  panels = [{"x": x, "samples": samples, "title": f"p{i}"} for i in range(4)]
  fig = plot.regression_sweep(panels, path=tmp_path / "w.png")
  assert [ax.get_title() for ax in fig.axes[:4]] == ["p0", "p1", "p2", "p3"]
  assert all(_png(tmp_path / f"{n}.png") for n in "csbw")


def test_ood_and_exact_figures(tmp_path):
  rng = np.random.default_rng(1)
  scores = {s: {"class_std": rng.random(30), "predictive_entropy": rng.random(30)} for s in "ab"}
  fig = plot.score_histograms(scores, {"class_std": "class std"}, path=tmp_path / "h.png")
  assert fig.axes[0].get_xlabel() == "class std"
  plot.roc_curves({"letters": {"m": ([0, 0.5, 1], [0, 0.8, 1], 0.9)}}, path=tmp_path / "r.png")
  rows = {
    "0": {"mean_class_std": 0.1, "mean_rejected": 0.5},
    "1": {"mean_class_std": 0.2, "mean_rejected": 0.1},
  }
  plot.per_class_bars({"digits": rows}, path=tmp_path / "p.png")
  probs = rng.dirichlet(np.ones(3), size=40).astype(np.float32)
  plot.reliability({"m": probs}, rng.integers(0, 3, 40), path=tmp_path / "y.png")
  plot.coverage_curves(
    {"m": {"coverage": [0.5, 1.0], "accuracy": [1.0, 0.9]}}, path=tmp_path / "v.png"
  )
  exact_rows = [{"output": 1.0, "probability": 0.3, "kept": "h1", "mc_frequency": 0.25, "standard_error": 0.02},
                {"output": 0.0, "probability": 0.7, "kept": "none", "mc_frequency": 0.75, "standard_error": 0.02}]  # fmt: skip
  fig = plot.exact_histogram(exact_rows, samples=100, path=tmp_path / "e.png")
  assert len(fig.axes[0].patches) == 4  # exact and MC bars
  net = {"rel_rmse_mean": [0.5, 0.3], "rel_rmse_variance": [0.9, 0.6], "variance_constant": 1.2}
  plot.mc_convergence({"T": [2, 4], "repeats": 3, "networks": {"n": net}}, path=tmp_path / "m.png")
  assert all(_png(tmp_path / f"{n}.png") for n in "hrpyvem")


def test_active_learning_curves_of_different_lengths(tmp_path):
  # A function stopped early has NaN in its later rounds: its curve ends at its last full round.
  error = np.linspace(0.5, 0.05, 6)[:, None, None] * np.ones((1, 2, 3))
  error[4:, 1] = np.nan
  error[3, 1, 0] = np.nan  # one repeat short of round 3: the mean and range stop at round 2
  fig = plot.active_learning_curves(
    np.arange(0, 60, 10), error, ["a", "b"], path=tmp_path / "c.png"
  )
  lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in ("a", "b")]
  assert [len(ln.get_xdata()) for ln in lines] == [6, 3]
  np.testing.assert_allclose(lines[1].get_ydata(), 100 * error[:3, 1, 0])
  assert _png(tmp_path / "c.png")
  with pytest.raises(ValueError, match=r"no complete round for \['b'\]"):
    error[:, 1, 2] = np.nan
    plot.active_learning_curves(np.arange(0, 60, 10), error, ["a", "b"])
