"""Argument types shared by the subcommands: argparse refuses a bad number, naming the option.

An ``argparse`` type that raises ``ArgumentTypeError`` makes the parser exit
with ``jaxuq CMD: error: argument --width: must be a positive int, got 0``
before the subcommand does any work.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _int(text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None


def _float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
  return value


def int_at_least(low: int, why: str = "") -> Callable[[str], int]:
  """An argparse type: an int ``>= low``."""

  def parse(text: str) -> int:
    value = _int(text)
    if value < low:
      kind = {1: "a positive int", 0: "a non-negative int"}.get(low, f"an int >= {low}")
      raise argparse.ArgumentTypeError(f"must be {kind}{why}, got {value}")
    return value

  parse.__name__ = f"int_at_least_{low}"
  return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def seed(text: str) -> int:
  """An argparse type: an integer seed, ``0 <= seed < 2**63`` (what ``jax.random.key`` takes)."""
  value = non_negative_int(text)
  if value >= 2**63:
    raise argparse.ArgumentTypeError(f"must be an int in [0, 2**63), got {value}")
  return value


def rate(text: str) -> float:
  """An argparse type: an MC dropout rate in (0, 1) (at 0 every pass would be the same)."""
  value = _float(text)
  if not 0.0 < value < 1.0:
    raise argparse.ArgumentTypeError(
      f"must be in (0, 1) (the probability to drop a unit; at 0 every MC pass is the same), "
      f"got {value:g}"
    )
  return value


def positive_float(text: str) -> float:
  """An argparse type: a finite number > 0."""
  value = _float(text)
  if value <= 0.0:
    raise argparse.ArgumentTypeError(f"must be a positive number, got {value:g}")
  return value


def non_negative_float(text: str) -> float:
  """An argparse type: a finite number >= 0."""
  value = _float(text)
  if value < 0.0:
    raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value:g}")
  return value
