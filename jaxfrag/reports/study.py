"""What the study reports (`reports.mnist`, `reports.imagenet`) share: their summary rows and their files.

Contract:
* `numeric_columns(rows, keys)` -- the numeric (and boolean) columns that are not keys.
* `describe(rows, keys, group, mask_rule, subset)` -- one summary.csv record per numeric column, in
  the layout both studies share: `group` ("all", or one network's index), `mask_rule` (MNIST's rule;
  "" for ImageNet), `subset` ("all", or which 7s), the metric, and `stats.describe` of its finite
  values (n, mean, se, median and its 95% interval).
* `write(folder, summary, claims, figures)` -- summary.csv, claims.csv and each figure
  (name -> draw(path)), all atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from jaxfrag import stats, store


def numeric_columns(rows: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    return [c for c in rows.columns if c not in keys and pd.api.types.is_numeric_dtype(rows[c])]


SUMMARY_KEYS = ("group", "mask_rule", "subset", "metric")


def describe(
    rows: pd.DataFrame, keys: tuple[str, ...], group: str = "all", mask_rule: str = "", subset: str = "all"
) -> list[dict]:
    where = dict(zip(SUMMARY_KEYS, (group, mask_rule, subset), strict=False))
    return [
        {**where, "metric": column, **stats.describe(rows[column].to_numpy(dtype=float))}
        for column in numeric_columns(rows, keys)
    ]


def write(
    folder: store.RunFolder, summary: pd.DataFrame, claims: pd.DataFrame, figures: dict[str, Callable[[Path], None]]
) -> None:
    folder.write_summary(summary)
    store.atomic_write_text(folder.path / "claims.csv", claims.to_csv(index=False))
    for name, draw in figures.items():
        draw(folder.figure_path(name))
