"""The figure of ``jaxuq active``: test error against acquired images, one line per function."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxuq._src.plot.figure import finish, new_figure


def active_learning_curves(acquired: Any, test_error: Any, names: Sequence[str], *,
                           thresholds: Sequence[float] = (0.10, 0.05),
                           path: str | os.PathLike | None = None) -> Any:  # fmt: skip
  """Test error (%) against acquired images: each function's mean over repeats and their range.

  Args:
    acquired: ``(rounds,)`` images acquired before each evaluation.
    test_error: ``(rounds, functions, repeats)`` test error rates in [0, 1]
      (fractions, not percentages); NaN for the rounds a function has not run,
      so grids stopped at different rounds share one figure. A function's
      curve stops before its first round that some repeat has not run: later
      rounds are not drawn, so no line joins across a gap.
    names: one legend label per function.
    thresholds: error rates drawn as dashed lines (default 10 % and 5 %).
    path: where to save the figure, or None.

  Returns:
    The ``matplotlib.figure.Figure``.

  Raises:
    ValueError: ``test_error`` has another shape, a value outside [0, 1] (e.g.
      percentages) or infinite, or a function whose first round is incomplete.

  Examples:
    >>> import numpy as np, jaxuq.plot
    >>> error = np.linspace(0.5, 0.05, 6)[:, None, None] * np.ones((1, 2, 3))
    >>> fig = jaxuq.plot.active_learning_curves(np.arange(0, 60, 10), error, ["BALD", "random"])
    >>> len(fig.axes)
    1
  """
  rates = np.asarray(test_error, np.float64)
  error = 100.0 * rates
  x = np.asarray(acquired)
  if error.ndim != 3 or error.shape[0] != x.shape[0] or error.shape[1] != len(names):
    raise ValueError(
      f"test_error must have shape (rounds, functions, repeats) = ({x.shape[0]}, {len(names)}, "
      f"repeats), got {error.shape}"
    )
  _check_rates(rates)
  # (rounds, functions): all repeats ran this round and every earlier one.
  done = np.logical_and.accumulate(~np.isnan(error).any(axis=2), axis=0)
  if not done[0].all():
    missing = [names[int(f)] for f in np.flatnonzero(~done[0])]
    raise ValueError(
      f"test_error holds no complete round for {missing} before their first incomplete one: a "
      "curve runs over the first rounds that all its repeats ran (NaN marks rounds not run)"
    )
  fig, ax = new_figure((6.4, 4.2), who="jaxuq.plot.active_learning_curves")
  for f, name in enumerate(names):
    e, xs = error[done[:, f], f], x[done[:, f]]
    (line,) = ax.plot(xs, e.mean(axis=1), label=name, lw=1.6)
    if error.shape[2] > 1:
      ax.fill_between(xs, e.min(axis=1), e.max(axis=1), color=line.get_color(), alpha=0.15, lw=0)
  for threshold in thresholds:
    ax.axhline(100 * threshold, color="0.5", ls="--", lw=0.8)
  ax.set_xlabel("acquired images")
  ax.set_ylabel("test error (%)")
  ax.set_ylim(0, min(100.0, float(np.nanmax(error)) + 5))
  ax.grid(alpha=0.3)
  return finish(fig, path, dpi=120, legend=ax)


def _check_rates(rates: np.ndarray) -> None:
  """Raises unless every value that is not NaN is a rate in [0, 1]."""
  known = rates[~np.isnan(rates)]
  if known.size and not (known.min() >= 0 and known.max() <= 1):
    raise ValueError(
      f"test_error must hold error rates in [0, 1] (NaN for rounds not run), got values "
      f"{known.min():g}..{known.max():g}; pass fractions, e.g. test_error / 100 for percentages"
    )
