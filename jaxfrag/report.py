"""From finished cells to the tables, fits, figures and printed report of a sweep.

Contract: `write_tables(folder, ...)` reads every finished cell of a run
folder and writes results.parquet and summary.csv (one row per experiment
and d: n, `<m>_mean` / `<m>_se` per metric, the closed-form values and the
cell statistics); it returns the summary and one log-log fit of the mean gap
against d per experiment, and the rows. `write_figures` draws
figures/scaling_<name>.png and each experiment's own figures (linear: the
paper's Table 1 and Figure 2); `format_table` is the text printed at the end of
a sweep, with each experiment's own report (linear: the Table 2 comparison).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jaxfrag import plots, store
from jaxfrag.config import Config
from jaxfrag.experiments import Experiment
from jaxfrag.stats import Fit, loglog_fit, nonfinite_rows, summarise_cell

__all__ = ["write_tables", "write_figures", "format_table", "nonfinite_rows", "summarise"]


def summarise(
    rows: pd.DataFrame, cell_stats: dict, experiments: dict[str, Experiment], config: Config, order: list[str]
) -> tuple[pd.DataFrame, dict[str, Fit]]:
    records = []
    for name in order:
        experiment = experiments[name]
        cells = rows[rows["experiment"] == name]
        for d, cell in cells.groupby("d", sort=True):
            d = int(d)
            records.append(
                {
                    "experiment": name,
                    "d": d,
                    **summarise_cell(cell, list(experiment.columns)),
                    **experiment.theory(d, config),
                    **cell_stats.get((name, d), {}),
                    **experiment.cell_summary(cell, d, config),
                }
            )
    summary = pd.DataFrame.from_records(records)
    fits = {}
    for name in order:
        cells = summary[summary["experiment"] == name] if len(summary) else summary
        if len(cells):
            fits[name] = loglog_fit(cells["d"].to_numpy(), cells["gap_mean"].to_numpy())
    return summary, fits


def write_tables(folder: store.RunFolder, experiments: dict[str, Experiment], config: Config, order: list[str]):
    rows, cell_stats = folder.read_cells()
    rows = rows.reset_index(drop=True)
    folder.write_results(rows)
    summary, fits = summarise(rows, cell_stats, experiments, config, order)
    folder.write_summary(summary)
    return summary, fits, rows


def write_figures(
    folder: store.RunFolder,
    summary: pd.DataFrame,
    fits: dict[str, Fit],
    experiments: dict[str, Experiment],
    config: Config,
    rows: pd.DataFrame,
) -> None:
    for name, fit in fits.items():
        experiment = experiments[name]
        plots.scaling_figure(
            summary,
            name,
            f"{name} ({experiment.paper}): NN vs optimal robustness",
            fit,
            experiment.theory_slope(config),
            experiment.gap_theory_kind,
            folder.figure_path(f"scaling_{name}.png"),
        )
        if experiment.figures:
            experiment.figures(folder.figure_path, summary, rows[rows["experiment"] == name], config)


def format_table(
    summary: pd.DataFrame,
    fits: dict[str, Fit],
    experiments: dict[str, Experiment],
    config: Config,
    rows: pd.DataFrame | None = None,
) -> str:
    names = [name for name in fits]
    if not names:
        return "no finished cells"
    lines = []
    header = f"{'d':>4}  " + "  ".join(f"{name + ': n  gap mean ± se   (closed form)':<40}" for name in names)
    lines.append(header)
    for d in sorted(summary["d"].unique()):
        parts = []
        for name in names:
            cell = summary[(summary["experiment"] == name) & (summary["d"] == d)]
            if cell.empty:
                parts.append(" " * 40)
                continue
            row = cell.iloc[0]
            theory = row.get("gap_theory", np.nan)
            parts.append(f"{int(row['n']):>7}  {row['gap_mean']:.4g} ± {row['gap_se']:.2g}   ({theory:.4g})".ljust(40))
        lines.append(f"{int(d):>4}  " + "  ".join(parts))
    lines.append("")
    lines.append("log-log slope of the mean gap against d (95% interval) and of the closed form over the same d:")
    for name in names:
        fit = fits[name]
        cells = summary[summary["experiment"] == name]
        closed = loglog_fit(cells["d"].to_numpy(), cells["gap_theory"].to_numpy())
        interval = f"[{fit.ci_low:+.3f}, {fit.ci_high:+.3f}]" if np.isfinite(fit.ci_low) else "(no interval from < 3 d)"
        lines.append(
            f"  {name:<5} measured {fit.slope:+.3f} {interval} over {fit.points} d;"
            f" closed form {closed.slope:+.3f} ({experiments[name].theory_slope(config):+.2f} as d grows)"
        )
    lines.append("closed forms: " + "; ".join(f"{name}: {experiments[name].gap_theory_kind}" for name in names))
    nonfinite = int(summary["n_nonfinite"].sum())
    if nonfinite:
        lines.append(f"  {nonfinite} trials had NaN or inf and are left out of every mean (column nonfinite)")
    for name in names:
        if experiments[name].report and rows is not None:
            lines.extend(["", experiments[name].report(summary, rows, config)])
    return "\n".join(lines)
