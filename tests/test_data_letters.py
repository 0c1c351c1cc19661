"""Font-rendered letters and MNIST's normalisation: shapes, ranges, centre of mass."""

import jax
import numpy as np
import pytest

from jaxuq._src.data.fonts import matplotlib_font_dir
from jaxuq.data import center_of_mass, find_fonts, load_dataset, render_letters, to_mnist_like

pytest.importorskip("PIL")
pytest.importorskip("fontTools")


@pytest.fixture(scope="module")
def mpl_fonts():
  fonts = find_fonts(None, system=False)["matplotlib"]
  assert len(fonts) >= 10  # DejaVu, Computer Modern and STIX faces ship with matplotlib
  return fonts


def _bbox(image):
  ink = np.argwhere(image > 0)
  return ink.max(0) - ink.min(0) + 1


def test_to_mnist_like_fits_20_and_centres_by_mass():
  image = np.zeros((100, 60), np.uint8)
  image[10:90, 5:25] = 200  # an 80 x 20 bar, off centre
  out = to_mnist_like(image)
  assert out.shape == (28, 28) and out.dtype == np.uint8
  assert max(_bbox(out)) == 20 and _bbox(out)[1] == 5  # aspect ratio 4:1 kept
  cy, cx = center_of_mass(out)
  assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
  np.testing.assert_array_equal(to_mnist_like(image.astype(np.float32) / 255), out)


def test_to_mnist_like_refuses_empty_and_bad_shapes():
  with pytest.raises(ValueError, match="no ink"):
    to_mnist_like(np.zeros((10, 10), np.uint8))
  with pytest.raises(ValueError, match="2-D"):
    to_mnist_like(np.ones((2, 10, 10), np.uint8))


def test_rendered_letters_shapes_ranges_and_mass(mpl_fonts):
  fonts = mpl_fonts[:4]
  out = render_letters(jax.random.key(0), fonts, letters="AgZ", variants=2)
  n = 2 * len(fonts) * 3
  assert out.images.shape == (n, 28, 28) and out.images.dtype == np.uint8
  assert out.labels.dtype == np.int32 and sorted(set(out.labels.tolist())) == [0, 6, 25]
  assert list(out.chars[:3]) == ["A", "g", "Z"]
  assert out.params.shape == (n, 3)
  assert np.all(np.abs(out.params[:, 0]) <= 12) and np.all(np.abs(out.params[:, 1]) <= 0.25)
  assert set(out.params[:, 2].tolist()) <= {0.0, 1.0, 2.0}
  for image in out.images:
    assert image.max() > 200  # solid ink, like MNIST strokes
    assert max(_bbox(image)) == 20  # fit in 20x20
    cy, cx = center_of_mass(image)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_rendering_is_keyed(mpl_fonts):
  fonts = mpl_fonts[:2]
  a = render_letters(jax.random.key(1), fonts, letters="Rk")
  b = render_letters(jax.random.key(1), fonts, letters="Rk")
  c = render_letters(jax.random.key(2), fonts, letters="Rk")
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, c.images)


def test_render_letters_bad_arguments(mpl_fonts):
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="at least one font"):
    render_letters(key, [])
  with pytest.raises(ValueError, match="ASCII letters"):
    render_letters(key, mpl_fonts[:1], letters="A1")
  with pytest.raises(ValueError, match="max_shear"):
    render_letters(key, mpl_fonts[:1], max_shear=-0.1)
  with pytest.raises(TypeError, match="typed PRNG key"):
    render_letters(0, mpl_fonts[:1])


def test_font_letters_dataset_is_labelled_synthetic(tmp_path):
  ds = load_dataset(
    "letters", "test", data_dir=tmp_path, source="fonts", system_fonts=False, max_fonts=2
  )
  assert ds.synthetic and ds.source.startswith("SYNTHETIC") and "not EMNIST" in ds.source
  assert ds.images.shape == (104, 28, 28, 1) and ds.images.dtype == np.float32
  assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
  assert ds.labels.dtype == np.int32 and ds.labels.min() == 0 and ds.labels.max() == 25
  # The second load reads the cache written by the first, bit for bit.
  again = load_dataset(
    "letters", "test", data_dir=tmp_path, source="fonts", system_fonts=False, max_fonts=2
  )
  assert "cached" in again.source
  np.testing.assert_array_equal(again.images, ds.images)
  train = load_dataset(
    "letters", "train", data_dir=tmp_path, source="fonts", system_fonts=False, max_fonts=2
  )
  assert not np.array_equal(train.images, ds.images)  # another key per split


def test_matplotlib_fonts_found_without_importing_matplotlib():
  assert matplotlib_font_dir() is not None
