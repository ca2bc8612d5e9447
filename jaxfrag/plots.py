"""Figures that several reports and experiments share, drawn with matplotlib from summary.csv rows.

Contract: `scaling_figure(summary, experiment, title, fit, theory_slope, theory_label, path)` draws
the mean gap against d on log-log axes with 95% error bars, the fitted line
with its slope interval, a reference slope of -1/2, the theory curve where one
is known, and the theory's predicted slope; it writes a PNG atomically.
`figure2` and `table1_figure` are the paper's section 6 views (linear experiment);
`table3_rho` and `table4_scatter` those of its nonlinear networks (relu); `save` writes any
figure atomically. A figure only one report draws lives in that report (`jaxfrag.reports`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# matplotlib's object API (Figure, not pyplot): files only, and importing this
# module never changes the backend of a notebook that imports jaxfrag.
from matplotlib.figure import Figure

from jaxfrag import rmt
from jaxfrag.stats import Fit, t_half_width
from jaxfrag.store import atomic_path


def scaling_figure(
    summary: pd.DataFrame, experiment: str, title: str, fit: Fit, theory_slope: float, theory_label: str, path: Path
) -> None:
    cells = summary[summary["experiment"] == experiment].sort_values("d")
    d = cells["d"].to_numpy(float)
    mean = cells["gap_mean"].to_numpy(float)
    half = np.nan_to_num(t_half_width(cells["gap_se"].to_numpy(float), cells["n"].to_numpy(float)))
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
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
    save(fig, path)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=120)


def figure2(cells: pd.DataFrame, path: Path) -> None:
    """The paper's Figure 2 (mean phi and mean |cos theta1| against d) and the selection effect of success.

    `cells` are the linear experiment's summary.csv rows. Left: over successful runs (the paper's
    conditioning) with 95% intervals and the closed-form E[phi]. Right: phi unconditioned against phi
    on successes, with the success fraction.
    """
    d = cells["d"].to_numpy(float)
    grid = np.arange(int(d.min()), int(d.max()) + 1)
    fig = Figure(figsize=(11, 4.3))
    left, right = fig.subplots(1, 2)

    def series(ax, prefix, name, label, **style):
        mean, se = cells[f"{prefix}_{name}_mean"].to_numpy(float), cells[f"{prefix}_{name}_se"].to_numpy(float)
        ax.errorbar(d, mean, yerr=1.96 * np.nan_to_num(se), capsize=2, ms=4, label=label, **style)

    series(left, "success", "abs_cos_theta1", "mean |cos theta1| (trained nets)", fmt="o-")
    series(left, "success", "phi", "mean phi (QR of A)", fmt="s--")
    left.plot(grid, rmt.phi_mean(grid), "k:", lw=1, label="E[phi], closed form")
    left.set_title("Figure 2: successful runs (train acc 1), 95% CI")
    series(right, "all", "phi", "mean phi, all runs", fmt="o-")
    series(right, "success", "phi", "mean phi, successful runs", fmt="s--")
    right.plot(grid, rmt.phi_mean(grid), "k:", lw=1, label="E[phi], closed form")
    twin = right.twinx()
    twin.plot(d, cells["success_fraction"], "^", color="gray", ms=4, label="success fraction (right axis)")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("success fraction")
    right.set_title("conditioning on success selects larger phi")
    for ax in (left, right):
        ax.set_xlabel("input dimension d")
        ax.grid(True, alpha=0.3)
    left.set_ylabel("compression ratio")
    left.legend(fontsize=8)
    lines, labels = right.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    right.legend(lines + more, labels + more_labels, fontsize=8)
    save(fig, path)


def table1_figure(ours: pd.DataFrame, paper: dict[str, list[float]], d: int, path: Path) -> None:
    """The paper's Table 1 layout: ours (first successful runs at d) above the paper's."""
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(2, 1)
    tables = [
        (ours, f"jaxfrag: the first {len(ours.columns)} runs with training accuracy 1, d = {d}"),
        (
            pd.DataFrame(paper, index=[f"exp {i + 1}" for i in range(len(paper["phi"]))]).T.set_axis(
                ["cos(theta1)", "cos(theta2)", "phi"]
            ),
            f"the paper's Table 1, d = {d}",
        ),
    ]
    for ax, (table, title) in zip(axes, tables, strict=True):
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        if len(table.columns):
            cells = [[f"{v:.4f}" for v in row] for row in table.to_numpy()]
            drawn = ax.table(cellText=cells, rowLabels=list(table.index), colLabels=list(table.columns), loc="center")
            drawn.auto_set_font_size(False)
            drawn.set_fontsize(8)
    save(fig, path)


def table3_rho(cells: pd.DataFrame, alphas: int, paper: dict[int, dict], path: Path) -> None:
    """The paper's Table 3 as a figure: rho against alpha per d (relu experiment's summary.csv rows).

    Mean over accurate networks with its 95% interval, the median with its order-statistic 95%
    interval (shaded), the paper's means and medians
    (where the paper has that d) and the mean rho of a uniformly random gradient direction.
    """
    alpha = np.arange(alphas) / (alphas - 1)
    fig = Figure(figsize=(7, 4.6))
    ax = fig.subplots()
    for _, c in cells.iterrows():
        d = int(c["d"])
        mean = np.array([c[f"table3_rho_{k}_mean"] for k in range(alphas)], float)
        se = np.array([c[f"table3_rho_{k}_se"] for k in range(alphas)], float)
        median = np.array([c[f"table3_rho_{k}_median"] for k in range(alphas)], float)
        drawn = ax.errorbar(
            alpha, mean, yerr=1.96 * np.nan_to_num(se), fmt="o-", ms=4, capsize=2,
            label=f"d = {d}: mean, 95% CI ({int(c['accurate'])} accurate nets)",
        )  # fmt: skip
        color = drawn[0].get_color()
        ax.plot(alpha, median, "s:", ms=3, color=color, label=f"d = {d}: median")
        low, high = ([c[f"table3_rho_{k}_median_{end}"] for k in range(alphas)] for end in ("low", "high"))
        ax.fill_between(alpha, low, high, color=color, alpha=0.12, label=f"d = {d}: median, 95% CI")
        ax.axhline(c["rho_random_mean"], color=color, ls="--", lw=1, label=f"d = {d}: random direction, mean")
        if d in paper:
            ax.plot(alpha, paper[d]["mean"], "kx", ms=6, label=f"paper, d = {d}: mean")
            ax.plot(alpha, paper[d]["median"], "k+", ms=7, label=f"paper, d = {d}: median")
    ax.set_xlabel("alpha  (x = alpha b1 + (1 - alpha) b2)")
    ax.set_ylabel("rho = |cos(grad(f1 - f2), x1 - x2)|")
    ax.set_title("Table 3: compression rate rho of trained ReLU networks")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path)


def table4_scatter(rows: pd.DataFrame, inputs: tuple[str, ...], paper: dict[int, dict], path: Path) -> None:
    """Table 4's claim |cos theta_t| ~ delta/m, one point per accurate network and input (relu rows)."""
    fig = Figure(figsize=(5.6, 5.2))
    ax = fig.subplots()
    top = 0.0
    for b, marker in zip(inputs, "o^", strict=False):
        hit = rows[rows[f"flips_{b}"].astype(bool)]
        x, y = hit[f"cos_theta_t_{b}"].abs().to_numpy(float), (hit[f"delta_{b}"] / hit["m"]).to_numpy(float)
        ax.plot(x, y, marker, ms=3, alpha=0.5, label=f"{b} ({len(hit)} networks)")
        top = max(top, float(np.max(x, initial=0)), float(np.max(y, initial=0)))
    for d, values in paper.items():
        for b in inputs:
            ax.plot(abs(values[b]["cos_theta_t"]), values[b]["ratio"], "k*", ms=9)
        ax.plot([], [], "k*", label=f"the paper, d = {d} (means)")
    top = 1.05 * max(top, 0.2)
    ax.plot([0, top], [0, top], "k--", lw=1, label="delta/m = |cos theta_t|")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("|cos theta_t|  (grad(f1 - f2) at b + delta vs a_d)")
    ax.set_ylabel("delta / m  (minimal attack / ||a_d||)")
    ax.set_title("Table 4: compression predicts the attack size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
