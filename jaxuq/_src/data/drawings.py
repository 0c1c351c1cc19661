"""Users' drawings (any PNG/JPEG, RGB or grey, dark ink on light paper or the reverse) -> MNIST-like."""

from __future__ import annotations

import os

import numpy as np

from jaxuq._src.data.mnist_like import check_grey_levels, to_mnist_like


def drawing_to_mnist_like(
  image: str | os.PathLike | np.ndarray, *, invert: bool | None = None, threshold: float = 0.1
) -> np.ndarray:
  """Turns a drawing into a 28x28 MNIST-like input: grey, inverted, resized, centred.

  Colour is converted to grey (ITU-R 601 luma; transparent pixels count as
  white paper), scaled to [0, 1], inverted (``1 - grey``, as in the seed) when
  the drawing is dark ink on a light background, then normalised by
  :func:`to_mnist_like` (ink fit in 20x20, centred by mass in 28x28).

  Args:
    image: a file path, or an array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``,
      integers in 0..255, float in [0, 1], or bool (True drawn as 255, white).
    invert: True for dark ink on light paper, False for light ink on dark;
      None decides from the border (light border: invert).
    threshold: ink level (after inversion, in [0, 1]) below which a pixel is
      background when cropping; it removes paper texture and scanner noise.

  Returns:
    ``(28, 28)`` uint8, ink bright.

  Raises:
    ValueError: an array of another shape, integers outside 0..255, or no ink
      above ``threshold``.
  """
  from PIL import Image

  if isinstance(image, (str, os.PathLike)):
    with Image.open(image) as im:
      rgba = im.convert("RGBA")
  else:
    a = check_grey_levels(np.asarray(image), "image")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
      raise ValueError(f"image must have shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
      a = np.clip(np.rint(np.clip(a, 0.0, 1.0) * 255.0), 0, 255)
    a = a.astype(np.uint8)
    rgba = Image.fromarray(a).convert("RGBA")
  paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
  grey = np.asarray(Image.alpha_composite(paper, rgba).convert("L"), np.float64) / 255.0
  if invert is None:
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    invert = bool(np.median(border) > 0.5)
  ink = 1.0 - grey if invert else grey
  return to_mnist_like(np.where(ink > threshold, ink, 0.0), threshold=0.0)
