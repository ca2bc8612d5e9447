"""Tables 7-8 and Figure 6 of the ImageNet experiment (`jaxfrag.imagenet`), from its rows alone.

Contract:
* `summarise(rows)` -- for every numeric column, over pairs: n (finite values), mean, se,
  median and its distribution-free 95% interval (`stats.median_ci`).
* `claim(rows)` -- the paper's claim |M/(0.5L)| ~ Q/(0.5L), per Q (Kurakin's, the targeted and
  the untargeted minimal L2): the means of both sides, their ratio, and the paired difference's
  mean with its 95% t-interval (NaN below 3 pairs).
* `format_report(rows, summary, demo)` -- Tables 7 and 8 beside the paper's four experiments:
  each pair as a column when there are at most `PAIR_COLUMNS`, and the mean with its SE.
* `write(folder, rows, setup, demo)` -- summary.csv, claims.csv, figures/figure6.png and
  figures/pairs.png; returns the printed report.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from jaxfrag import stats
from jaxfrag.experiments.imagenet import ALPHA_TABLE

PAIR_COLUMNS = 6  # pairs printed one by one in the tables; beyond, only their mean
KEYS = ("pair", "source", "target", "source_class", "target_class", "source_name", "target_name")
QS = {"Q_ll": "Kurakin (the paper's Q)", "Q_l2_targeted": "minimal L2, targeted", "Q_l2": "minimal L2, untargeted"}


def _numeric(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in KEYS and c != "cos_path" and pd.api.types.is_numeric_dtype(rows[c])]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    records = [{"metric": c, **stats.describe(rows[c].to_numpy(dtype=float))} for c in _numeric(rows)]
    return pd.DataFrame.from_records(records)


def claim(rows: pd.DataFrame) -> pd.DataFrame:
    records = []
    m = np.abs(rows["M_ratio"].to_numpy(float))
    for q, label in QS.items():
        ratio = rows[f"{q}_ratio"].to_numpy(float)
        usable = np.isfinite(m) & np.isfinite(ratio) & rows[f"{q}_success"].to_numpy(bool)
        difference = m[usable] - ratio[usable]
        n = int(usable.sum())
        mean = float(difference.mean()) if n else math.nan
        half = float(sps.t.ppf(0.975, n - 1) * difference.std(ddof=1) / math.sqrt(n)) if n >= 3 else math.nan
        records.append(
            {
                "Q": q,
                "attack": label,
                "n": n,
                "abs_M_ratio_mean": float(m[usable].mean()) if n else math.nan,
                "Q_ratio_mean": float(ratio[usable].mean()) if n else math.nan,
                "M_over_Q": float(m[usable].mean() / ratio[usable].mean()) if n else math.nan,
                "difference_mean": mean,
                "difference_low": mean - half,
                "difference_high": mean + half,
            }
        )
    return pd.DataFrame.from_records(records)


def _mean_cell(summary: pd.DataFrame, metric: str, digits: int = 4) -> str:
    row = summary[summary["metric"] == metric]
    if row.empty or not np.isfinite(row["mean"].iloc[0]):
        return "-"
    mean, se, n = row["mean"].iloc[0], row["se"].iloc[0], int(row["n"].iloc[0])
    spread = f" ± {se:.{digits}f}" if np.isfinite(se) else ""
    return f"{mean:+.{digits}f}{spread} (n {n})"


def format_report(rows: pd.DataFrame, summary: pd.DataFrame, claims: pd.DataFrame, demo: bool) -> str:
    from jaxfrag.imagenet import PAPER_TABLE7, PAPER_TABLE7_AVERAGE, PAPER_TABLE8

    shown = rows.head(PAIR_COLUMNS)
    lines = []
    if demo:
        lines.append(
            "DEMO: scikit-image's photographs, paired by the model's own confident classes. These are NOT the "
            "paper's English springer / Afghan hound pairs; pass --images SOURCE_DIR TARGET_DIR for those."
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
        interval = (
            f"[{c['difference_low']:+.4f}, {c['difference_high']:+.4f}]" if np.isfinite(c["difference_low"]) else "-"
        )
        lines.append(
            f"  {c['attack']:<24} |M/(0.5L)| {c['abs_M_ratio_mean']:.4f} vs Q/(0.5L) {c['Q_ratio_mean']:.4f}: "
            f"ratio {c['M_over_Q']:.2f}, difference {c['difference_mean']:+.4f} {interval} (n {c['n']})"
        )
    return "\n".join(lines)


def write(folder, rows: pd.DataFrame, setup, demo: bool) -> str:
    from jaxfrag import plots, store

    summary = summarise(rows)
    claims = claim(rows)
    folder.write_summary(summary)
    store.atomic_write_text(folder.path / "claims.csv", claims.to_csv(index=False))
    plots.imagenet_figure6(rows, folder.figure_path("figure6.png"))
    if setup is not None:
        size = setup.model_info["size"]
        plots.imagenet_pairs(rows, setup.images, size, folder.figure_path("pairs.png"))
    return format_report(rows, summary, claims, demo)
