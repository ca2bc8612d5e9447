"""Statistics of a sweep: per-cell means with standard errors, and log-log scaling fits.

Contract: plain functions of pandas/numpy data.
* `summarise_cell` -- n (finite trials), n_nonfinite, and `<m>_mean`, `<m>_se`
  for every metric. Trials with a NaN or inf in any metric are counted in
  n_nonfinite and left out of every mean: never silently averaged. Booleans
  are fractions with the binomial standard error.
* `loglog_fit` -- least-squares line through (log d, log mean) with
  `scipy.stats.linregress`, its slope's standard error and 95% t-interval.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats


def nonfinite_rows(columns: dict[str, np.ndarray]) -> np.ndarray:
    """True for trials with a NaN or inf in any float metric."""
    flags = [~np.isfinite(v) for v in columns.values() if np.issubdtype(np.asarray(v).dtype, np.floating)]
    if not flags:
        return np.zeros(len(next(iter(columns.values()))), bool)
    return np.any(flags, axis=0)


def summarise_cell(rows: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
    finite = rows[~rows["nonfinite"].astype(bool)]
    n = len(finite)
    out: dict[str, float] = {"n": n, "n_nonfinite": int(len(rows) - n)}
    for metric in metrics:
        values = finite[metric].to_numpy(dtype=float)
        if n == 0:
            mean, se = math.nan, math.nan
        elif finite[metric].dtype == bool:
            mean = float(values.mean())
            se = math.sqrt(mean * (1 - mean) / n)
        else:
            mean = float(values.mean())
            se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out[f"{metric}_mean"] = mean
        out[f"{metric}_se"] = se
    return out


class Fit(NamedTuple):
    slope: float
    slope_se: float
    ci_low: float
    ci_high: float
    intercept: float
    points: int


def loglog_fit(d: np.ndarray, y: np.ndarray) -> Fit:
    """Fit log y = intercept + slope log d; the interval is slope +- t_{0.975, n-2} * se."""
    d, y = np.asarray(d, float), np.asarray(y, float)
    keep = np.isfinite(y) & (y > 0) & (d > 0)
    d, y = d[keep], y[keep]
    if len(np.unique(d)) < 2:
        return Fit(math.nan, math.nan, math.nan, math.nan, math.nan, len(d))
    result = stats.linregress(np.log(d), np.log(y))
    if len(d) > 2:
        half = stats.t.ppf(0.975, len(d) - 2) * result.stderr
    else:
        half = math.nan
    return Fit(
        float(result.slope),
        float(result.stderr),
        result.slope - half,
        result.slope + half,
        float(result.intercept),
        len(d),
    )
