"""What a grid answers: does compression track fragility under each configuration, and how does it scale?

Written for every sweep that runs linear or relu, with or without --grid.

Contract: plain functions of a run's rows (results.parquet) for the experiments with an `Ablation`
hook (linear, relu), whose `per_trial` gives each trial's success, compression (|cos theta1|;
relu: |cos theta_t|), robustness (over ||a_d||; relu: delta / m), tracking (compression minus what
the paper says it equals: phi; relu: delta / m), phi and gap.

* `measures(rows, experiments, cells)` -- measures.csv: one row per (experiment, grid point, d):
  n, the success fraction, epochs run, and mean +- se of every measure over all finite nets and
  over the successes (training accuracy 1), beside E[phi]'s closed form.
* `slopes(per_d, cells)` -- slopes.csv: per (experiment, grid point, quantity) the log-log slope
  against d with its 95% t-interval, for the gap, compression, robustness and phi over all nets and
  over successes, and for E[phi] over the same d. Over successes alone a slope can measure which
  nets succeed rather than compression, hence both.
* `paired(rows, experiments, grid, cells)` -- paired.csv: for each grid axis, each other value
  against the axis's reference (the run's default when the axis holds it, else its first value),
  with the other axes fixed, per experiment and d: the change of each measure trial by trial (the
  same data: common random numbers), its mean and 95% interval, for the success fraction, the
  compression, the tracking error |tracking| and the gap (over all nets, and over the nets that
  fit under both).
* `write(folder, ...)` writes those three files and figures/compression_vs_fragility.png, and
  returns the text the sweep prints.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jaxfrag import grid as grid_module
from jaxfrag import plots, rmt, store
from jaxfrag.config import Config
from jaxfrag.experiments.base import Experiment
from jaxfrag.reports.sweep import select
from jaxfrag.stats import format_estimate, interval, loglog_fit, mean_se, t_half_width

MEASURES = ("compression", "robustness", "tracking", "phi", "gap")
GROUPS = ("all", "success")  # every finite net; the nets with training accuracy 1
# (measure, group) pairs whose per-d means are fitted against d, in report order.
SLOPE_QUANTITIES = (
    ("gap", "all"),
    ("gap", "success"),
    ("compression", "all"),
    ("compression", "success"),
    ("robustness", "success"),
    ("phi", "all"),
    ("phi", "success"),
)
# Paired, the tracking error |tracking| is the measure: phi is the same for both configurations of a
# trial, so the change of the signed tracking would be the change of the compression again.
PAIRED_MEASURES = ("success", "compression", "tracking_error", "gap")


def _finite_trials(rows: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    finite = rows[~rows["nonfinite"].astype(bool)]
    trials = experiment.ablation.per_trial(finite)
    return trials.assign(
        tracking_error=trials["tracking"].abs(), trial=finite["trial"].to_numpy(), epochs=finite["epochs_run"]
    )


def _ablated(cells, experiments):
    return [(name, point) for name, point in cells if experiments[name].ablation is not None]


def measures(rows: pd.DataFrame, experiments: dict[str, Experiment], cells, config: Config) -> pd.DataFrame:
    """measures.csv's rows: one per (experiment, grid point, d)."""
    records = []
    for name, point in _ablated(cells, experiments):
        point_config = grid_module.config_for(config, point)
        for d, rows_d in select(rows, name, point).groupby("d", sort=True):
            trials = _finite_trials(rows_d, experiments[name])
            ok = trials["success"].astype(bool)
            fraction = float(ok.mean()) if len(trials) else math.nan
            record = {
                "experiment": name,
                "config": grid_module.label(point) or "default",
                **dict(point),
                "d": int(d),
                "n": len(trials),
                "successes": int(ok.sum()),
                "success_fraction": fraction,
                "success_fraction_se": math.sqrt(fraction * (1 - fraction) / len(trials)) if len(trials) else math.nan,
                "epochs_mean": float(trials["epochs"].mean()),
                "epochs_max": int(trials["epochs"].max()) if len(trials) else 0,
                # nets the until-fit protocol stopped at its cap without fitting them
                "capped_fraction": float(((trials["epochs"] >= point_config.max_epochs) & ~ok).mean())
                if point_config.protocol == "until-fit"
                else math.nan,
                "phi_mean_theory": float(rmt.phi_mean(int(d))),
            }
            for group, chosen in (("all", trials), ("success", trials[ok])):
                for measure in MEASURES:
                    values = chosen[measure].to_numpy(float)
                    values = values[np.isfinite(values)]  # relu: NaN where no attack flipped the label
                    record[f"{measure}_{group}_n"] = len(values)
                    record[f"{measure}_{group}_mean"], record[f"{measure}_{group}_se"] = mean_se(values)
            records.append(record)
    return pd.DataFrame.from_records(records)


