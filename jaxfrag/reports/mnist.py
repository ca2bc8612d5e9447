"""Tables, claims and figures of the MNIST experiment (`jaxfrag.mnist`), from its rows alone.

Contract:
* `summarise(rows)` -- per network and pooled ("all"), per masking rule and
  subset (`SUBSETS`: uncrossed 7s with an A_1, as the tables use; all uncrossed
  7s; crossed 7s), for every numeric column: n (finite values),
  mean, se, median and its distribution-free 95% interval (`stats.median_ci`).
* `claims(rows)` -- the paper's two claims, |cos theta_t| ~ Q/(0.5L) and
  |M/(0.5L)| ~ Q/(0.5L), per rule and per Q (FGSM, minimal L2), on uncrossed 7s
  with an A_1: the paired difference's mean with its 95% t-interval, its median
  with its interval, and Pearson's correlation with its Fisher-z interval. With
  certified rows (`jaxfrag mnist --certify`) also at Q = Q_certified ("certified"),
  the lowest end of the minimal perturbation's bracket [Q_certified, Q_l2].
  Pooled rows of different networks share images; the intervals treat rows as
  independent (the per-network lines do not mix networks).
* `write(folder, rows, accuracies, cell_stats, data)` -- summary.csv, claims.csv and
  the figures (Figure 3's galleries, the claims, cos theta_alpha); returns the printed
  report (Tables 5 and 6 beside the paper's).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as sps

from jaxfrag import plots, stats
from jaxfrag.experiments import mnist as experiment
from jaxfrag.experiments.mnist import PAPER_TABLE5, PAPER_TABLE6, PAPER_TABLE6_AVERAGE
from jaxfrag.reports import study

KEYS = ("network", "image", "mask_rule", "crossed")
# (name, crossed, only rows with an A_1): the tables are "with_a1", uncrossed 7s that have an A_1.
SUBSETS = (("with_a1", False, True), ("uncrossed", False, False), ("crossed", True, False))
QS = {"fgsm": "Q_fgsm_ratio", "l2": "Q_l2_ratio", "certified": "Q_certified_ratio"}  # the last with --certify
CLAIMS = {"|cos theta_t|": "cos_theta_t", "|M/(0.5L)|": "M_ratio"}


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    records = []
    scopes = [("all", rows)] + [(str(k), part) for k, part in rows.groupby("network")]
    for scope, part in scopes:
        for rule in experiment.MASK_RULES:
            for subset, crossed, needs_a1 in SUBSETS:
                block = part[(part["mask_rule"] == rule) & (part["crossed"] == crossed)]
                if needs_a1:
                    block = block[block["has_a1"]]
                records += study.describe(block, KEYS, group=scope, mask_rule=rule, subset=subset)
    return pd.DataFrame.from_records(records)


def _correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    if len(x) < 4 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan, math.nan, math.nan
    r = float(np.corrcoef(x, y)[0, 1])
    # Fisher's z is normal with variance 1/(n - 3): a correlation's interval, not a mean's (`stats.interval`).
    z, half = np.arctanh(r), sps.norm.ppf(0.975) / math.sqrt(len(x) - 3)
    return r, float(np.tanh(z - half)), float(np.tanh(z + half))


def claims(rows: pd.DataFrame) -> pd.DataFrame:
    records = []
    scopes = [("all", rows)] + [(str(k), part) for k, part in rows.groupby("network")]
    for scope, part in scopes:
        for rule in experiment.MASK_RULES:
            block = part[(part["mask_rule"] == rule) & ~part["crossed"] & part["has_a1"]]
            for q_name, q_column in ((q, c) for q, c in QS.items() if c in rows):
                for claim, column in CLAIMS.items():
                    pair = block[[q_column, column]].astype(float).dropna()
                    q, measured = pair[q_column].to_numpy(), np.abs(pair[column].to_numpy())
                    diff = measured - q
                    n = len(diff)
                    change = stats.interval(diff)
                    low, high = stats.median_ci(diff)
                    r, r_low, r_high = _correlation(q, measured)
                    records.append(
                        {
                            "network": scope,
                            "mask_rule": rule,
                            "Q": q_name,
                            "claim": f"{claim} = Q/(0.5L)",
                            "n": n,
                            "mean_lhs": float(np.mean(measured)) if n else math.nan,
                            "mean_Q_ratio": float(np.mean(q)) if n else math.nan,
                            "diff_mean": change.mean,
                            "diff_low": change.low,
                            "diff_high": change.high,
                            "diff_median": float(np.median(diff)) if n else math.nan,
                            "diff_median_low": low,
                            "diff_median_high": high,
                            "corr": r,
                            "corr_low": r_low,
                            "corr_high": r_high,
                            "verdict": _verdict(change.low, change.high, r_low, n),
                        }
                    )
    return pd.DataFrame.from_records(records)


def _verdict(low: float, high: float, corr_low: float, n: int) -> str:
    if n < 3 or not np.isfinite(low):
        return "too few images"
    if low <= 0 <= high:
        level = "holds: the mean difference's 95% interval contains 0"
    else:
        side = "below" if high < 0 else "above"
        level = f"fails: the left side is {side} Q/(0.5L) (95% interval of the difference excludes 0)"
    tracks = "and tracks it across images" if corr_low > 0 else "and does not track it across images"
    return f"{level}, {tracks}"


def _cell(summary: pd.DataFrame, rule: str, metric: str, scope: str = "all", subset: str = "with_a1") -> str:
    row = summary[
        (summary["group"] == scope)
        & (summary["mask_rule"] == rule)
        & (summary["subset"] == subset)
        & (summary["metric"] == metric)
    ]
    if row.empty or row["n"].iloc[0] == 0:
        return "n/a"
    r = row.iloc[0]
    mean = stats.format_estimate(r["mean"], r["se"], spec="+.4f")
    median = stats.format_estimate(r["median"], low=r["median_low"], high=r["median_high"], spec="+.4f")
    return f"{mean}   median {median}   n {int(r['n'])}"


TABLE5 = [
    ("M", "M", "M"),
    ("Q (FGSM)", "Q_fgsm", "Q"),
    ("Q (min L2)", "Q_l2", None),
    ("L", "L", "L"),
    ("Q_fgsm/(0.5L)", "Q_fgsm_ratio", "Q/(0.5L)"),
    ("Q_l2/(0.5L)", "Q_l2_ratio", None),
    ("Q certified", "Q_certified", None),  # with --certify only
    ("Q_cert/(0.5L)", "Q_certified_ratio", None),
    ("M/(0.5L)", "M_ratio", "M/(0.5L)"),
    ("cos theta_t", "cos_theta_t", "cos_theta_t"),
]


def format_report(rows: pd.DataFrame, summary: pd.DataFrame, claim_table: pd.DataFrame, accuracies, cell_stats) -> str:
    lines = []
    lines.append("Networks (test accuracy; correctly classified test 7s; 7s measured):")
    for k, accuracy in enumerate(accuracies):
        info = cell_stats.get(("mnist", k), {})
        measured = int(((rows["network"] == k) & (rows["mask_rule"] == experiment.MASK_RULES[0])).sum())
        correct = f"{info.get('sevens_correct', '?')} of {info.get('sevens', '?')}"
        flag = "   BELOW 98.5%" if accuracy < 0.985 else ""
        lines.append(f"  network {k}: {accuracy:.4f}; {correct}; {measured}{flag}")
    first = rows[rows["mask_rule"] == experiment.MASK_RULES[0]]
    crossed = f"{int(first['crossed'].sum())} of {len(first)}"
    lines.append(
        f"Crossed 7s (a bar through the stem; reported apart, not in the tables): {crossed} (network, 7) pairs"
    )
    lines.append("Pixels are not clipped to [0, 1] (the paper's analysis is in R^d); share of pixels outside the box:")
    for column in ("box_fgsm", "box_l2"):
        values = first[column].dropna()
        lines.append(f"  {column}: mean {values.mean():.3f} over {len(values)} successful attacks")
    for column, name in (("Q_fgsm", "targeted FGSM"), ("Q_l2", "targeted minimal L2")):
        lines.append(f"{name} reached 1 on {int(first[column].notna().sum())} of {len(first)} (network, 7) pairs")
    bracket = first["Q_bracket"].dropna() if "Q_bracket" in first else pd.Series(dtype=float)
    if len(bracket):
        lines.append(
            f"Certified: on the {len(bracket)} (network, 7) pairs with an A_1 the minimal perturbation towards 1 lies "
            f"in [Q_certified, Q_l2]; Q_l2 / Q_certified median {bracket.median():.2f} (p90 "
            f"{bracket.quantile(0.9):.2f}, max {bracket.max():.2f}); the claims below with Q=certified put Q at "
            "that lower end"
        )
    both = first[["Q_fgsm", "Q_fgsm_split"]].dropna()
    if len(both):
        change = (both["Q_fgsm_split"] / both["Q_fgsm"] - 1).abs()
        lines.append(
            "Max-pool ties: our gradient gives a tie's gradient to the first maximum (PyTorch's rule); with it shared "
            f"equally, Q_fgsm changes by a median {change.median():.2%} (p90 {change.quantile(0.9):.2%}, "
            f"{(change > 1e-6).mean():.0%} of {len(both)} pairs change; FGSM reaches 1 with the other rule on "
            f"{int(first['Q_fgsm_split'].notna().sum())})"
        )
    for rule in experiment.MASK_RULES:
        part = rows[(rows["mask_rule"] == rule) & ~rows["crossed"]]
        crossed = rows[(rows["mask_rule"] == rule) & rows["crossed"]]
        lines.append("")
        lines.append(
            f"=== mask rule '{rule}': A_1 found for {int(part['has_a1'].sum())} of {len(part)} uncrossed 7s "
            f"({part['has_a1'].mean():.1%}); crossed: {int(crossed['has_a1'].sum())} of {len(crossed)} ==="
        )
        lines.append("Table 5 (uncrossed 7s with an A_1; pooled over networks): paper's experiments 1-5 | ours")
        for label, column, paper_key in (entry for entry in TABLE5 if entry[1] in rows):
            paper = "  ".join(f"{v:+.4f}" for v in PAPER_TABLE5[paper_key]) if paper_key else " " * 43 + "-"
            lines.append(f"  {label:<14} {paper:<44} | {_cell(summary, rule, column)}")
        lines.append(f"  {'blocked px':<14} {'':<44} | {_cell(summary, rule, 'blocked')}")
        lines.append(f"  {'ink left':<14} {'(share of the 7 still in A_1)':<44} | {_cell(summary, rule, 'ink_left')}")
        lines.append(f"  {'alpha_flip':<14} {'(the paper assumes 0.5)':<44} | {_cell(summary, rule, 'alpha_flip')}")
        lines.append("Table 6: cos theta_alpha on I_7 -> A_1: paper's experiments 1-4 | ours")
        for i in range(experiment.ALPHA_TABLE):
            paper = "  ".join(f"{v:+.4f}" for v in PAPER_TABLE6[i])
            lines.append(f"  alpha {i / 10:.1f}  {paper} | {_cell(summary, rule, f'cos_theta_alpha_{i}')}")
        average = part[[f"cos_theta_alpha_{i}" for i in range(experiment.ALPHA_TABLE)]].dropna().mean(axis=1)
        mean, se = stats.mean_se(average.to_numpy())
        paper = "  ".join(f"{v:+.4f}" for v in PAPER_TABLE6_AVERAGE)
        lines.append(f"  average    {paper} | {stats.format_estimate(mean, se, spec='+.4f')}   n {len(average)}")
        lines.append("The paper's claims (pooled; per network in claims.csv):")
        for _, c in claim_table[(claim_table["network"] == "all") & (claim_table["mask_rule"] == rule)].iterrows():
            difference = stats.format_estimate(c["diff_mean"], low=c["diff_low"], high=c["diff_high"], spec="+.3f")
            lines.append(
                f"  Q={c['Q']:<5} {c['claim']:<26} n {c['n']:4d}: mean {c['mean_lhs']:.3f} vs {c['mean_Q_ratio']:.3f}, "
                f"difference {difference}, "
                f"corr {stats.format_estimate(c['corr'], low=c['corr_low'], high=c['corr_high'], spec='+.2f')}: "
                f"{c['verdict']}"
            )
    return "\n".join(lines)


def write(folder, rows: pd.DataFrame, accuracies, cell_stats, data=None) -> str:
    """summary.csv, claims.csv and the figures (the galleries need the images, `data`); returns the report."""
    summary, claim_table = summarise(rows), claims(rows)
    figures = {
        "claims.png": lambda path: claims_figure(rows, path),
        "cos_alpha.png": lambda path: cos_alpha_figure(rows, PAPER_TABLE6, path),
    }
    if data is not None:
        for rule in experiment.MASK_RULES:
            figures[f"gallery_{rule}.png"] = lambda path, rule=rule: gallery_figure(rows, data.x_test, rule, path)
    study.write(folder, summary, claim_table, figures)
    return format_report(rows, summary, claim_table, accuracies, cell_stats)


def gallery_figure(rows: pd.DataFrame, images: np.ndarray, rule: str, path: Path, pairs: int = 8) -> None:
    """Figure 3 automated: I_7 beside A_1 for the first uncrossed and crossed 7s with an A_1 (network 0)."""
    part = rows[(rows["mask_rule"] == rule) & rows["has_a1"] & (rows["network"] == rows["network"].min())]
    chosen = pd.concat([part[~part["crossed"]].head(pairs), part[part["crossed"]].head(pairs // 2)])
    columns = max(len(chosen), 1)
    fig = Figure(figsize=(1.3 * columns, 3.0))
    axes = np.atleast_2d(fig.subplots(2, columns, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for j, (_, row) in enumerate(chosen.iterrows()):
        image = images[int(row["image"])]
        order = getattr(experiment.masking_orders(image), rule)[: int(row["blocked"])]
        a1 = image.reshape(-1).copy()
        a1[order] = 0
        axes[0, j].imshow(image, cmap="gray_r", vmin=0, vmax=255)
        axes[1, j].imshow(a1.reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
        tag = " crossed" if row["crossed"] else ""
        axes[0, j].set_title(f"#{int(row['image'])}{tag}", fontsize=7)
        axes[1, j].set_title(f"{int(row['blocked'])} px", fontsize=7)
    fig.suptitle(f"I_7 (top) and A_1 (bottom, classified 1), rule '{rule}'", fontsize=9)
    plots.save(fig, path)


def claims_figure(rows: pd.DataFrame, path: Path) -> None:
    """Q/(0.5L) against |cos theta_t| and against |M/(0.5L)|, per rule and Q, with the diagonal."""
    fig = Figure(figsize=(9, 8))
    axes = fig.subplots(2, 2)
    for i, (q_column, q_name) in enumerate((("Q_fgsm_ratio", "FGSM"), ("Q_l2_ratio", "min L2"))):
        for j, (column, name) in enumerate((("cos_theta_t", "|cos theta_t|"), ("M_ratio", "|M/(0.5L)|"))):
            ax = axes[i, j]
            for rule in experiment.MASK_RULES:
                part = rows[(rows["mask_rule"] == rule) & ~rows["crossed"]][[q_column, column]].dropna()
                ax.scatter(part[column].abs(), part[q_column], s=6, alpha=0.5, label=f"rule {rule} (n {len(part)})")
            top = max(ax.get_xlim()[1], ax.get_ylim()[1])
            ax.plot([0, top], [0, top], "k--", lw=1, label="the paper's claim: equal")
            ax.set_xlabel(name)
            ax.set_ylabel(f"Q/(0.5L), Q = {q_name}")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    plots.save(fig, path)


def cos_alpha_figure(rows: pd.DataFrame, paper: list[list[float]], path: Path) -> None:
    """cos theta_alpha along I_7 -> A_1: our median and 10-90% band per rule, and the paper's four curves."""
    alphas = np.linspace(0, 1, experiment.ALPHA_TABLE)
    columns = [f"cos_theta_alpha_{i}" for i in range(experiment.ALPHA_TABLE)]
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    for rule in experiment.MASK_RULES:
        values = rows[(rows["mask_rule"] == rule) & ~rows["crossed"]][columns].dropna().to_numpy(float)
        if len(values):
            line = ax.plot(alphas, np.median(values, axis=0), label=f"ours, rule {rule}: median (n {len(values)})")[0]
            low, high = np.quantile(values, [0.1, 0.9], axis=0)
            ax.fill_between(alphas, low, high, color=line.get_color(), alpha=0.2, label=f"ours, rule {rule}: 10-90%")
    paper = np.asarray(paper)
    for k in range(paper.shape[1]):
        ax.plot(alphas, paper[:, k], "k:", lw=1, label="the paper's experiments 1-4" if k == 0 else None)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("alpha on X = alpha A_1 + (1 - alpha) I_7")
    ax.set_ylabel("cos theta_alpha")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    plots.save(fig, path)
