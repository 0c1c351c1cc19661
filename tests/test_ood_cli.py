"""``jaxuq ood --quick`` end to end (no fetched data), ``jaxuq classify`` on the shipped drawings, resume."""

import json
import pathlib

import numpy as np
import pytest

from jaxuq import cli
from jaxuq.data import drawing_to_mnist_like

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "examples" / "images").glob("*.png"))
SCORES = ("class_std", "predictive_entropy", "mutual_information", "max_probability")


def test_shipped_drawings_become_mnist_like():
  assert len(IMAGES) >= 3 and any("not_a_digit" in p.name for p in IMAGES)
  for path in IMAGES:
    x = drawing_to_mnist_like(path)
    assert x.shape == (28, 28) and x.dtype == np.uint8
    assert (x == 0).mean() > 0.5  # the paper became black, the ink bright
    ink = np.argwhere(x > 0)
    assert (ink.max(0) - ink.min(0) + 1).max() <= 20  # fits in 20x20, as MNIST
    rows, cols = np.indices(x.shape)
    w = x.astype(float) / x.sum()
    assert abs((rows * w).sum() - 14) <= 1 and abs((cols * w).sum() - 14) <= 1


def test_drawing_light_ink_on_dark_is_not_inverted():
  image = np.zeros((50, 40, 3), np.uint8)
  image[10:40, 18:22] = 255  # a white "1" on black
  assert np.array_equal(drawing_to_mnist_like(image), drawing_to_mnist_like(image, invert=False))
  with pytest.raises(ValueError, match="no ink"):
    drawing_to_mnist_like(np.full((8, 8), 255, np.uint8))
  with pytest.raises(ValueError, match="shape"):
    drawing_to_mnist_like(np.zeros((8, 8, 2)))