def slopes(per_d: pd.DataFrame, cells) -> pd.DataFrame:
    """slopes.csv's rows: the log-log slope against d of each quantity's per-d mean, per configuration."""
    records = []
    for name, point in cells:
        chosen = select(per_d, name, point) if len(per_d) else per_d
        if not len(chosen):
            continue
        d = chosen["d"].to_numpy(float)
        series = [(f"{measure}, {group}", chosen[f"{measure}_{group}_mean"]) for measure, group in SLOPE_QUANTITIES]
        series.append(("E[phi] (closed form)", chosen["phi_mean_theory"]))
        for quantity, mean in series:
            fit = loglog_fit(d, mean.to_numpy(float))
            records.append(
                {
                    "experiment": name,
                    "config": grid_module.label(point) or "default",
                    **dict(point),
                    "quantity": quantity,
                    "slope": fit.slope,
                    "slope_se": fit.slope_se,
                    "ci_low": fit.ci_low,
                    "ci_high": fit.ci_high,
                    "d_points": fit.points,
                    "d_min": int(d.min()),
                    "d_max": int(d.max()),
                }
            )
    return pd.DataFrame.from_records(records)


def reference_value(field: str, experiment: str, values: tuple):
    """The value an axis's changes are measured against: the run's default if the axis holds it, else its first."""
    # Config.scale_for resolves the column factor's per-experiment default (None in Config)
    default = Config().scale_for(experiment) if field == "scale_columns" else getattr(Config(), field)
    return default if default in values else values[0]


