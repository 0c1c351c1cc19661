"""Draws the test images for ``jaxuq classify``: dark ink on white RGB paper, like a phone sketch.

- ``digit_3.png``: a hand-style 3 (two arcs), ``digit_7.png``: a 7 with a bar,
- ``not_a_digit_face.png``: a cartoon face (the seed's cartoon test),
- ``not_a_digit_glyph.png``: a square-ish, character-like glyph (stands for the seed's Chinese character).

Run: ``python examples/images/draw.py`` (rewrites the PNGs beside this file).
"""

import pathlib

from PIL import Image, ImageDraw

HERE = pathlib.Path(__file__).resolve().parent
SIZE, INK, WIDTH = 140, (20, 30, 60), 11


def canvas():
  im = Image.new("RGB", (SIZE, SIZE), (250, 248, 240))
  return im, ImageDraw.Draw(im)


def digit_3():
  im, d = canvas()
  d.arc((38, 18, 100, 72), start=-160, end=90, fill=INK, width=WIDTH)
  d.arc((34, 62, 104, 124), start=-90, end=150, fill=INK, width=WIDTH)
  return im


def digit_7():
  im, d = canvas()
  d.line([(36, 26), (104, 26), (62, 122)], fill=INK, width=WIDTH, joint="curve")
  return im


def face():
  im, d = canvas()
  d.ellipse((14, 14, 126, 126), outline=INK, width=7)
  d.ellipse((42, 44, 58, 60), fill=INK)
  d.ellipse((82, 44, 98, 60), fill=INK)
  d.arc((38, 56, 102, 106), start=20, end=160, fill=INK, width=7)
  return im


def glyph():
  im, d = canvas()
  d.line([(20, 40), (120, 40)], fill=INK, width=9)
  d.line([(70, 14), (70, 128)], fill=INK, width=9)
  d.line([(70, 44), (24, 110)], fill=INK, width=9)
  d.line([(70, 44), (118, 110)], fill=INK, width=9)
  d.line([(36, 84), (104, 84)], fill=INK, width=9)
  return im


if __name__ == "__main__":
  for name, draw in [
    ("digit_3", digit_3), ("digit_7", digit_7), ("not_a_digit_face", face),
    ("not_a_digit_glyph", glyph),
  ]:  # fmt: skip
    draw().save(HERE / f"{name}.png", optimize=True)
