"""What the study reports (`reports.mnist`, `reports.imagenet`) share: their summary rows and their files.

Contract:
* `numeric_columns(rows, keys)` -- the numeric (and boolean) columns that are not keys.
* `describe(rows, keys, **where)` -- one summary.csv record per numeric column: `where`, the metric,
  and `stats.describe` of its finite values (n, mean, se, median and its 95% interval).
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


def describe(rows: pd.DataFrame, keys: tuple[str, ...], **where) -> list[dict]:
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
