"""Statistics of a sweep: per-cell means with standard errors, and log-log scaling fits.

Contract: plain functions of pandas/numpy data.
* `summarise_cell` -- n (finite trials), n_nonfinite, and `<m>_mean`, `<m>_se`
  for every metric. Trials with a NaN or inf in any metric are counted in
  n_nonfinite and left out of every mean: never silently averaged. Booleans
  are fractions with the binomial standard error.
* `mean_se` -- the mean and its standard error of a set of values.
* `interval` -- THE interval of every report: the mean of a sample, its standard
  error and the two-sided Student t-interval mean +- t_{(1+level)/2, n-1} se
  (NaN bounds below two values). Paired differences and claims use it too.
* `format_estimate` -- THE formatter of every report: "mean ± se" (± is always
  one standard error), "mean [low, high]" (brackets are always an interval),
  or both; "—" for a missing mean.
* `median_ci` -- a distribution-free interval for a median from order
  statistics: [x_(j), x_(n-j+1)] with P(Binomial(n, 1/2) < j) <= (1 - level)/2,
  so it covers the median with probability >= level for any continuous law.
* `describe` -- n (finite values), mean, se, median and its `median_ci`: one
  row of the MNIST and ImageNet summaries.
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
            mean, se = mean_se(values)
        out[f"{metric}_mean"] = mean
        out[f"{metric}_se"] = se
    return out


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """(mean, standard error of the mean); NaNs when there are too few values."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


class Interval(NamedTuple):
    mean: float
    se: float
    low: float  # the t-interval's bounds (NaN below two values)
    high: float
    n: int


def interval(values, level: float = 0.95) -> Interval:
    """The mean of `values`, its standard error and its two-sided Student t-interval at `level`."""
    values = np.asarray(values, float)
    mean, se = mean_se(values)
    half = float(t_half_width(se, len(values), level))
    return Interval(mean, se, mean - half, mean + half, len(values))


def t_half_width(se, n, level: float = 0.95):
    """`interval`'s half-width from a standard error and a sample size, for tables that hold only those
    (figures' error bars from summary rows); arrays welcome; NaN below n = 2."""
    n = np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        quantile = np.where(n > 1, stats.t.ppf((1 + level) / 2, np.maximum(n - 1, 1)), np.nan)
    return quantile * np.asarray(se, float)


def format_estimate(
    mean: float, se: float = math.nan, low: float = math.nan, high: float = math.nan, spec: str = ".4f", se_spec=None
) -> str:
    """'mean ± se [low, high]', leaving out what is NaN; `spec` formats the mean and bounds, `se_spec` the se."""
    if not np.isfinite(mean):
        return "—"
    text = f"{mean:{spec}}"
    if np.isfinite(se):
        text += f" ± {se:{se_spec or spec.lstrip('+ ')}}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:{spec}}, {high:{spec}}]"
    return text


def describe(values) -> dict[str, float]:
    """n, mean, se, median, median_low, median_high of the finite values."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    mean, se = mean_se(values)
    low, high = median_ci(values)
    median = float(np.median(values)) if len(values) else math.nan
    return {"n": len(values), "mean": mean, "se": se, "median": median, "median_low": low, "median_high": high}


def median_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(low, high) order-statistic interval for the median; NaNs when n is too small for `level`."""
    values = np.sort(np.asarray(values, float))
    n = len(values)
    j = int(stats.binom.ppf((1 - level) / 2, n, 0.5)) if n else 0  # P(B <= j - 1) < (1 - level) / 2
    if j < 1:
        return math.nan, math.nan
    return float(values[j - 1]), float(values[n - j])


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
