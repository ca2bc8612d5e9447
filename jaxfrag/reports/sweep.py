"""A sweep's report: from finished cells to its tables, fits, figures and printed text.

Contract: `write_tables(folder, ...)` reads every finished cell of a run
folder and writes results.parquet and summary.csv (one row per experiment,
grid point and d: n, `<m>_mean` / `<m>_se` per metric, the closed-form values
and the cell statistics; a grid's axes are columns after `experiment`); it
returns the summary, one log-log fit of the mean gap against d per
(experiment, grid point) keyed by `grid.cell_name`, and the rows. `write_figures` draws
figures/scaling_<name>.png and each experiment's own figures (linear: the
paper's Table 1 and Figure 2); `format_table` is the text printed at the end of
a sweep, with each experiment's own report (linear: the Table 2 comparison).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jaxfrag import grid, plots, store
from jaxfrag.config import Config
from jaxfrag.experiments.base import Experiment
from jaxfrag.stats import Fit, format_estimate, loglog_fit, summarise_cell

__all__ = ["write_tables", "write_figures", "format_table", "select", "summarise"]


def select(frame: pd.DataFrame, name: str, point: tuple) -> pd.DataFrame:
    """The rows of `frame` (results or summary) of one experiment at one grid point."""
    keep = frame["experiment"] == name
    for field, value in point:
        keep &= frame[field] == value
    return frame[keep]


def summarise(
    rows: pd.DataFrame,
    cell_stats: dict,
    experiments: dict[str, Experiment],
    config: Config,
    cells: list[tuple[str, tuple]],
) -> tuple[pd.DataFrame, dict[str, Fit]]:
    """summary.csv's rows, one per (experiment, grid point, d), and one fit per (experiment, grid point).

    `cells` are the run's (experiment, grid point) pairs in report order; the fits are keyed by
    `grid.cell_name`, which is the experiment's name alone without a grid.
    """
    records, fits = [], {}
    for name, point in cells:
        experiment, point_config, cell = experiments[name], grid.config_for(config, point), grid.cell_name(name, point)
        first = len(records)
        for d, rows_d in select(rows, name, point).groupby("d", sort=True):
            d = int(d)
            records.append(
                {
                    "experiment": name,
                    **dict(point),
                    "d": d,
                    **summarise_cell(rows_d, [column for column in experiment.columns if column in rows_d]),
                    **experiment.theory(d, point_config),
                    **cell_stats.get((cell, d), {}),
                    **experiment.cell_summary(rows_d, d, point_config),
                }
            )
        if len(records) > first:
            fits[cell] = loglog_fit(
                np.array([r["d"] for r in records[first:]]), np.array([r["gap_mean"] for r in records[first:]])
            )
    return pd.DataFrame.from_records(records), fits


def write_tables(
    folder: store.RunFolder, experiments: dict[str, Experiment], config: Config, cells: list[tuple[str, tuple]]
):
    rows, cell_stats = folder.read_cells()
    rows = rows.reset_index(drop=True)
    folder.write_results(rows)
    summary, fits = summarise(rows, cell_stats, experiments, config, cells)
    folder.write_summary(summary)
    return summary, fits, rows


def write_figures(
    folder: store.RunFolder,
    summary: pd.DataFrame,
    fits: dict[str, Fit],
    experiments: dict[str, Experiment],
    config: Config,
    rows: pd.DataFrame,
    cells: list[tuple[str, tuple]],
) -> None:
    """figures/scaling_<experiment>.png and the experiment's own figures; a grid point's in figures/<point>/."""
    for name, point in cells:
        experiment, fit = experiments[name], fits.get(grid.cell_name(name, point))
        if fit is None:  # no finished cell
            continue
        point_label = grid.label(point)

        def figure_path(file: str, point_label=point_label):
            return folder.figure_path(f"{point_label}/{file}" if point_label else file)

        title = f"{name} ({experiment.paper}){' at ' + point_label if point_label else ''}: NN vs optimal robustness"
        cells = select(summary, name, point)
        point_config = grid.config_for(config, point)
        plots.scaling_figure(
            cells,
            name,
            title,
            fit,
            experiment.theory_slope(point_config),
            experiment.gap_theory_kind,
            figure_path(f"scaling_{name}.png"),
        )
        if experiment.figures:
            experiment.figures(figure_path, cells, select(rows, name, point), point_config)


def _gap_text(row) -> str:
    gap = format_estimate(row["gap_mean"], row["gap_se"], spec=".4g", se_spec=".2g")
    return f"{int(row['n']):>7}  {gap}   ({row.get('gap_theory', np.nan):.4g})"


def format_table(
    summary: pd.DataFrame,
    fits: dict[str, Fit],
    experiments: dict[str, Experiment],
    config: Config,
    rows: pd.DataFrame | None,
    cells: list[tuple[str, tuple]],
) -> str:
    """The text a sweep prints: the gap per d, the fitted slopes, and each experiment's own report.

    Without a grid, one column per experiment; with one, a block per (experiment, grid point).
    """
    cells = [(name, point) for name, point in cells if grid.cell_name(name, point) in fits]
    if not cells:
        return "no finished cells"
    lines = []
    if not any(point for _, point in cells):
        names = [name for name, _ in cells]
        lines.append(f"{'d':>4}  " + "  ".join(f"{name + ': n  gap mean ± se   (closed form)':<40}" for name in names))
        for d in sorted(summary["d"].unique()):
            parts = []
            for name in names:
                cell = summary[(summary["experiment"] == name) & (summary["d"] == d)]
                parts.append(_gap_text(cell.iloc[0]).ljust(40) if len(cell) else " " * 40)
            lines.append(f"{int(d):>4}  " + "  ".join(parts))
    else:
        for name, point in cells:
            lines.append(f"{grid.cell_name(name, point)}: {'d':>4}  n  gap mean ± se   (closed form)")
            for _, row in select(summary, name, point).sort_values("d").iterrows():
                lines.append(f"    {int(row['d']):>4}  {_gap_text(row)}")
    lines.append("")
    lines.append("log-log slope of the mean gap against d (95% interval) and of the closed form over the same d:")
    for name, point in cells:
        cell = grid.cell_name(name, point)
        fit, rows_summary = fits[cell], select(summary, name, point)
        closed = loglog_fit(rows_summary["d"].to_numpy(), rows_summary["gap_theory"].to_numpy())
        interval = f"[{fit.ci_low:+.3f}, {fit.ci_high:+.3f}]" if np.isfinite(fit.ci_low) else "(no interval from < 3 d)"
        slope = experiments[name].theory_slope(grid.config_for(config, point))
        lines.append(
            f"  {cell:<5} measured {fit.slope:+.3f} {interval} over {fit.points} d;"
            f" closed form {closed.slope:+.3f} ({slope:+.2f} as d grows)"
        )
    names = list(dict.fromkeys(name for name, _ in cells))
    lines.append("closed forms: " + "; ".join(f"{name}: {experiments[name].gap_theory_kind}" for name in names))
    nonfinite = int(summary["n_nonfinite"].sum())
    if nonfinite:
        lines.append(f"  {nonfinite} trials had NaN or inf and are left out of every mean (column nonfinite)")
    for name, point in cells:
        if experiments[name].report and rows is not None:
            header = [f"--- {name} at {grid.label(point)} ---"] if point else []
            text = experiments[name].report(
                select(summary, name, point), select(rows, name, point), grid.config_for(config, point)
            )
            lines.extend(["", *header, text])
    return "\n".join(lines)
