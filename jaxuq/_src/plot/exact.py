"""Figures of the exact experiment: an exact output distribution beside MC, and MC convergence."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxuq._src.plot.figure import finish, new_figure

Path = str | os.PathLike | None


def exact_histogram(rows: list[Mapping[str, Any]], *, samples: int | None = None,
                    title: str = "every possible output", path: Path = None) -> Any:  # fmt: skip
  """Bars of each possible output's exact probability, and its MC frequency (± 2 SE) if known.

  Args:
    rows: one per output: ``{'output', 'probability', 'kept'}`` and, with MC,
      ``'mc_frequency'`` and ``'standard_error'``.
    samples: the number of MC samples behind the frequencies, or None for exact only.
    title: the title.
    path: where to save the figure, or None.
  """
  rows = sorted(rows, key=lambda r: r["output"])
  pos = np.arange(len(rows))
  mc = samples is not None
  width = 0.4 if mc else 0.6
  fig, ax = new_figure((6, 3.6), who="jaxuq.plot.exact_histogram")
  ax.bar(pos - (width / 2 if mc else 0), [r["probability"] for r in rows], width, label="exact")
  if mc:
    ax.bar(
      pos + width / 2,
      [r["mc_frequency"] for r in rows],
      width,
      yerr=[2 * r["standard_error"] for r in rows],
      capsize=3,
      label=f"mc_sample, N={samples} (±2 SE)",
    )
  ax.set_xticks(pos, [f"{r['output']:.2f}\n({r['kept']})" for r in rows])
  ax.set_xlabel("output (units kept)")
  ax.set_ylabel("probability")
  ax.set_title(title)
  return finish(fig, path, dpi=90, legend=ax, legend_kwargs={"fontsize": 8})


def mc_convergence(data: Mapping[str, Any], *, path: Path = None) -> Any:
  """Relative RMS error of the MC mean and variance against the number of samples, log-log.

  Args:
    data: ``{'T': [...], 'repeats': int, 'networks': {name: {'rel_rmse_mean',
      'rel_rmse_variance', 'variance_constant'}}}``, one line per network, with
      the large-T theory ``1/sqrt(T)`` and ``sqrt(mu4/var^2 - 1)/sqrt(T)`` dashed.
    path: where to save the figure, or None.
  """
  t = np.asarray(data["T"], np.float64)
  fig, axes = new_figure((9, 3.6), who="jaxuq.plot.mc_convergence", ncols=2, sharex=True)
  for i, (name, net) in enumerate(data["networks"].items()):
    color = f"C{i}"
    axes[0].loglog(t, net["rel_rmse_mean"], "o", ms=4, color=color, label=name)
    axes[1].loglog(t, net["rel_rmse_variance"], "o", ms=4, color=color, label=name)
    axes[1].loglog(t, net["variance_constant"] / np.sqrt(t), "--", color=color, lw=1)
  axes[0].loglog(t, 1 / np.sqrt(t), "k--", lw=1, label=r"$1/\sqrt{T}$")
  axes[0].set_title("MC mean: RMS error / exact std")
  axes[1].set_title("MC variance: RMS error / exact variance")
  for ax in axes:
    ax.set_xlabel("MC samples T")
    ax.grid(True, which="major", alpha=0.3)
  axes[1].text(0.03, 0.05, r"dashed: $\sqrt{\mu_4/\sigma^4-1}\,/\sqrt{T}$",
               transform=axes[1].transAxes, fontsize=8)  # fmt: skip
  fig.suptitle(
    f"MC dropout converges to the exact moments ({data['repeats']} runs per T)", fontsize=10
  )
  return finish(fig, path, dpi=90, legend=axes[0], legend_kwargs={"fontsize": 8})