def _change(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, 95% low, 95% high) of paired differences (`stats.interval`)."""
    change = interval(values)
    return change.mean, change.low, change.high


def paired(rows: pd.DataFrame, experiments: dict[str, Experiment], grid: grid_module.Grid, cells) -> pd.DataFrame:
    """paired.csv's rows: per axis, value, experiment, the other axes' values and d, the change trial by trial."""
    records = []
    names = list(dict.fromkeys(name for name, _ in _ablated(cells, experiments)))
    for axis in grid.axes:
        for name in names:
            reference = reference_value(axis.field, name, axis.values)
            for point in grid.points():
                if dict(point)[axis.field] != reference:
                    continue
                rest = grid_module.label(tuple((f, v) for f, v in point if f != axis.field))
                for value in axis.values:
                    if value == reference:
                        continue
                    other = tuple((f, value if f == axis.field else v) for f, v in point)
                    records.extend(_paired_cells(rows, experiments[name], name, point, other, axis, value, rest))
    return pd.DataFrame.from_records(records)


def _paired_cells(rows, experiment, name, point, other, axis, value, rest) -> list[dict]:
    records = []
    base_rows, other_rows = select(rows, name, point), select(rows, name, other)
    for d in sorted(set(base_rows["d"]) & set(other_rows["d"])):
        base = _finite_trials(base_rows[base_rows["d"] == d], experiment).set_index("trial")
        changed = _finite_trials(other_rows[other_rows["d"] == d], experiment).set_index("trial")
        trials = base.index.intersection(changed.index)  # nets finite under both configurations
        base, changed = base.loc[trials], changed.loc[trials]
        record = {
            "experiment": name,
            "axis": axis.option,
            "value": grid_module.format_value(value),
            "reference": grid_module.format_value(dict(point)[axis.field]),
            "rest": rest,
            "d": int(d),
            "pairs": len(trials),
        }
        for measure in PAIRED_MEASURES:
            before, after = base[measure].to_numpy(float), changed[measure].to_numpy(float)
            both = np.isfinite(before) & np.isfinite(after)
            record[f"{measure}_reference"] = float(before[both].mean()) if both.any() else math.nan
            (record[f"{measure}_change"], record[f"{measure}_change_low"], record[f"{measure}_change_high"]) = _change(
                after[both] - before[both]
            )
        # The gap over the nets that fit under both: robustness changes that are not success changes.
        fit_both = (base["success"].astype(bool) & changed["success"].astype(bool)).to_numpy()
        record["fit_both"] = int(fit_both.sum())
        (record["gap_fit_both_change"], record["gap_fit_both_change_low"], record["gap_fit_both_change_high"]) = (
            _change(changed["gap"].to_numpy(float)[fit_both] - base["gap"].to_numpy(float)[fit_both])
        )
        records.append(record)
    return records


def _change_text(record, measure: str) -> str:
    mean, low, high = (record[f"{measure}_change{suffix}"] for suffix in ("", "_low", "_high"))
    if not np.isfinite(mean):
        return "—"
    if not np.isfinite(low):
        return f"{mean:+.3f} (one pair)"
    excludes = "*" if low > 0 or high < 0 else " "
    return format_estimate(mean, low=low, high=high, spec="+.3f") + excludes


def format_report(per_d, slope_rows, paired_rows, experiments) -> str:
    lines = [
        "What the grid answers (measures.csv, slopes.csv, paired.csv, figures/compression_vs_fragility.png):",
        "per configuration and d, mean ± standard error; 'succ': the nets with training accuracy 1",
    ]
    for name in dict.fromkeys(per_d["experiment"]):
        labels = experiments[name].ablation.labels
        lines.append(
            f"{name}: compression = {labels['compression']}, robustness = {labels['robustness']}, "
            f"tracking = {labels['tracking']}, gap = {labels['gap']}"
        )
        lines.append(
            f"  {'config':<34} {'d':>3} {'n':>4} {'success':>7} {'epochs':>6}  {'phi all':>13}  {'phi succ':>13}  "
            f"{'compr. succ':>13}  {'robust. succ':>13}  {'tracking succ':>14}  {'gap all':>13}  {'gap succ':>13}"
        )
        for _, r in per_d[per_d["experiment"] == name].iterrows():
            lines.append(
                f"  {r['config']:<34} {r['d']:>3} {r['n']:>4} {r['success_fraction']:>7.2f} {r['epochs_mean']:>6.1f}  "
                + "  ".join(
                    format_estimate(r[f"{m}_{g}_mean"], r[f"{m}_{g}_se"], spec=".3f").rjust(
                        14 if m == "tracking" else 13
                    )
                    for m, g in (
                        ("phi", "all"),
                        ("phi", "success"),
                        ("compression", "success"),
                        ("robustness", "success"),
                        ("tracking", "success"),
                        ("gap", "all"),
                        ("gap", "success"),
                    )
                )
            )
    if len(slope_rows):
        lines += ["", "log-log slopes against d (95% t-interval; the paper's claim for the gap: -1/2, as E[phi]):"]
        quantities = list(dict.fromkeys(slope_rows["quantity"]))
        lines.append(f"  {'experiment, config':<42} " + " ".join(f"{q:>25}" for q in quantities))
        for (name, config), group in slope_rows.groupby(["experiment", "config"], sort=False):
            cells = []
            for quantity in quantities:
                r = group[group["quantity"] == quantity].iloc[0]
                if not np.isfinite(r["slope"]):
                    cells.append(f"{'—':>25}")
                elif np.isfinite(r["ci_low"]):
                    cells.append(f"{r['slope']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]".rjust(25))
                else:
                    cells.append(f"{r['slope']:+.2f} (2 d)".rjust(25))
            lines.append(f"  {name + ', ' + config:<42} " + " ".join(cells))
    if len(paired_rows):
        lines += [
            "",
            "paired changes against each axis's reference value, trial by trial (mean [95% interval]; "
            "* the interval excludes 0):",
            f"  {'experiment':<10} {'axis: value vs reference':<34} {'others':<28} {'d':>3} {'pairs':>5}  "
            f"{'success':>26}  {'compression':>26}  {'|tracking|':>26}  {'gap':>26}  {'gap, fit under both':>26}",
        ]
        for _, r in paired_rows.iterrows():
            change = f"{r['axis']}: {r['value']} vs {r['reference']}"
            lines.append(
                f"  {r['experiment']:<10} {change:<34} {r['rest'] or '-':<28} {r['d']:>3} {r['pairs']:>5}  "
                + "  ".join(f"{_change_text(r, m):>26}" for m in (*PAIRED_MEASURES, "gap_fit_both"))
            )
    return "\n".join(lines)


def write(folder: store.RunFolder, rows, experiments, config, grid, cells) -> str:
    """measures.csv, slopes.csv, paired.csv (with a grid) and the figure; returns the report ('' if no trained cell)."""
    per_d = measures(rows, experiments, cells, config)
    if not len(per_d):
        return ""
    slope_rows = slopes(per_d, _ablated(cells, experiments))
    paired_rows = paired(rows, experiments, grid, cells) if grid.axes else pd.DataFrame()
    store.atomic_write_text(folder.path / "measures.csv", per_d.to_csv(index=False))
    store.atomic_write_text(folder.path / "slopes.csv", slope_rows.to_csv(index=False))
    if grid.axes:
        store.atomic_write_text(folder.path / "paired.csv", paired_rows.to_csv(index=False))
    labels = {name: experiments[name].ablation.labels for name in dict.fromkeys(per_d["experiment"])}
    compression_vs_fragility(per_d, labels, folder.figure_path("compression_vs_fragility.png"))
    return format_report(per_d, slope_rows, paired_rows, experiments)


def _bar(group: pd.DataFrame, prefix: str) -> np.ndarray:
    """The 95% t-interval's half-width of a per-d mean (0 where it has none)."""
    return np.nan_to_num(t_half_width(group[f"{prefix}_se"].to_numpy(float), group[f"{prefix}_n"].to_numpy(float)))


