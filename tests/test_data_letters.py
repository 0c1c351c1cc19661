"""Font-rendered letters and MNIST's normalisation: shapes, ranges, centre of mass."""

import re

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxuq._src.data import fonts
from jaxuq._src.data.fonts import matplotlib_font_dir
from jaxuq._src.data.letters import stroke_thickness
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
  assert out.params.shape == (n, 4)
  assert np.all(np.abs(out.params[:, 0]) <= 12) and np.all(np.abs(out.params[:, 1]) <= 0.25)
  assert np.all((0.09 <= out.params[:, 2]) & (out.params[:, 2] <= 0.17))
  assert np.all(out.params[:, 3] == np.round(out.params[:, 3]))  # whole pixels grown or eroded
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
  with pytest.raises(ValueError, match="thickness must be"):
    render_letters(key, mpl_fonts[:1], thickness=(0.2, 0.1))
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


def test_covers_letters_remembers_a_font_until_the_file_changes(tmp_path):
  font = tmp_path / "f.ttf"
  font.write_bytes((matplotlib_font_dir() / "DejaVuSans.ttf").read_bytes())
  before = fonts._covers_letters.cache_info()
  assert fonts.covers_letters(font) and fonts.covers_letters(font)
  after = fonts._covers_letters.cache_info()
  assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
  font.write_bytes(b"not a font")  # another size: read again, now refused
  assert not fonts.covers_letters(font)
  font.unlink()
  assert not fonts.covers_letters(font)


@settings(max_examples=40, deadline=None)
@given(
  h=st.integers(1, 90),
  w=st.integers(1, 90),
  top=st.integers(0, 20),
  left=st.integers(0, 20),
  value=st.integers(1, 255),
)
def test_to_mnist_like_on_solid_rectangles(h, w, top, left, value):
  image = np.zeros((h + top + 5, w + left + 5), np.uint8)
  image[top : top + h, left : left + w] = value
  out = to_mnist_like(image)
  scale = 20 / max(h, w)
  expected = (max(1, round(h * scale)), max(1, round(w * scale)))
  assert tuple(_bbox(out)) == expected  # fit in 20x20, aspect ratio kept
  cy, cx = center_of_mass(out)  # a symmetric block is centred on (14, 14) to half a pixel
  assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


@pytest.mark.parametrize("width", [3, 6, 10])
def test_stroke_thickness_of_a_long_bar(width):
  bar = np.zeros((width + 4, 404), bool)
  bar[2 : 2 + width, 2:402] = True
  assert abs(stroke_thickness(bar) - width) <= 0.05 * width + 0.2


def test_strokes_are_brought_into_the_asked_range(mpl_fonts):
  # A thin and a thick target on the same glyphs: the thick one has more ink.
  fonts = mpl_fonts[:3]
  thin = render_letters(jax.random.key(0), fonts, letters="HnO", thickness=(0.08, 0.08))
  thick = render_letters(jax.random.key(0), fonts, letters="HnO", thickness=(0.18, 0.18))
  assert np.all(thick.images.sum((1, 2)) > thin.images.sum((1, 2)))
  own = render_letters(jax.random.key(0), fonts, letters="HnO", thickness=None)
  assert np.all(own.params[:, 3] == 0) and np.all(np.isnan(own.params[:, 2]))


def test_integer_images_outside_0_255_are_refused_and_bool_is_full_ink():
  from jaxuq.data import drawing_to_mnist_like

  image = np.zeros((50, 50), np.int64)
  image[10:30, 10:20] = 1000  # would wrap (1000 % 256 = 232) or be clipped
  for f in (to_mnist_like, drawing_to_mnist_like):
    with pytest.raises(ValueError, match=r"integers in 0\.\.255, got values 0\.\.1000 \(int64\)"):
      f(image)
    with pytest.raises(ValueError, match=r"got values -1\.\.-1 \(int16\)"):
      f(-np.ones((5, 5), np.int16))
  mask = image > 0
  full = to_mnist_like(mask.astype(np.uint8) * 255)
  np.testing.assert_array_equal(to_mnist_like(mask), full)  # True is ink 255, not 1
  assert full.max() == 255
  np.testing.assert_array_equal(drawing_to_mnist_like(mask), drawing_to_mnist_like(mask * 255))


def test_an_invalid_letters_cache_is_rendered_again(tmp_path):
  from jaxuq._src.data import synthetic

  first = synthetic.load_font_letters("test", tmp_path, system_fonts=False, max_fonts=1)
  (cache,) = (tmp_path / "letters").glob("*.npz")
  good = cache.read_bytes()
  cache.write_bytes(good[: len(good) // 2])  # truncated: not a zip file any more
  with pytest.warns(
    UserWarning, match=rf"letters cache {re.escape(str(cache))} is invalid: it cannot be read"
  ):
    again = synthetic.load_font_letters("test", tmp_path, system_fonts=False, max_fonts=1)
  np.testing.assert_array_equal(again[0], first[0])
  np.testing.assert_array_equal(again[1], first[1])
  assert "cached" not in again[2]
  assert (
    "cached" in synthetic.load_font_letters("test", tmp_path, system_fonts=False, max_fonts=1)[2]
  )
  with np.load(cache) as stored:  # overwritten with the new rendering
    bad = {k: stored[k] for k in stored.files}
  bad["labels"] = np.where(np.arange(52) == 3, 99, bad["labels"])  # a label outside 0..25
  np.savez(cache, **bad)
  with pytest.warns(UserWarning, match="labels must be the index 0..25 of each letter"):
    images, labels, _ = synthetic.load_font_letters(
      "test", tmp_path, system_fonts=False, max_fonts=1
    )
  np.testing.assert_array_equal(labels, first[1])
  np.savez(cache, images=bad["images"][:3], labels=bad["labels"][:3], chars=bad["chars"][:3])
  with pytest.warns(
    UserWarning, match=r"images must be uint8 \(52, 28, 28\), got uint8 \(3, 28, 28\)"
  ):
    synthetic.load_font_letters("test", tmp_path, system_fonts=False, max_fonts=1)
