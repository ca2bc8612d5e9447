"""Figures of a sweep, drawn with matplotlib from summary.csv rows.

Contract: `scaling_figure(summary, experiment, title, fit, theory_slope, theory_label, path)` draws
the mean gap against d on log-log axes with 95% error bars, the fitted line
with its slope interval, a reference slope of -1/2, the theory curve where one
is known, and the theory's predicted slope; it writes a PNG atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxfrag.stats import Fit  # noqa: E402
from jaxfrag.store import atomic_path  # noqa: E402


def scaling_figure(
    summary: pd.DataFrame, experiment: str, title: str, fit: Fit, theory_slope: float, theory_label: str, path: Path
) -> None:
    cells = summary[summary["experiment"] == experiment].sort_values("d")
    d = cells["d"].to_numpy(float)
    mean = cells["gap_mean"].to_numpy(float)
    half = 1.96 * cells["gap_se"].fillna(0).to_numpy(float)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.errorbar(d, mean, yerr=half, fmt="o", ms=3.5, capsize=2, label="measured mean (95% CI)")
    grid = np.geomspace(d.min(), d.max(), 100) if len(d) else np.array([])
    if np.isfinite(fit.slope):
        ax.plot(
            grid,
            np.exp(fit.intercept) * grid**fit.slope,
            "-",
            label=f"fit: slope {fit.slope:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]",
        )
    if "gap_theory" in cells and cells["gap_theory"].notna().any():
        ax.plot(d, cells["gap_theory"], "k--", lw=1, label=f"{theory_label} (slope {theory_slope:g} as d grows)")
    if len(d):
        anchor = np.sqrt(d.min() * d.max())
        level = np.exp(np.interp(np.log(anchor), np.log(d), np.log(mean)))
        ax.plot(grid, level * (grid / anchor) ** -0.5, ":", color="gray", label="reference slope -1/2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input dimension d")
    ax.set_ylabel("gap = NN robustness / optimal robustness")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=120)
    plt.close(fig)
