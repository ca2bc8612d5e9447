"""Tables 7-8 and Figure 6 of the ImageNet experiment (`jaxfrag.imagenet`), from its rows alone.

Contract:
* `summarise(rows)` -- for every numeric column, over pairs: n (finite values), mean, se,
  median and its distribution-free 95% interval (`stats.median_ci`).
* `claim(rows)` -- the paper's claim |M/(0.5L)| ~ Q/(0.5L), per Q (Kurakin's, the targeted and
  the untargeted minimal L2): the means of both sides, their ratio, and the paired difference's
  mean with its 95% t-interval (`stats.interval`; NaN below 2 pairs).
* `format_report(rows, summary, demo)` -- Tables 7 and 8 beside the paper's four experiments:
  each pair as a column when there are at most `PAIR_COLUMNS`, and the mean with its SE.
* `write(folder, rows, images, size, demo)` -- summary.csv, claims.csv, figures/figure6.png and
  figures/pairs.png; returns the printed report.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jaxfrag import plots, stats
from jaxfrag.experiments.imagenet import ALPHA_TABLE, PAPER_TABLE7, PAPER_TABLE7_AVERAGE, PAPER_TABLE8
from jaxfrag.reports import study

PAIR_COLUMNS = 6  # pairs printed one by one in the tables; beyond, only their mean
KEYS = ("pair", "source", "target", "source_class", "target_class", "source_name", "target_name", "cos_path")
QS = {"Q_ll": "Kurakin (the paper's Q)", "Q_l2_targeted": "minimal L2, targeted", "Q_l2": "minimal L2, untargeted"}


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame.from_records(study.describe(rows, KEYS))


def claim(rows: pd.DataFrame) -> pd.DataFrame:
    records = []
    m = np.abs(rows["M_ratio"].to_numpy(float))
    for q, label in QS.items():
        ratio = rows[f"{q}_ratio"].to_numpy(float)
        usable = np.isfinite(m) & np.isfinite(ratio) & rows[f"{q}_success"].to_numpy(bool)
        n = int(usable.sum())
        difference = stats.interval(m[usable] - ratio[usable])
        records.append(
            {
                "Q": q,
                "attack": label,
                "n": n,
                "abs_M_ratio_mean": float(m[usable].mean()) if n else math.nan,
                "Q_ratio_mean": float(ratio[usable].mean()) if n else math.nan,
                "M_over_Q": float(m[usable].mean() / ratio[usable].mean()) if n else math.nan,
                "difference_mean": difference.mean,
                "difference_low": difference.low,
                "difference_high": difference.high,
            }
        )
    return pd.DataFrame.from_records(records)


def _mean_cell(summary: pd.DataFrame, metric: str, digits: int = 4) -> str:
    row = summary[summary["metric"] == metric]
    if row.empty or not np.isfinite(row["mean"].iloc[0]):
        return "-"
    estimate = stats.format_estimate(row["mean"].iloc[0], row["se"].iloc[0], spec=f"+.{digits}f")
    return f"{estimate} (n {int(row['n'].iloc[0])})"


def format_report(rows: pd.DataFrame, summary: pd.DataFrame, claims: pd.DataFrame, demo: bool) -> str:
    shown = rows.head(PAIR_COLUMNS)
    lines = []
    if demo:
        lines.append(
            "DEMO: the photographs scikit-image and matplotlib ship, paired by the model's own classes (each "
            "photograph a source once: the unit of independence). These are NOT the paper's English springer / "
            "Afghan hound pairs; pass --image-dirs SOURCE_DIR TARGET_DIR for those."
        )
    lines.append(f"{len(rows)} pairs (source -> nearest target in L2):")
    for _, r in rows.iterrows():
        lines.append(
            f"  {int(r['pair']) + 1}. {r['source']} ({r['source_name']}, p {r['p_source']:.2f}) -> {r['target']} "
            f"({r['target_name']}, p {r['p_target']:.2f})"
        )
    ours = "  ".join(f"{'pair ' + str(int(p) + 1):>9}" for p in shown["pair"])
    lines.append("")
    lines.append("Table 7: cos theta_alpha on x_alpha = alpha x_src + (1 - alpha) x_tgt")
    lines.append(f"  {'alpha':<7} {'paper 1-4':<32} | {ours} | mean ± SE")
    for i in range(ALPHA_TABLE):
        paper = " ".join(f"{v:+.4f}" for v in PAPER_TABLE7[i])
        values = "  ".join(f"{v:+9.4f}" for v in shown[f"cos_theta_alpha_{i}"])
        lines.append(f"  {i / 10:<7.1f} {paper:<32} | {values} | {_mean_cell(summary, f'cos_theta_alpha_{i}')}")
    paper = " ".join(f"{v:+.4f}" for v in PAPER_TABLE7_AVERAGE)
    values = "  ".join(f"{v:+9.4f}" for v in shown["cos_mean"])
    lines.append(f"  {'Avg.':<7} {paper:<32} | {values} | {_mean_cell(summary, 'cos_mean')}")
    lines.append("")
    lines.append("Table 8 (Q: the paper's is Kurakin's iterative attack, ours Q_ll; L2 norms, pixels in [0, 1])")
    lines.append(f"  {'':<18} {'paper 1-4':<40} | {ours} | mean ± SE")
    table8 = [
        ("M/(0.5L)", "M_ratio", "M/(0.5L)"),
        ("Q (Q_ll)", "Q_ll", "Q"),
        ("L", "L", "L"),
        ("Q/(0.5L)", "Q_ll_ratio", "Q/(0.5L)"),
        ("Q_l2 targeted", "Q_l2_targeted", None),
        ("Q_l2 untargeted", "Q_l2", None),
        ("Q_l2t/(0.5L)", "Q_l2_targeted_ratio", None),
        ("Q_l2/(0.5L)", "Q_l2_ratio", None),
        ("cos theta_t", "cos_theta_t", None),
    ]
    for label, column, paper_key in table8:
        paper = " ".join(f"{v:+.4g}" for v in PAPER_TABLE8[paper_key]) if paper_key else "-"
        values = "  ".join(f"{v:+9.4g}" for v in shown[column])
        lines.append(f"  {label:<18} {paper:<40} | {values} | {_mean_cell(summary, column)}")
    lines.append("")
    verified = {q: int(rows[f"{q}_success"].sum()) for q in QS}
    reached = {
        "Q_ll": int((rows["class_ll"] == rows["target_class"]).sum()),
        "Q_l2_targeted": int((rows["class_l2_targeted"] == rows["target_class"]).sum()),
        "Q_l2": int((rows["class_l2"] != rows["source_class"]).sum()),
    }
    lines.append(
        f"Attacks applied, of {len(rows)} pairs: verified (the goal class ahead by more than rounding) / argmax "
        "re-checked outside the attack: " + ", ".join(f"{QS[q]} {verified[q]} / {reached[q]}" for q in QS)
    )
    lines.append(
        f"Kurakin's radius: median {np.median(rows['Q_ll_eps']) * 255:.2f}/255 (L-inf); minimal-L2 pixels outside "
        f"[0, 1]: {rows['box_l2_targeted'].mean():.1%} targeted, {rows['box_l2'].mean():.1%} untargeted (not clipped)"
    )
    lines.append("The paper's claim |M/(0.5L)| ~ Q/(0.5L), per Q (mean over pairs; paired difference, 95% interval):")
    for _, c in claims.iterrows():
        difference = stats.format_estimate(
            c["difference_mean"], low=c["difference_low"], high=c["difference_high"], spec="+.4f"
        )
        lines.append(
            f"  {c['attack']:<24} |M/(0.5L)| {c['abs_M_ratio_mean']:.4f} vs Q/(0.5L) {c['Q_ratio_mean']:.4f}: "
            f"ratio {c['M_over_Q']:.2f}, difference {difference} (n {c['n']})"
        )
    return "\n".join(lines)


def write(folder, rows: pd.DataFrame, images: dict | None, size: int, demo: bool) -> str:
    """summary.csv, claims.csv, figure6.png and (with the images) pairs.png; returns the printed report."""
    summary, claims = summarise(rows), claim(rows)
    figures = {"figure6.png": lambda path: figure6(rows, path)}
    if images is not None:
        figures["pairs.png"] = lambda path: pairs_figure(rows, images, size, path)
    study.write(folder, summary, claims, figures)
    return format_report(rows, summary, claims, demo)


def figure6(rows: pd.DataFrame, path: Path) -> None:
    """The paper's Figure 6: |cos theta_alpha| against alpha for every pair, and their mean."""
    paths = np.stack([np.asarray(p, float) for p in rows["cos_path"]]) if len(rows) else np.zeros((0, 2))
    alphas = np.linspace(0, 1, paths.shape[1])
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for k, (_, row) in enumerate(rows.iterrows()):
        ax.plot(alphas, np.abs(paths[k]), lw=0.8, alpha=0.6, label=f"{row['source_name']} -> {row['target_name']}")
    if len(paths):
        ax.plot(alphas, np.mean(np.abs(paths), axis=0), "k", lw=2.2, label=f"mean of {len(paths)} pairs")
    ax.set_xlabel("alpha on x_alpha = alpha x_src + (1 - alpha) x_tgt")
    ax.set_ylabel("|cos theta_alpha|")
    ax.set_ylim(bottom=0)
    if len(rows) <= 8:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    plots.save(fig, path)


def pairs_figure(rows: pd.DataFrame, images: dict, size: int, path: Path, pairs: int = 6) -> None:
    """Each pair's source and target image as the model sees them, with the classes and L."""
    shown = rows.head(pairs)
    fig = Figure(figsize=(4.0, 2.0 * max(len(shown), 1)))
    axes = fig.subplots(max(len(shown), 1), 2, squeeze=False)
    for k, (_, row) in enumerate(shown.iterrows()):
        for j, (name, label) in enumerate(((row["source"], row["source_name"]), (row["target"], row["target_name"]))):
            axes[k, j].imshow(np.asarray(images[name]).reshape(size, size, -1))
            axes[k, j].set_title(f"{label}" + (f"\nL = {row['L']:.1f}" if j == 1 else ""), fontsize=7)
            axes[k, j].axis("off")
    plots.save(fig, path)
