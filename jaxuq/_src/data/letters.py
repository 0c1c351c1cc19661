"""Synthetic letters A-Z / a-z rendered from fonts: the offline stand-in for EMNIST.

Each glyph is drawn white on black with Pillow at a large size, its strokes
thickened or thinned to a random thickness in MNIST's range, rotated and sheared by small random amounts, then normalised like
MNIST (fit in 20x20, centred by mass in 28x28; see ``mnist_like``). Random
settings are drawn with ``jax.random`` from one key, so a key fixes the set.
These are printed letters, not handwriting: results on them are not EMNIST
results, and every output that uses them must say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import jax
import numpy as np

from jaxuq._src.data.fonts import LETTERS
from jaxuq._src.data.mnist_like import to_mnist_like
from jaxuq._src.keys import check_key, check_positive_int

if TYPE_CHECKING:
  from PIL import Image, ImageFont

RENDER_SIZE = 64  # font size in pixels before shrinking to 20x20
# Stroke thickness as a fraction of the glyph's longer side, drawn uniformly in
# this range; chosen so that the strokes' thickness matches MNIST's (docs/cli.md, Data).
THICKNESS = (0.09, 0.17)
CANVAS = 160


class RenderedLetters(NamedTuple):
  """Font-rendered letters (synthetic).

  Attributes:
    images: uint8 ``(N, 28, 28)``, ink bright, MNIST-normalised.
    labels: int32 ``(N,)``, the letter's index 0..25 (``A``/``a`` -> 0), both
      cases of a letter sharing a label as in EMNIST letters.
    chars: ``(N,)`` str, the character drawn (``'A'`` or ``'a'``...).
    font_index: int32 ``(N,)``, index into ``fonts``.
    fonts: the font files used.
    params: float32 ``(N, 4)``: rotation (degrees), shear, target stroke
      thickness (fraction of the glyph's longer side; NaN if not set), and the
      pixels added (+) or eroded (-) per side at size 64.
  """

  images: np.ndarray
  labels: np.ndarray
  chars: np.ndarray
  font_index: np.ndarray
  fonts: tuple[str, ...]
  params: np.ndarray


def _affine_inverse(angle_deg: float, shear: float, center: float) -> tuple[float, ...]:
  """PIL AFFINE coefficients (output -> input) of rotation(angle) @ shear about ``center``."""
  t = math.radians(angle_deg)
  c, s = math.cos(t), math.sin(t)
  # forward: p' = R S (p - ctr) + ctr, with S = [[1, shear], [0, 1]], R = [[c, -s], [s, c]]
  a, b, d, e = c, c * shear - s, s, s * shear + c
  det = a * e - b * d
  ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
  return (ia, ib, center - ia * center - ib * center, id_, ie, center - id_ * center - ie * center)


def stroke_thickness(ink: np.ndarray) -> float:
  """Mean stroke thickness of a binary glyph in pixels: ``2 * area / boundary``.

  For a long stroke of width ``t`` the area is ``t * length`` and the boundary
  (ink pixels with a blank 4-neighbour) about ``2 * length``.

  Args:
    ink: a 2-D boolean array.

  Returns:
    the thickness, 0 for an empty glyph.
  """
  padded = np.pad(ink, 1)
  inner = (
    padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
  )
  border = int((ink & ~inner).sum())
  return 2.0 * float(ink.sum()) / border if border else 0.0


def _draw(font: ImageFont.FreeTypeFont, char: str, stroke: int) -> Image.Image:
  from PIL import Image, ImageDraw

  canvas = Image.new("L", (CANVAS, CANVAS), 0)
  ImageDraw.Draw(canvas).text(
    (CANVAS / 2, CANVAS / 2),
    char,
    fill=255,
    font=font,
    anchor="mm",
    stroke_width=stroke,
    stroke_fill=255,
  )
  return canvas


def render_glyph(
  font: ImageFont.FreeTypeFont,
  char: str,
  *,
  rotation: float = 0.0,
  shear: float = 0.0,
  thickness: float | None = None,
) -> tuple[np.ndarray, int]:
  """One character as an MNIST-like uint8 28x28 image.

  Args:
    font: a ``PIL.ImageFont.FreeTypeFont`` (e.g. ``ImageFont.truetype(path, 64)``).
    char: the character.
    rotation: degrees, counter-clockwise.
    shear: horizontal shear factor (x += shear * y, about the centre).
    thickness: the wanted stroke thickness as a fraction of the glyph's longer
      side (MNIST's strokes are ~0.1-0.17 of the 20-pixel box); the font's own
      strokes are thickened with a wider outline, or thinned by erosion (never
      below 3 pixels at the font's size). None keeps the font's strokes.

  Returns:
    ``(image, change)``: the ``(28, 28)`` uint8 image, and the pixels (at the
    font's size) added to (``> 0``) or removed from (``< 0``) each side of the strokes.
  """
  from PIL import Image, ImageFilter

  canvas = _draw(font, char, 0)
  change = 0
  if thickness is not None:
    ink = np.asarray(canvas) > 127
    if ink.any():
      rows, cols = np.nonzero(ink)
      side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
      own = stroke_thickness(ink)
      change = round((thickness * side - own) / 2)
      change = max(change, -math.floor(max(own - 3.0, 0.0) / 2))
  if change > 0:
    canvas = _draw(font, char, change)
  elif change < 0:
    canvas = canvas.filter(ImageFilter.MinFilter(2 * -change + 1))
  if rotation or shear:
    coeffs = _affine_inverse(rotation, shear, CANVAS / 2)
    canvas = canvas.transform(
      canvas.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )
  return to_mnist_like(np.asarray(canvas), threshold=8), change


def render_letters(
  key: jax.Array,
  fonts: Sequence[str | Path],
  *,
  letters: str = LETTERS,
  variants: int = 1,
  max_rotation: float = 12.0,
  max_shear: float = 0.25,
  thickness: tuple[float, float] | None = THICKNESS,
) -> RenderedLetters:
  """Renders every letter in every font ``variants`` times with random distortions.

  For each glyph, rotation ~ U(-max_rotation, max_rotation) degrees, shear ~
  U(-max_shear, max_shear) and the stroke thickness, as a fraction of the
  glyph's longer side, ~ ``U(*thickness)``, all drawn from ``key``. The default
  thickness range makes the strokes' distribution close to MNIST's, so that
  letters cannot be told from digits by ink weight alone.

  Args:
    key: a typed PRNG key.
    fonts: font files (``.ttf``/``.otf``), e.g. from ``find_fonts``.
    letters: the characters to draw, letters only (default A-Z then a-z).
    variants: renderings per (font, letter).
    max_rotation: degrees, ``>= 0``.
    max_shear: ``>= 0``.
    thickness: ``(low, high)`` with ``0 < low <= high < 1``, or None to keep
      each font's own strokes.

  Returns:
    :class:`RenderedLetters`, ordered by variant, font, then letter.

  Raises:
    ValueError: no fonts, a non-letter, or a setting out of range.
  """
  from PIL import ImageFont

  check_key(key)
  variants = check_positive_int(variants, "variants")
  if not fonts:
    raise ValueError("fonts must name at least one font file, got none (see find_fonts)")
  if not letters or not all(c.isascii() and c.isalpha() for c in letters):
    raise ValueError(f"letters must be ASCII letters, got {letters!r}")
  for name, value in (("max_rotation", max_rotation), ("max_shear", max_shear)):
    if not value >= 0:
      raise ValueError(f"{name} must be >= 0, got {value!r}")
  if thickness is not None and not (len(thickness) == 2 and 0 < thickness[0] <= thickness[1] < 1):
    raise ValueError(
      f"thickness must be (low, high) with 0 < low <= high < 1, or None, got {thickness!r}"
    )
  loaded = [ImageFont.truetype(str(f), RENDER_SIZE) for f in fonts]
  n = variants * len(loaded) * len(letters)
  k_rot, k_shear, k_thick = jax.random.split(key, 3)
  rotation = np.asarray(jax.random.uniform(k_rot, (n,), minval=-max_rotation, maxval=max_rotation))
  shear = np.asarray(jax.random.uniform(k_shear, (n,), minval=-max_shear, maxval=max_shear))
  low, high = thickness if thickness is not None else (np.nan, np.nan)
  target = np.asarray(jax.random.uniform(k_thick, (n,), minval=low, maxval=high))
  images = np.empty((n, 28, 28), dtype=np.uint8)
  chars = np.empty(n, dtype="<U1")
  font_index = np.empty(n, dtype=np.int32)
  change = np.zeros(n, dtype=np.float32)
  i = 0
  for _ in range(variants):
    for j, font in enumerate(loaded):
      for char in letters:
        images[i], change[i] = render_glyph(
          font,
          char,
          rotation=float(rotation[i]),
          shear=float(shear[i]),
          thickness=None if thickness is None else float(target[i]),
        )
        chars[i], font_index[i] = char, j
        i += 1
  labels = np.asarray([ord(c.upper()) - ord("A") for c in chars], dtype=np.int32)
  params = np.stack([rotation, shear, target, change], axis=1).astype(np.float32)
  return RenderedLetters(images, labels, chars, font_index, tuple(str(f) for f in fonts), params)
