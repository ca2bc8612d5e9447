"""Intervals that stay valid however often the data are looked at, and the fixed-n ones beside them.

A 95% t-interval is valid when it is computed once, at a sample size fixed in advance. An engine
that adds trials and looks again after every batch until a claim is decided would, with t-intervals,
stop at the first look where chance put the interval inside the band: its error grows with the
number of looks. A confidence sequence covers the truth at every sample size at once, with
probability at least 1 - alpha, so stopping whenever one likes keeps the error at alpha.

Contract (every function is numpy, vectorised over its array arguments):
* `mixture_half_width(spread, n, alpha, n_opt=N_OPT)`: the half-width at n samples of the two-sided
  normal-mixture confidence sequence for a mean, in its asymptotic form (Howard, Ramdas, McAuliffe
  and Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
  49(2), eq. (14); Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas 2024, "Time-uniform central limit
  theory and asymptotic confidence sequences", Ann. Statist., Theorem 2.2):

      spread * sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * log( sqrt(n rho^2 + 1) / alpha ) ),
      rho^2 = ( 2 log(1/alpha) + log(1 + 2 log(1/alpha)) ) / n_opt,

  where `spread` is the per-sample standard deviation (a standard error times sqrt(n)). It is the
  level-1/alpha crossing of the martingale that mixes exp(l S_n - l^2 V_n / 2) over l ~ N(0, rho^2)
  (V_n = n spread^2), so by Ville's inequality it is crossed at ANY n with probability <= alpha;
  rho is fixed in advance (`N_OPT`), never from the data. It applies to every estimate that is,
  to first order, a mean of independent samples with a standard error (a difference of two means,
  a smooth function of per-d means such as a log-log slope), with n the samples it rests on.
* `fixed_half_width(se, df, alpha)`: the fixed-n interval's half-width, t_{1-alpha/2, df} * se
  (df = inf: the normal quantile).
* `dkw_epsilon(n, alpha, anytime)`: a bound eps with P(sup_x |F_n(x) - F(x)| > eps) <= alpha for
  the empirical distribution function of n independent samples: Massart's DKW inequality
  (Massart 1990) sqrt(log(2/alpha) / (2n)) at one fixed n; anytime, the same at every n with
  alpha_n = alpha / (n (n + 1)), whose sum over n = 1, 2, ... is alpha (a union bound over every
  sample size, so it holds however the sample size was chosen).
* `smallest_n(half_width, reach, n_from, n_max)`: the smallest n in [n_from, n_max] at which the
  decreasing function half_width(n) is at most `reach`, by bisection; None when it is not by n_max.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

N_OPT = 100  # samples at which the mixture boundary is tightest: within 1.3-1.9x the t-interval from 10 to 30 000


def mixture_rho2(alpha, n_opt: float = N_OPT):
    """The mixture's variance rho^2 that makes its boundary about tightest at n_opt samples."""
    log_inv = np.log(1 / np.asarray(alpha, float))
    return (2 * log_inv + np.log1p(2 * log_inv)) / n_opt


def mixture_half_width(spread, n, alpha, n_opt: float = N_OPT):
    """Half-width of the two-sided normal-mixture confidence sequence at n samples (module docstring)."""
    spread, n, alpha = (np.asarray(v, float) for v in (spread, n, alpha))
    rho2 = mixture_rho2(alpha, n_opt)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = spread * np.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
    return np.where(n >= 1, width, np.inf)


def fixed_half_width(se, df, alpha):
    """t_{1 - alpha/2, df} * se: the fixed-n two-sided interval (df inf: the normal's quantile)."""
    se, df, alpha = (np.asarray(v, float) for v in (se, df, alpha))
    with np.errstate(invalid="ignore"):
        quantile = np.where(np.isinf(df), stats.norm.ppf(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, np.maximum(df, 1)))
    return np.where(df >= 1, quantile * se, np.nan)


def dkw_epsilon(n, alpha, anytime: bool = True):
    """sup-distance bound between an empirical distribution function of n samples and its law (module docstring)."""
    n, alpha = np.asarray(n, float), np.asarray(alpha, float)
    spent = alpha / (n * (n + 1)) if anytime else alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 1, np.sqrt(np.log(2 / spent) / (2 * n)), np.inf)


def smallest_n(half_width, reach: float, n_from: int, n_max: int) -> int | None:
    """The smallest integer n in [n_from, n_max] with half_width(n) <= reach (half_width decreasing
    from n_from on); None when even n_max does not reach."""
    if not math.isfinite(reach) or reach <= 0 or float(half_width(n_max)) > reach:
        return None
    if float(half_width(n_from)) <= reach:
        return int(n_from)
    low, high = int(n_from), int(n_max)  # half_width(low) > reach >= half_width(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if float(half_width(middle)) > reach else (low, middle)
    return high
