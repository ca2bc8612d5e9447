"""Sweep statistics: the log-log fit behind the README's slopes, and the one interval and formatter of every report."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from jaxfrag.stats import format_estimate, interval, loglog_fit, t_half_width


def textbook_fit(d, y):
    """Slope, its standard error and intercept of log y on log d, by the normal equations."""
    u, v = np.log(d), np.log(y)
    design = np.column_stack([np.ones_like(u), u])
    (intercept, slope), *_ = np.linalg.lstsq(design, v, rcond=None)
    residual = v - design @ [intercept, slope]
    se = np.sqrt(residual @ residual / (len(u) - 2) / np.sum((u - u.mean()) ** 2))
    return slope, se, intercept


@pytest.mark.parametrize("slope", [-0.5, -1.5, 0.25])
def test_loglog_fit_matches_least_squares_on_a_known_power_law(slope):
    rng = np.random.default_rng(int(100 * abs(slope)))
    d = np.arange(7, 65, 3, dtype=float)
    y = 2.0 * d**slope * np.exp(rng.normal(0, 0.05, d.size))
    fit = loglog_fit(d, y)
    expected_slope, expected_se, expected_intercept = textbook_fit(d, y)
    assert fit.slope == pytest.approx(expected_slope, rel=1e-10)
    assert fit.slope_se == pytest.approx(expected_se, rel=1e-10)
    assert fit.intercept == pytest.approx(expected_intercept, rel=1e-10)
    half = scipy_stats.t.ppf(0.975, d.size - 2) * expected_se
    assert (fit.ci_low, fit.ci_high) == pytest.approx((expected_slope - half, expected_slope + half), rel=1e-10)
    assert fit.points == d.size
    # 0.05 noise on 20 points: the slope lands within 4 standard errors of the truth.
    assert abs(fit.slope - slope) < 4 * fit.slope_se


def test_loglog_interval_covers_the_true_slope_at_its_level():
    # With 8 points (6 degrees of freedom) a normal-quantile interval would cover only ~90%.
    rng = np.random.default_rng(3)
    d = np.array([7, 9, 12, 16, 22, 30, 42, 64], float)
    datasets = 4000
    covered = 0
    for _ in range(datasets):
        fit = loglog_fit(d, d**-0.5 * np.exp(rng.normal(0, 0.1, d.size)))
        covered += fit.ci_low <= -0.5 <= fit.ci_high
    assert abs(covered / datasets - 0.95) < 4 * np.sqrt(0.95 * 0.05 / datasets)


def test_loglog_fit_drops_what_has_no_logarithm_and_refuses_too_few_points():
    d = np.array([8, 16, 32, 64], float)
    y = np.array([1.0, np.nan, 0.0, 0.125])  # only (8, 1) and (64, 1/8) have logarithms
    fit = loglog_fit(d, y)
    assert fit.points == 2 and fit.slope == pytest.approx(-1.0)
    assert np.isnan(fit.ci_low) and np.isnan(fit.ci_high)  # no degrees of freedom left for an interval
    assert np.isnan(loglog_fit(np.array([8.0, 8.0]), np.array([1.0, 2.0])).slope)  # one d: no slope


@pytest.mark.parametrize("n", [2, 5, 40])
def test_interval_is_the_student_t_interval_of_the_mean(n):
    rng = np.random.default_rng(n)
    values = rng.normal(1.0, 2.0, n)
    got = interval(values)
    low, high = scipy_stats.t.interval(0.95, n - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    assert got.n == n and got.mean == pytest.approx(values.mean(), rel=1e-12)
    assert got.se == pytest.approx(scipy_stats.sem(values), rel=1e-12)
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-12)
    assert t_half_width(got.se, n) == pytest.approx(high - values.mean(), rel=1e-12)


def test_interval_covers_the_mean_at_its_level_with_few_values():
    # Five values (4 degrees of freedom): a normal-quantile interval (+- 1.96 se) would cover only ~88%.
    rng = np.random.default_rng(7)
    samples = rng.normal(3.0, 1.0, (4000, 5))
    covered = np.mean([(lambda i: i.low <= 3.0 <= i.high)(interval(s)) for s in samples])
    assert abs(covered - 0.95) < 4 * np.sqrt(0.95 * 0.05 / len(samples))


def test_interval_of_fewer_than_two_values_has_no_bounds():
    one, none = interval([2.5]), interval([])
    assert one.mean == 2.5 and np.isnan(one.low) and np.isnan(one.high)
    assert np.isnan(none.mean) and none.n == 0
    assert np.isnan(t_half_width(0.1, 1))


def test_format_estimate_writes_plus_minus_as_the_se_and_brackets_as_the_interval():
    assert format_estimate(0.12345, 0.0123) == "0.1235 ± 0.0123"
    assert format_estimate(0.12345, low=0.1, high=0.2, spec="+.2f") == "+0.12 [+0.10, +0.20]"
    assert format_estimate(-1.5, 0.25, -2.0, -1.0, spec="+.3f") == "-1.500 ± 0.250 [-2.000, -1.000]"
    assert format_estimate(123.456, 1.234, spec=".4g", se_spec=".2g") == "123.5 ± 1.2"
    assert format_estimate(0.5) == "0.5000" and format_estimate(float("nan"), 0.1) == "—"