def compression_vs_fragility(per_d: pd.DataFrame, labels: dict[str, dict[str, str]], path: Path) -> None:
    """Compression against robustness, one point per (configuration, d), over the nets that fit.

    `per_d` is `measures`' table; `labels[experiment]` names its measures. One
    panel per experiment: x the mean compression (|cos theta1|; relu |cos theta_t|), y the mean
    robustness over the last-bit flip's (robustness / ||a_d||; relu delta / m), 95% error bars both
    ways, d written beside each point, and the diagonal the paper's claim puts them on.
    """
    names = list(labels)
    fig = Figure(figsize=(5.6 * len(names), 5.0))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    configs = list(dict.fromkeys(per_d["config"]))
    colours = {config: f"C{k % 10}" for k, config in enumerate(configs)}
    for ax, name in zip(axes, names, strict=True):
        cells = per_d[per_d["experiment"] == name]
        top = 0.0
        for config, group in cells.groupby("config", sort=False):
            group = group.sort_values("d")
            x, y = group["compression_success_mean"].to_numpy(float), group["robustness_success_mean"].to_numpy(float)
            ax.errorbar(
                x,
                y,
                xerr=_bar(group, "compression_success"),
                yerr=_bar(group, "robustness_success"),
                fmt="o-",
                ms=3.5,
                lw=0.6,
                capsize=2,
                color=colours[config],
                label=config,
            )
            for xi, yi, d in zip(x, y, group["d"], strict=True):
                if np.isfinite(xi) and np.isfinite(yi):
                    ax.annotate(str(d), (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
            top = max(top, np.nanmax(np.concatenate([x, y, [0.0]])))
        top = 1.1 * top if top > 0 else 1.0
        ax.plot([0, top], [0, top], "k--", lw=1, label="the paper's claim: y = x")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(f"mean {labels[name]['compression']} (nets that fit)")
        ax.set_ylabel(f"mean {labels[name]['robustness']} (nets that fit)")
        ax.set_title(f"{name}: compression vs fragility, per (configuration, d)", fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(True, alpha=0.3)
    plots.save(fig, path)