@pytest.mark.parametrize(
  "command, message",
  [
    (["ood", "--ensemble", "1"], "argument --ensemble: must be 0 (no ensemble) or at least 2"),
    (["ood", "--samples", "0"], "argument --samples: must be an int >= 2"),
    (["ood", "--samples", "1"], "class std need two passes), got 1"),
    (["ood", "--eval-size", "-5"], "argument --eval-size: must be a positive int, got -5"),
    (["ood", "--epochs", "0"], "argument --epochs: must be a positive int, got 0"),
    (["classify", "x.png", "--checkpoint", ".", "--samples", "0"], "argument --samples: must"),
  ],
)
def test_bad_arguments_are_refused_before_any_work(command, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as info:
    cli.main([*command, "--out", str(tmp_path)] if command[0] == "ood" else command)
  assert info.value.code == 2 and message in capsys.readouterr().err
  assert not any(tmp_path.iterdir())


def test_classify_without_a_saved_classifier(tmp_path):
  with pytest.raises(FileNotFoundError, match="no saved classifier"):
    cli.main(["classify", str(IMAGES[0]), "--checkpoint", str(tmp_path)])


@pytest.mark.slow
def test_quick_end_to_end_classify_and_resume(tmp_path, capsys):
  out = tmp_path / "ood"
  args = ["ood", "--quick", "--ensemble", "2", "--out", str(out), "--no-progress"]
  # --resume on an empty folder trains from scratch, and says so (it was silent)
  assert cli.main([*args, "--resume"]) == 0
  assert "--resume: no checkpoint" in capsys.readouterr().out
  summary = json.loads((out / "summary.json").read_text())
  for name in ("roc.png", "reliability.png", "coverage.png", "histograms_basic.png"):
    assert (out / name).stat().st_size > 5000, name
  assert summary["settings"]["quick"] and summary["settings"]["models"] == ["basic"]
  assert "SYNTHETIC" in summary["data"]["note"] and summary["data"]["letters_test"]["synthetic"]
  basic = summary["models"]["basic"]
  assert 0 <= basic["digits"]["accuracy"] <= 1
  assert basic["deterministic_digit_accuracy_full_test"] > 0.5  # 3 epochs on 1,137 digits
  letters = basic["detection"]["letters"]
  for score in (*SCORES, "deterministic_max_probability"):
    for metric in ("auroc", "aupr", "fpr_at_95_tpr"):
      assert 0 <= letters[score][metric] <= 1, (score, metric)
  for point in ("at_target_tpr", "at_probability_0.5"):
    stage = basic["reject_stage"][point]
    assert 0 <= stage["letters"]["decision_accuracy"] <= 1 and 0 <= stage["digits_accepted"] <= 1
  assert set(basic["per_class"]["digits"]) == {str(d) for d in range(10)}
  assert {"A", "Z"} <= set(basic["per_class"]["letters"])
  curve = basic["digits"]["coverage_curve"]
  assert curve["coverage"][-1] == 1 and len(curve["coverage"]) == len(curve["accuracy"])
  ens = basic["ensemble"]
  assert ens["members"] == 2 and ens["train_seconds"] > 0 and ens["predict_seconds"] > 0
  assert 0 <= ens["detection"]["letters"]["class_std"]["auroc"] <= 1
  assert len(basic["history"]["loss"]) == 3
  assert (out / "calibration_basic.png").stat().st_size > 5000
  assert summary["calibration_split"]["size"] == 100
  for source in ("test_digits", "heldout_training"):
    check_calibration(basic["calibration"][source], eval_size=200)
  capsys.readouterr()

  assert cli.main(["classify", *map(str, IMAGES), "--checkpoint", str(out), "--json"]) == 0
  rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [r["image"] for r in rows] == [str(p) for p in IMAGES]
  for r in rows:
    assert r["decision"] in ("accept", "reject") and 0 <= r["digit"] <= 9
    assert 0 <= r["p_not_a_digit"] <= 1 and r["samples"] == 20 and r["model"] == "basic"

  # Resume: the finished checkpoints carry on to a fourth epoch; the first three are kept.
  assert cli.main([*args, "--resume", "--epochs", "4"]) == 0
  again = json.loads((out / "summary.json").read_text())["models"]["basic"]
  assert len(again["history"]["loss"]) == 4
  assert again["history"]["loss"][:3] == basic["history"]["loss"]
  assert again["train_seconds_total"] > basic["train_seconds_total"]


def check_calibration(calib, *, eval_size, classes=10):
  """The temperature and conformal numbers of one model and calibration set make sense."""
  for kind in ("deterministic", "mc"):
    t = calib["temperature"][kind]
    assert t["temperature"] > 0
    cal = t["calibration"]
    assert cal["after"]["nll"] <= cal["before"]["nll"] + 1e-6  # T minimises the calibration NLL
    if kind == "deterministic":  # T > 0 keeps the argmax (not of an average over MC passes)
      assert cal["after"]["accuracy"] == cal["before"]["accuracy"]
    for split_name in ("calibration", "test_digits"):
      for when in ("before", "after"):
        q = t[split_name][when]
        assert q["nll"] > 0 and 0 <= q["ece"] <= 1 and 0 <= q["accuracy"] <= 1
  assert set(calib["conformal"]) == {"lac", "aps", "aps_randomized", "raps", "raps_randomized"}
  for method, by_alpha in calib["conformal"].items():
    assert set(by_alpha) == {"0.05", "0.01"}
    for r in by_alpha.values():
      d = r["digits"]
      assert 0 <= d["coverage"] <= 1 and 0 <= d["mean_size"] <= classes
      assert len(d["size_histogram"]) == classes + 1 and sum(d["size_histogram"]) == eval_size
      by_size = d["coverage_by_set_size"]
      assert len(by_size) == classes + 1
      for c, count in zip(by_size, d["size_histogram"], strict=True):
        assert (c is None) == (count == 0) and (c is None or 0 <= c <= 1)
      letters = r["letters"]
      assert 0 <= letters["fraction_empty"] <= 1 and 0 <= letters["mean_size"] <= classes
      assert sum(letters["size_histogram"]) == eval_size
      assert 0 <= letters["auroc_set_size"] <= 1 and 0 <= letters["auroc_not_singleton"] <= 1
      if method in ("aps", "raps"):  # not randomised (k_reg >= 1 for RAPS): never empty
        assert d["fraction_empty"] == 0 == letters["fraction_empty"]
    if not method.endswith("randomized"):  # a larger threshold: nested, larger sets
      assert by_alpha["0.01"]["threshold"] >= by_alpha["0.05"]["threshold"]
      assert by_alpha["0.01"]["digits"]["mean_size"] >= by_alpha["0.05"]["digits"]["mean_size"]


def test_calibration_figure_draws_reliability_and_set_sizes(tmp_path):
  from jaxuq import plot

  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(10), size=50).astype(np.float32)
  sizes = {"digits": rng.integers(0, 3, 50), "letters": rng.integers(0, 6, 40)}
  fig = plot.calibration_and_sets({"a": probs, "b": probs}, {"lac": sizes, "aps": sizes},
                                  rng.integers(0, 10, 50), path=tmp_path / "c.png")  # fmt: skip
  assert len(fig.axes) == 3 and (tmp_path / "c.png").stat().st_size > 5000
  top = int(sizes["letters"].max())
  assert len(fig.axes[1].patches) == 2 * (top + 1)  # one bar per size 0..top and data set


def test_an_eval_size_that_leaves_too_few_calibration_digits_is_refused(tmp_path):
  # --quick: scikit-learn's 360 test digits; 300 evaluated leave 60, fewer than alpha = 0.01 needs.
  with pytest.raises(ValueError, match="eval_size=300 leaves 60 test digits for calibration"):
    cli.main(["ood", "--quick", "--eval-size", "300", "--out", str(tmp_path), "--no-progress"])


def test_per_class_means_are_computed_on_the_host():
  # Indexing device arrays by each class's mask compiled 98 programs in a quick run.
  import jax.numpy as jnp  # noqa: PLC0415

  from jaxuq.experiments._ood_eval import per_class  # noqa: PLC0415
  from tests.test_metrics_api import count_compiles  # noqa: PLC0415

  scores = {"entropy": jnp.array([0.5, 1.5, 2.0, 4.0], jnp.float32)}
  extra = {"std": jnp.array([1.0, 2.0, 3.0, 5.0], jnp.float32)}
  labels = np.array([0, 1, 0, 1])
  with count_compiles() as compiles:
    got = per_class(scores, labels, ("zero", "one", "two"), extra)
  assert compiles == []
  assert got == {
    "zero": {"count": 2.0, "mean_entropy": 1.25, "mean_std": 2.0},
    "one": {"count": 2.0, "mean_entropy": 2.75, "mean_std": 3.5},
  }
