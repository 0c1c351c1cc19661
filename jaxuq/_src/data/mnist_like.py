"""MNIST's normalisation: fit the ink in 20x20, centre it by mass in 28x28.

LeCun et al. size-normalised each digit to fit a 20x20 box preserving its
aspect ratio (anti-aliasing gives grey levels), then placed it in a 28x28 field
so that its centre of mass sits at the centre. The same steps turn font glyphs,
scikit-learn's 8x8 digits and users' drawings into MNIST-like inputs.

References:
  Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
  digits" (the dataset's description page).
"""

from __future__ import annotations

import numpy as np

SIZE = 28
BOX = 20


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
  """The intensity-weighted mean (row, column) of a 2-D image.

  Args:
    image: a 2-D array of non-negative intensities, not all zero.

  Returns:
    ``(row, col)`` in pixel-index coordinates (the first pixel's centre is 0).

  Raises:
    ValueError: the image is not 2-D or has no ink.
  """
  image = np.asarray(image, dtype=np.float64)
  if image.ndim != 2:
    raise ValueError(f"image must be 2-D, got shape {image.shape}")
  total = image.sum()
  if not total > 0:
    raise ValueError("image has no ink (all pixels are zero): no centre of mass")
  rows = np.arange(image.shape[0], dtype=np.float64)
  cols = np.arange(image.shape[1], dtype=np.float64)
  return float(rows @ image.sum(1) / total), float(cols @ image.sum(0) / total)


def check_grey_levels(image: np.ndarray, name: str) -> np.ndarray:
  """``image`` with bool mapped to 0/255 uint8; integers must lie in 0..255.

  Raises:
    ValueError: integer values outside 0..255 (they would wrap or be clipped).
  """
  if image.dtype == np.bool_:
    return image.astype(np.uint8) * np.uint8(255)
  if (
    np.issubdtype(image.dtype, np.integer) and image.size and (image.min() < 0 or image.max() > 255)
  ):
    raise ValueError(
      f"{name} must hold integers in 0..255, got values {image.min()}..{image.max()} "
      f"({image.dtype}); scale it to 0..255 (e.g. image * 255 // image.max()) or pass floats in [0, 1]"
    )
  return image


def to_mnist_like(image: np.ndarray, *, threshold: float = 0.0) -> np.ndarray:
  """Normalises a grey image (ink bright on black) the way MNIST was made.

  Crops to the ink's bounding box, resizes it (Lanczos, aspect ratio kept) so
  that its longer side is 20 pixels, and pastes it into a black 28x28 image so
  that its centre of mass lands on pixel (14, 14), as in MNIST (shifted by
  whole pixels; the shift is reduced if it would push ink off the image).

  Args:
    image: a 2-D array, integers in 0..255 (uint8 or any integer type), float
      in [0, 1], or bool (True is ink, drawn as 255), with the ink bright.
      (For dark ink on white, pass ``255 - image`` or ``1 - image``.) An
      integer 0/1 mask is read on the 0..255 scale (nearly black): pass it as
      bool, or multiply it by 255.
    threshold: pixels at or below this value (in the image's own scale) are
      background when finding the bounding box.

  Returns:
    a ``(28, 28)`` uint8 image.

  Raises:
    ValueError: the image is not 2-D, is integer with values outside 0..255,
      or has no pixel above ``threshold``.
  """
  from PIL import Image

  image = check_grey_levels(np.asarray(image), "image")
  if image.ndim != 2:
    raise ValueError(f"image must be 2-D (height, width), got shape {image.shape}")
  if np.issubdtype(image.dtype, np.floating):
    scaled = np.clip(image, 0.0, 1.0) * 255.0
    threshold = threshold * 255.0
  else:
    scaled = image.astype(np.float64)
  ink = np.argwhere(scaled > threshold)
  if ink.size == 0:
    raise ValueError(f"image has no ink: no pixel above threshold={threshold!r}")
  (r0, c0), (r1, c1) = ink.min(0), ink.max(0) + 1
  crop = np.clip(np.rint(scaled[r0:r1, c0:c1]), 0, 255).astype(np.uint8)
  h, w = crop.shape
  scale = BOX / max(h, w)
  new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
  glyph = Image.fromarray(crop, mode="L").resize((new_w, new_h), Image.Resampling.LANCZOS)
  box = np.asarray(glyph, dtype=np.uint8)
  if not box.any():  # a faint speck can vanish when shrunk: keep its brightest pixel
    box = np.zeros_like(box)
    box[new_h // 2, new_w // 2] = crop.max()
  cy, cx = center_of_mass(box)
  top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - new_h))
  left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - new_w))
  out = np.zeros((SIZE, SIZE), dtype=np.uint8)
  out[top : top + new_h, left : left + new_w] = box
  return out


def to_float_images(images: np.ndarray) -> np.ndarray:
  """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 28, 28, 1)`` in [0, 1] (divided by 255)."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise TypeError(f"images must be uint8 in 0..255, got dtype {images.dtype}")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 1), got {images.shape}")
  return images.astype(np.float32) / np.float32(255.0)
