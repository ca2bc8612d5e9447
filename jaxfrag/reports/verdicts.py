"""The verdict ledger: every claim of the paper a run folder can decide, with one rule for every verdict.

Contract:
* `judge(relation, target, tolerance, low, high, n)` is THE rule, from equivalence testing (Lakens
  2017; Wellek 2010), applied to every case of every claim: a case resting on fewer than
  `MIN_SAMPLES` independent samples (trials, networks, images, pairs), or with no interval, is
  "untested: too few samples"; otherwise it *holds* when its interval lies inside the claim's band
  (target ± tolerance for "="; at or below target + tolerance for "<=", at or above target - tolerance
  for ">=", the tolerance being a non-inferiority margin), *fails* when the interval lies wholly
  outside the band, and is *undecided* when it crosses an edge: the data then show nothing either way.
* A claim is a family: its cases share one error budget. Every case's interval is at level
  1 - `FAMILY_ALPHA` / k for a claim of k cases (Bonferroni), so with probability >= 95% every interval
  of the claim covers its truth at once, and then no verdict of the claim is wrong.
* The intervals are anytime-valid (`jaxfrag.anytime`: the normal-mixture confidence sequence; for
  Lemma 3's distance, the DKW band at every n), so they stay valid when the engine looks again after
  every batch of trials; `interval="fixed"` gives the fixed-n ones (Student t, DKW at one n) for a
  one-shot run. `Claim.interval` says which; `case_interval(claim, case)` computes it from the
  case's estimate, standard error and n.
* `verdict(claims)` joins a claim's cases: every tested case holds -> "holds", every one fails ->
  "fails", some hold and some fail -> "holds only under stated conditions" (naming them); otherwise
  (a case undecided, none both holding and failing) -> "undecided"; no case tested -> untested.
* `to_decide(claim, case)`: for an undecided case, the samples that would decide it if its estimate
  and spread stayed as they are, and the trials and seconds that costs at the rate its run measured;
  None where more than `MAX_GROWTH` times today's samples would be needed (its estimate sits on the
  band's edge).
* Certified brackets: a case that rests on attacked norms, from a run that certified a lower bound
  on each (`jaxfrag sweep --certify`), carries `ends`: the same statistic, with its standard error,
  at the lowest and the highest value it can take when each attacked norm is anywhere in its bracket
  [certified, attacked]. The true minimal perturbations give a value between the two. `judge` is
  applied again at each end (`bracket_verdicts`): where both agree with the verdict, and a case
  that fails fails on the same side of the band at both (`straddling`: one below and one above
  leaves the band inside the bracket), it does not depend on how short the attack was. A claim
  without ends says why in `unbracketed`.
* `claims(path)` reads one run folder (a sweep, a grid, an mnist or an imagenet run) and returns its
  `Claim`s; `ledger(paths)` the claims of several folders in the paper's order; `write(out, claims)`
  writes verdicts.csv (one row per claim), verdict_cases.csv (one row per case) and verdicts.md.

"≈" in the paper is read as equality within `APPROX_TOLERANCE` on the scale every compared quantity
shares: a fraction of the optimal classifier's robustness (|cos θ|, φ, ρ, δ/m, Q/(0.5L), M/(0.5L)).
A scaling claim ("falls like d^(-1/2) or faster") is a bound on the least-squares slope of log mean
gap against log d, with the margin `SLOPE_MARGIN`; its standard error is the sampling error of the
per-d means (delta method), which more trials shrink.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from jaxfrag import anytime, grid, stats, store
from jaxfrag.config import Config
from jaxfrag.experiments import imagenet as imagenet_experiment
from jaxfrag.experiments import linear, relu
from jaxfrag.experiments import mnist as mnist_experiment

MIN_SAMPLES = 10  # below this many independent samples a case is untested, whatever its interval says
APPROX_TOLERANCE = 0.05  # the paper's "≈": within 0.05 of the optimal robustness (see the module docstring)
SLOPE_MARGIN = 0.05  # "falls like d^(-1/2) or faster" holds when the slope is at most -0.5 + this
KS_TOLERANCE = 0.1  # Lemma 3's identity: the two laws' Kolmogorov-Smirnov distance at most this, per entry of R
FAMILY_ALPHA = 0.05  # each claim's family-wise error
MAX_GROWTH = 100  # to_decide gives up beyond this many times a case's samples
HOLDS, FAILS, UNTESTED = "holds", "fails", "untested: too few samples"
UNDECIDED = "undecided"
CONDITIONAL = "holds only under stated conditions"
VERDICTS = (HOLDS, CONDITIONAL, FAILS, UNDECIDED, UNTESTED)
RELATIONS = ("=", "<=", ">=")
ANYTIME, FIXED = "anytime", "fixed"
INTERVALS = (ANYTIME, FIXED)
NORMAL, DISTANCE = "normal", "distance"  # Case.kind
LISTED = 8  # cases a claim's conditions name one by one (verdict_cases.csv has them all)
CSV_COLUMNS = (
    "order", "claim", "statement", "paper", "statistic", "relation", "target", "tolerance",
    "estimate", "low", "high", "n", "verdict", "conditions", "brackets", "interval", "cases", "to_decide",
    "command", "run",
)
ENDS = ("lowest", "highest")  # verdict_cases.csv's columns <end>_estimate, <end>_se, <end>_low, <end>_high


class Case(NamedTuple):
    """One estimate a claim is judged on: where it was measured, the value, its standard error, n."""

    where: str
    estimate: float
    se: float  # its standard error (NaN where it has none); a DISTANCE case has none
    n: int  # the independent samples it rests on
    # The statistic at the lowest and the highest value the certified brackets allow (module
    # docstring), each a Case of its own; None where the case rests on no bracketed attack.
    ends: tuple[Case, Case] | None = None
    df: float = math.inf  # degrees of freedom of the fixed-n t-interval (inf: the normal's quantile)
    kind: str = NORMAL  # NORMAL: estimate ± a multiple of se; DISTANCE: a KS distance, bounded by DKW bands
    entries: int = 1  # DISTANCE: the distances it is the largest of (each band holds for all at once)
    trials: int = 0  # what the run spent to get the n samples: trials (nets, 7s, pairs)...
    cost_s: float = math.nan  # ... and seconds
    unit: str = "samples"  # what one of the n samples is, for "about N more <unit>"
    # The cells whose trials it rests on, as "RUN|CELL/d=D" (a sweep's; `jaxfrag decide` extends them).
    cells: tuple[str, ...] = ()


class Claim(NamedTuple):
    order: float  # the paper's order (section, table), for sorting several runs' claims
    claim: str  # "Theorem 1", "Table 2", "Beyond the paper: ..."
    statement: str  # what the paper (or the grid's question) says, in one line
    paper: str  # the paper's own value, as it reports it
    statistic: str  # what we estimate, and over which samples
    relation: str  # "=", "<=" or ">="
    target: float
    tolerance: float
    cases: tuple[Case, ...]
    command: str
    run: str
    unbracketed: str = ""  # why no case has certified ends ("" where some case has them, or no attack is involved)
    interval: str = ANYTIME  # ANYTIME (confidence sequences) or FIXED (fixed-n intervals)


NO_ATTACK = "rests on no attack's norm"
NOT_CERTIFIED = "not certified: the run was made without --certify"
ONNX_NOT_CERTIFIED = (
    "not certified: on EfficientNet-Lite0 interval bounds certify about 10^-9 of the attack's norm, and "
    "CROWN's hidden bounds would take up to days per radius (docs/results/imagenet.md)"
)
# Why a claim has no certified ends, by its title ("" where its robustness is exact): the claims'
# own, and what a stored ledger reads back for a claim without ends (written before certified
# brackets, its relu runs had none).
UNBRACKETED = {
    "Table 3 (Theorem 7)": NO_ATTACK,
    "Table 4 (Theorem 7)": NOT_CERTIFIED,
    "Table 5 (compression)": NOT_CERTIFIED,
    "Table 5 (path length)": NOT_CERTIFIED,
    "Table 6": NO_ATTACK,
    "Table 7 and Figure 6": NO_ATTACK,
    "Table 8": ONNX_NOT_CERTIFIED,
    "Beyond the paper: Theorem 7's relation": NOT_CERTIFIED,
    "Beyond the paper: trained ReLU gap": NOT_CERTIFIED,
}


def judge(relation: str, target: float, tolerance: float, low: float, high: float, n: int) -> str:
    """The one rule from an interval to a verdict (the module docstring states it)."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    if n < MIN_SAMPLES or np.isnan(low) or np.isnan(high):
        return UNTESTED
    bottom = target - tolerance if relation in ("=", ">=") else -math.inf
    top = target + tolerance if relation in ("=", "<=") else math.inf
    if bottom <= low and high <= top:
        return HOLDS
    if high < bottom or low > top:
        return FAILS
    return UNDECIDED


def case_alpha(claim: Claim) -> float:
    """Each case's error: the claim's family-wise error shared by its cases (Bonferroni)."""
    return FAMILY_ALPHA / max(len(claim.cases), 1)


def interval_of(case: Case, alpha: float, kind: str = ANYTIME) -> tuple[float, float]:
    """(low, high) of a case at level 1 - alpha: anytime-valid or fixed-n (`jaxfrag.anytime`)."""
    if kind not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {kind!r}")
    if case.kind == DISTANCE:
        # Every entry's two empirical distribution functions within eps of their laws at once (2 x
        # entries bands), so each distance, and their largest, within 2 eps of the observed.
        eps = float(anytime.dkw_epsilon(case.n, alpha / (2 * case.entries), anytime=kind == ANYTIME))
        return max(0.0, case.estimate - 2 * eps), case.estimate + 2 * eps
    if not (np.isfinite(case.estimate) and np.isfinite(case.se)) or case.n < 2:
        return math.nan, math.nan
    if kind == ANYTIME:
        half = float(anytime.mixture_half_width(case.se * math.sqrt(case.n), case.n, alpha))
    else:
        half = float(anytime.fixed_half_width(case.se, case.df, alpha))
    return case.estimate - half, case.estimate + half


def case_interval(claim: Claim, case: Case) -> tuple[float, float]:
    """A case's interval as its claim judges it: the claim's kind, at the family's level."""
    return interval_of(case, case_alpha(claim), claim.interval)


def case_verdict(claim: Claim, case: Case) -> str:
    return judge(claim.relation, claim.target, claim.tolerance, *case_interval(claim, case), case.n)


def case_verdicts(claim: Claim) -> list[str]:
    return [case_verdict(claim, case) for case in claim.cases]


def _named(cases: list[str]) -> str:
    return "; ".join(cases[:LISTED]) + (f"; and {len(cases) - LISTED} more" if len(cases) > LISTED else "")


def verdict(claim: Claim) -> tuple[str, str]:
    """(verdict, conditions) of a claim from its cases' verdicts (the module docstring states the rule)."""
    judged = list(zip(claim.cases, case_verdicts(claim), strict=True))
    by = {v: [case.where for case, w in judged if w == v] for v in (HOLDS, FAILS, UNDECIDED, UNTESTED)}
    held, failed, undecided, untested = by[HOLDS], by[FAILS], by[UNDECIDED], by[UNTESTED]
    tested = len(held) + len(failed) + len(undecided)
    if not tested:
        return UNTESTED, ""
    notes = []
    if held and failed:
        # The shorter list is named case by case (up to LISTED), the longer one counted.
        (few_word, few), (many_word, many) = sorted((("holds", held), ("fails", failed)), key=lambda p: len(p[1]))
        notes.append(f"{few_word} at {len(few)} of {tested} cases ({_named(few)}); {many_word} at {len(many)}")
    elif undecided and (held or failed):
        word, decided = ("holds", held) if held else ("fails", failed)
        notes.append(f"{word} at {len(decided)} of {tested} cases")
    if undecided and (held or failed):
        notes.append(f"undecided at {len(undecided)} ({_named(undecided)})")
    if untested:
        notes.append(f"untested at {len(untested)} (too few samples)")
    if held and failed:
        decided = CONDITIONAL
    elif undecided:
        decided = UNDECIDED
    else:
        decided = HOLDS if held else FAILS
    return decided, ". ".join(notes)


class Decision(NamedTuple):
    """What would decide an undecided case at its estimate and spread (`to_decide`)."""

    n: int  # the samples it would need in all
    more: int  # more than today's
    trials: float  # the run's trials (nets, 7s, pairs) that would take, at its yield; NaN if unknown
    seconds: float  # and their time, at the rate the run measured; NaN if unknown


def _half_width(claim: Claim, case: Case, n: float) -> float:
    """The case's interval half-width at n samples, if its estimate and spread stayed as they are."""
    alpha = case_alpha(claim)
    if case.kind == DISTANCE:
        eps = float(anytime.dkw_epsilon(n, alpha / (2 * case.entries), anytime=claim.interval == ANYTIME))
        return 2 * eps
    spread = case.se * math.sqrt(case.n)
    if claim.interval == ANYTIME:
        return float(anytime.mixture_half_width(spread, n, alpha))
    df = case.df if math.isinf(case.df) else case.df + (n - case.n)
    return float(anytime.fixed_half_width(spread / math.sqrt(n), df, alpha))


def to_decide(claim: Claim, case: Case) -> Decision | None:
    """The samples that would decide an undecided case (module docstring); None beyond `MAX_GROWTH` times today's."""
    bottom = claim.target - claim.tolerance if claim.relation in ("=", ">=") else -math.inf
    top = claim.target + claim.tolerance if claim.relation in ("=", "<=") else math.inf
    estimate = case.estimate
    if case.kind == DISTANCE and case_interval(claim, case)[0] == 0:
        # Indistinguishable from laws that agree, whose observed distance shrinks like 1/sqrt(n): it and
        # the bands must fit under top.
        width = lambda n: estimate * math.sqrt(case.n / n) + _half_width(claim, case, n)  # noqa: E731
        reach = top
    else:
        width = lambda n: _half_width(claim, case, n)  # noqa: E731
        inside = bottom <= estimate <= top
        reach = min(estimate - bottom, top - estimate) if inside else min(abs(estimate - bottom), abs(estimate - top))
    if not np.isfinite(estimate) or case.n < 2:
        return None
    n = anytime.smallest_n(width, float(reach), case.n, MAX_GROWTH * case.n)
    if n is None:
        return None
    growth = n / case.n - 1
    trials = case.trials * growth if case.trials else math.nan
    return Decision(n, n - case.n, trials, case.cost_s * growth)


def decision_text(claim: Claim, case: Case) -> str:
    """'about 40 more nets that fit (about 96 trials), about 3 min', or why none is affordable."""
    found = to_decide(claim, case)
    if found is None:
        return (
            f"the estimate sits on the band's edge: more than {MAX_GROWTH} times today's {case.n} {case.unit} "
            "would not decide it"
        )
    text = f"about {found.more} more {case.unit}"
    if np.isfinite(found.trials) and case.unit != "trials" and math.ceil(found.trials) != found.more:
        text += f" (about {math.ceil(found.trials)} trials)"
    if np.isfinite(found.seconds):
        text += f", about {_duration(found.seconds)}"
    return text


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return "1 min"
    if minutes < 120:
        return f"{math.ceil(minutes)} min"
    return f"{minutes / 60:.1f} h"


def undecided_text(claim: Claim) -> str:
    """verdicts.csv's `to_decide`: each undecided case with what would decide it ('' where none is undecided)."""
    cases = [case for case, v in zip(claim.cases, case_verdicts(claim), strict=True) if v == UNDECIDED]
    if not cases:
        return ""
    parts = [f"{case.where}: {decision_text(claim, case)}" for case in cases[:LISTED]]
    more = f"; and {len(cases) - LISTED} more (verdict_cases.csv)" if len(cases) > LISTED else ""
    return f"{claim.claim}: " + "; ".join(parts) + more


def _at_end(claim: Claim, side: int) -> Claim:
    """The claim with every case at its lowest (side 0) or highest (1) end; a case without ends stays."""
    return claim._replace(cases=tuple(case.ends[side] if case.ends else case for case in claim.cases))


def bracket_verdicts(claim: Claim) -> tuple[str, str] | None:
    """The claim's verdict with every case at its lowest end, and at its highest; None when no case has ends."""
    if not any(case.ends for case in claim.cases):
        return None
    return verdict(_at_end(claim, 0))[0], verdict(_at_end(claim, 1))[0]


def _failed_side(claim: Claim, case: Case) -> int:
    """-1 where the case's interval lies below the paper's band, +1 above, 0 where it does not fail."""
    if case_verdict(claim, case) != FAILS:
        return 0
    return -1 if case_interval(claim, case)[1] < claim.target - claim.tolerance else 1


def straddling(claim: Claim) -> list[Case]:
    """The cases that fail below the band at one end of their brackets and above it at the other: the
    true value lies between the ends, so it may be in the band, and neither end's verdict is the truth's."""
    return [
        case for case in claim.cases
        if case.ends and _failed_side(claim, case.ends[0]) * _failed_side(claim, case.ends[1]) < 0
    ]  # fmt: skip


def brackets_text(claim: Claim) -> str:
    """verdicts.csv's `brackets`: the verdict at both ends of the certified brackets, and the range of
    the headline case; else why there are none."""
    ends = bracket_verdicts(claim)
    if ends is None:
        return claim.unbracketed
    case = headline(claim)
    span = ""
    if case.ends:
        span = f" (headline case: {case.ends[0].estimate:+.3f} to {case.ends[1].estimate:+.3f})"
    judged = [case_verdicts(claim), case_verdicts(_at_end(claim, 0)), case_verdicts(_at_end(claim, 1))]
    open_cases = straddling(claim)
    if open_cases:
        return (
            f"open: {len(open_cases)} case(s) fail below the band at one end of the brackets and above it at "
            f"the other, so the truth may lie in it ({_named([c.where for c in open_cases])}){span}"
        )
    if judged[0] == judged[1] == judged[2]:
        return f"{verdict(claim)[0]} at both ends, case by case{span}"

    def counted(side: int) -> str:
        tested = [v for v in judged[side + 1] if v != UNTESTED]
        undecided = f", undecided at {tested.count(UNDECIDED)}" if UNDECIDED in tested else ""
        return f"{ends[side]} (fails at {tested.count(FAILS)}{undecided} of {len(tested)})"

    return f"at the lowest: {counted(0)}; at the highest: {counted(1)}{span}"


def headline(claim: Claim) -> Case:
    """The case a one-row summary shows: the tested case farthest from the paper's band (the whole
    claim's weakest point), else the largest."""
    judged = list(zip(claim.cases, case_verdicts(claim), strict=True))
    tested = [case for case, v in judged if v != UNTESTED] or list(claim.cases)

    def distance(case: Case) -> float:
        if not np.isfinite(case.estimate):
            return -math.inf
        return abs(case.estimate - claim.target)

    if any(np.isfinite(c.estimate) for c in tested):
        return max(tested, key=distance)
    return max(tested, key=lambda case: case.n)


# ---- estimates with their standard errors ---------------------------------------------------------


def mean_case(where: str, values) -> Case:
    """The mean of the finite values, its standard error, n and the t-interval's n - 1 degrees of freedom."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    mean, se = stats.mean_se(values)
    return Case(where, mean, se, len(values), df=float(max(len(values) - 1, 0)))


def difference_case(where: str, first, second) -> Case:
    """mean(first) - mean(second) for two independent groups, with Welch's standard error and degrees
    of freedom; n is the smaller group (the one the interval rests on)."""
    first, second = (np.asarray(v, float) for v in (first, second))
    first, second = first[np.isfinite(first)], second[np.isfinite(second)]
    n = min(len(first), len(second))
    if n < 2:
        return Case(where, math.nan, math.nan, n)
    parts = first.var(ddof=1) / len(first), second.var(ddof=1) / len(second)
    se = math.sqrt(sum(parts))
    df = sum(parts) ** 2 / (parts[0] ** 2 / (len(first) - 1) + parts[1] ** 2 / (len(second) - 1)) if se else math.inf
    return Case(where, float(first.mean() - second.mean()), se, n, df=df)


def slope_weights(d) -> np.ndarray:
    """w with sum_i w_i log(mean_i) the least-squares slope of log mean against log d."""
    x = np.log(np.asarray(d, float))
    return (x - x.mean()) / np.sum((x - x.mean()) ** 2)


def slope_case(where: str, d, means, ses, n: int) -> Case:
    """The least-squares slope of log(per-d mean) against log d, with its sampling standard error by the
    delta method, sqrt(sum_i w_i^2 (se_i / mean_i)^2) (`slope_weights`); NaN below 3 values of d or
    with a mean that is not positive."""
    d, means, ses = (np.asarray(v, float) for v in (d, means, ses))
    if len(np.unique(d)) < 3 or not np.all(np.isfinite(means) & (means > 0) & np.isfinite(ses)):
        return Case(where, math.nan, math.nan, int(n))
    weights = slope_weights(d)
    slope = float(np.sum(weights * np.log(means)))
    se = float(np.sqrt(np.sum((weights * ses / means) ** 2)))
    return Case(where, slope, se, int(n))


def bracketed_mean_case(where: str, attacked, certified) -> Case:
    """mean_case of per-sample values computed from attacked norms, with the ends the certified values
    allow: each sample's value may be anywhere between its two (a mean is monotone in each)."""
    attacked, certified = np.asarray(attacked, float), np.asarray(certified, float)
    return mean_case(where, attacked)._replace(
        ends=(
            mean_case(where, np.minimum(attacked, certified)),
            mean_case(where, np.maximum(attacked, certified)),
        )
    )


def bracketed_slope_case(where: str, d, attacked: tuple, certified: tuple, n: int) -> Case:
    """slope_case of per-d means (each a (means, ses) pair) of a quantity each sample knows only within
    [certified, attacked], with the steepest and the shallowest slope those means allow: the slope is
    sum_i w_i log(mean_i), increasing in mean_i where w_i > 0 and decreasing where w_i < 0, so its
    extremes take every mean at one end of its range (and that end's standard error)."""
    d = np.asarray(d, float)
    (a_means, a_ses), (c_means, c_ses) = ((np.asarray(v, float) for v in pair) for pair in (attacked, certified))
    lower = a_means <= c_means  # where the attacked mean is the lower end
    low, low_se = np.where(lower, a_means, c_means), np.where(lower, a_ses, c_ses)
    high, high_se = np.where(lower, c_means, a_means), np.where(lower, c_ses, a_ses)
    rising = np.log(d) > np.mean(np.log(d))
    steepest = slope_case(where, d, np.where(rising, low, high), np.where(rising, low_se, high_se), n)
    shallowest = slope_case(where, d, np.where(rising, high, low), np.where(rising, high_se, low_se), n)
    return slope_case(where, d, a_means, a_ses, n)._replace(ends=(steepest, shallowest))


# ---- run folders ---------------------------------------------------------------------------------


def study_of(meta: dict) -> str:
    """'sweep', 'mnist' or 'imagenet' from a run folder's meta.json."""
    config = meta.get("config", {})
    if config.get("experiment") in ("mnist", "imagenet"):
        return config["experiment"]
    if "experiments" in config:
        return "sweep"
    raise ValueError("meta.json names no study this ledger knows (sweep, mnist, imagenet)")


def command_of(meta: dict, study: str) -> str:
    """The command that reproduces the run: as it was typed when meta.json has it, else rebuilt; with the
    `jaxfrag decide` that extended its cells after it, where one did."""
    made = _made_by(meta, study)
    extended = meta.get("extended_by") or []
    return " && ".join([made, *([extended] if isinstance(extended, str) else extended)])


def _made_by(meta: dict, study: str) -> str:
    if meta.get("argv"):
        return shlex.join(["jaxfrag", study, *meta["argv"]])
    command = meta.get("command")
    if isinstance(command, list) and command:
        return shlex.join(["jaxfrag", study, *command[1:]])
    # A sweep that did not record its command: rebuilt from the config, every option off its default.
    config = meta.get("config", {})
    axes = config.get("grid") or {}
    words = ["jaxfrag", "sweep", "--experiment", *config.get("experiments", [])]
    words += ["--d", _span(config.get("d", [])).replace(", ", ",")]
    defaults = Config()
    for field in Config._fields:
        value = config.get(field, getattr(defaults, field))
        if field.replace("_", "-") in axes or value == getattr(defaults, field):
            continue
        flag = "--" + field.replace("_", "-")
        words += [flag] if value is True else [flag, grid.format_value(value)]
    if axes:
        words += ["--grid", *(f"{axis}={','.join(map(grid.format_value, values))}" for axis, values in axes.items())]
    return shlex.join(words)


def read_run(path: str | Path) -> tuple[dict, pd.DataFrame, dict]:
    """(meta, rows, cell statistics) of a run folder; ValueError with a one-line reason if it is not one."""
    path = Path(path)
    try:
        meta = json.loads((path / store.META).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} is not a run folder (no {store.META})") from None
    except json.JSONDecodeError:
        raise ValueError(f"{path}/{store.META} is not valid JSON") from None
    folder = store.RunFolder(path)
    if (path / store.RESULTS).exists():
        rows = pd.read_parquet(path / store.RESULTS)
        cell_stats = folder.read_cell_stats()  # results.parquet has the rows: the cells' metadata suffices
    elif folder.done_cells():
        rows, cell_stats = folder.read_cells()
    else:
        raise ValueError(f"{path} has no finished cells yet")
    return meta, rows, cell_stats


def claims(path: str | Path, interval: str = ANYTIME) -> list[Claim]:
    """Every claim one run folder can decide, judged with `interval`'s intervals."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    meta, rows, cell_stats = read_run(path)
    study = study_of(meta)
    command, run = command_of(meta, study), str(path)
    if study == "mnist":
        found = mnist_claims(rows, command, run, meta)
    elif study == "imagenet":
        found = imagenet_claims(rows, command, run, meta)
    else:
        found = sweep_claims(meta, rows, cell_stats, command, run)
    return [claim._replace(interval=interval) for claim in found]


def ledger(paths, interval: str = ANYTIME) -> list[Claim]:
    """The claims of several run folders, one per claim: a claim two runs decide (Figure 2 from runs
    at d = 12 and at d = 17) is judged on the cases of both, and names both runs and commands."""
    merged: dict[str, Claim] = {}
    for claim in (claim for path in paths for claim in claims(path, interval)):
        earlier = merged.get(claim.claim)
        if earlier is None:
            merged[claim.claim] = claim
            continue
        taken = {case.where for case in earlier.cases}
        cases = tuple(
            case._replace(where=f"{claim.run}: {case.where}") if case.where in taken else case for case in claim.cases
        )
        merged[claim.claim] = earlier._replace(
            cases=earlier.cases + cases,
            command=f"{earlier.command}; {claim.command}",
            run=f"{earlier.run}; {claim.run}",
        )
    return sorted(merged.values(), key=lambda claim: claim.order)


# ---- the sweep: Theorems 1, 4, 6, Lemma 3; Tables 1-4, Figure 2; the grid's findings -----------------

SLOPE_STATEMENT = "the NN-to-optimal robustness gap falls like d^(-1/2) or faster"
THEOREMS = {
    "thm1": (1.0, "Theorem 1", "O(1) vs Ω(√d): gap O(d^(-1/2))"),
    "thm4": (4.0, "Theorem 4 (t = 2)", "O(1) vs Ω(√d): gap O(d^(-1/2))"),
    "thm6": (6.0, "Theorem 6", "gap ≈ φ = O(d^(-1/2))"),
}


def grid_axes(meta: dict) -> list[str]:
    return [option.replace("-", "_") for option in (meta.get("config", {}).get("grid") or {})]


def configurations(rows: pd.DataFrame, axes: list[str]):
    """(label, rows) per grid configuration ('' without a grid), in the rows' order."""
    if not axes:
        yield "", rows
        return
    for values, part in rows.groupby(axes, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        yield grid.label(tuple(zip(axes, values, strict=True))).replace(",", ", "), part


def _where(configuration: str, *parts: str) -> str:
    return ", ".join(p for p in (configuration, *parts) if p)


def sweep_claims(meta: dict, rows: pd.DataFrame, cell_stats: dict, command: str, run: str) -> list[Claim]:
    out: list[Claim] = []
    axes = grid_axes(meta)
    costed = sweep_costs(meta, axes, run)
    finite = rows[~rows["nonfinite"].astype(bool)] if "nonfinite" in rows else rows
    present = list(dict.fromkeys(finite["experiment"]))
    for name, (order, title, paper) in THEOREMS.items():
        part = finite[finite["experiment"] == name]
        if part.empty:
            continue
        case = costed(per_d_slope(part, "gap", "d = " + _span(part["d"].unique())), part, "trials")
        out.append(
            Claim(order, title, SLOPE_STATEMENT, paper, "log-log slope of the mean gap against d", "<=", -0.5,
                  SLOPE_MARGIN, (case,), command, run)
        )
    if "thm4" in present:
        out.append(lemma3_claim(cell_stats, finite[finite["experiment"] == "thm4"], costed, command, run))
    if "linear" in present:
        out += linear_claims(finite[finite["experiment"] == "linear"], axes, costed, command, run)
    if "relu" in present:
        out += relu_claims(finite[finite["experiment"] == "relu"], axes, costed, command, run)
    return out


def sweep_costs(meta: dict, axes: list[str], run: str = ""):
    """costed(case, part, unit): the case (and its ends) with the cells of `part` (the rows it was
    measured on, before any filter), their trials and the seconds the run spent on them (meta's stages)."""
    stages = meta.get("stages", {})

    def unordered(key: str) -> tuple:
        """A stage's name up to the order of its grid point's options (meta.json's config sorts them)."""
        cell, _, d = key.rpartition("/d=")
        name, label = grid.split_cell_name(cell)
        return name, frozenset(label.split(",")) - {""}, d

    named = {unordered(key): key for key in stages if "/d=" in key}

    def cells(part: pd.DataFrame) -> tuple[str, ...]:
        found = []
        for values in part[["experiment", *axes, "d"]].drop_duplicates().itertuples(index=False):
            experiment, *point, d = (getattr(v, "item", lambda v=v: v)() for v in values)
            key = f"{grid.cell_name(experiment, tuple(zip(axes, point, strict=True)))}/d={int(d)}"
            found.append(named.get(unordered(key), key))
        return tuple(found)

    def costed(case: Case, part: pd.DataFrame, unit: str) -> Case:
        keys = cells(part)
        seconds = sum(stages.get(key, {}).get("run_s", math.nan) for key in keys)
        return _spent(case, trials=len(part), cost_s=seconds, unit=unit, cells=tuple(f"{run}|{key}" for key in keys))

    return costed


def _span(ds) -> str:
    ds = sorted(int(d) for d in ds)
    if len(ds) > 2 and ds == list(range(ds[0], ds[-1] + 1)):
        return f"{ds[0]}..{ds[-1]}"
    return ", ".join(map(str, ds))


def lemma3_claim(cell_stats: dict, rows: pd.DataFrame, costed, command: str, run: str) -> Claim:
    """Lemma 3 per d: the largest Kolmogorov-Smirnov distance, over R's entries, between the law of R of
    the product of Gaussian matrices and that of the product of Bartlett factors, bounded by DKW bands."""
    cases = []
    for (cell, d), found in sorted(cell_stats.items(), key=lambda item: item[0][1]):
        if cell != "thm4":
            continue
        distance = found.get("lemma3_ks_max", math.nan)  # runs made before it was recorded have none
        case = Case(f"d = {d}", distance, math.nan, int(found.get("lemma3_trials", 0)), kind=DISTANCE,
                    entries=int(found.get("lemma3_entries", 1)))  # fmt: skip
        cases.append(costed(case, rows[rows["d"] == d], "trials"))
    return Claim(
        4.5,
        "Lemma 3",
        "R of a product of Gaussian matrices has the entries of the product of their Bartlett factors",
        "a distributional identity (no number)",
        "largest Kolmogorov-Smirnov distance over R's entries between the two laws (two-sample), per d",
        "<=",
        0.0,
        KS_TOLERANCE,
        tuple(cases),
        command,
        run,
    )


def linear_claims(rows: pd.DataFrame, axes: list[str], costed, command: str, run: str) -> list[Claim]:
    if axes:
        return grid_linear_claims(rows, axes, costed, command, run)
    ok = linear.successes(rows)
    keep = ok & (rows["cos_theta2"].abs() > linear.TABLE2_FILTER)
    abs_cos1 = lambda part: part["cos_theta1"].abs()  # noqa: E731
    paper2 = linear.PAPER_TABLE2[12]
    fits, filtered = "nets that fit", f"nets that fit with |cos θ2| > {linear.TABLE2_FILTER}"
    tracked, table1, robustness = [], [], []
    for d, part in rows.groupby("d"):
        fit, kept = part[ok[part.index]], part[keep[part.index]]
        where = f"d = {d}"
        table1.append(costed(mean_case(where, fit["cos_theta2"].abs()), part, fits))
        robustness.append(costed(mean_case(where, fit["robustness_ratio"] - abs_cos1(fit)), part, fits))
        if len(kept):
            tracked.append(costed(mean_case(where, abs_cos1(kept) - kept["phi"]), part, filtered))
    out = [
        Claim(
            20.1,
            "Table 1",
            "a trained linear net's W1 aligns with the last row of A^-1: |cos θ2| ≈ 1 (nets with training accuracy 1)",
            "|cos θ2| > 0.99 in 9 of 10 runs (d = 12)",
            "mean |cos θ2| over nets with training accuracy 1",
            "=", 1.0, APPROX_TOLERANCE, tuple(table1), command, run,
        ),
        Claim(
            20.2,
            "Table 1 (robustness)",
            "|cos θ1| is the perturbation that flips it, over ‖a_d‖",
            "|cos θ1| 'quantifies how much perturbation' flips the net",
            "mean of robustness / ‖a_d‖ − |cos θ1| over nets with training accuracy 1",
            "=", 0.0, APPROX_TOLERANCE, tuple(robustness), command, run,
        ),
    ]
    if any(case.where == "d = 12" for case in tracked):
        out.append(
            Claim(
                20.3,
                "Table 2",
                "|cos θ1| ≈ φ: the trained net compresses a_d as much as Theorem 6 predicts",
                f"|cos θ1| {paper2['abs_cos1']}, φ {paper2['phi']}: "
                f"difference {paper2['abs_cos1'] - paper2['phi']:+.4f}",
                "mean of |cos θ1| − φ over nets with training accuracy 1 and |cos θ2| > 0.9",
                "=", 0.0, APPROX_TOLERANCE,
                tuple(case for case in tracked if case.where == "d = 12"),
                command, run,
            )
        )
    out.append(
        Claim(
            20.4,
            "Figure 2",
            "|cos θ1| and φ 'match really well' at every d from 7 to 17",
            "averages drawn for d = 7..17 (no numbers printed)",
            "mean of |cos θ1| − φ per d, Table 2's nets",
            "=", 0.0, APPROX_TOLERANCE,
            tuple(tracked),
            command, run,
        )
    )
    return out


def certified(rows: pd.DataFrame) -> bool:
    """The relu rows carry certified lower bounds (`jaxfrag sweep --certify`)."""
    return all(column in rows for column in relu.CERTIFIED_COLUMNS)


FLIPPED = "accurate nets whose attack flipped"


def relu_input_cases(rows: pd.DataFrame, costed, where: str = "") -> tuple[Case, ...]:
    """Theorem 7's |cos θ_t| − δ/m per input (b1, b2 kept apart: pooled, opposite signs could cancel),
    over accurate nets whose attack flipped the label; with certified bounds r, the ends put δ
    anywhere in [r, δ] (cos θ_t stays the attacked point's)."""
    accurate = relu.accurate(rows)
    cases = []
    for d, part in rows.groupby("d"):
        good = part[accurate[part.index]]
        for b in relu.INPUTS:
            hit = good[good[f"flips_{b}"].astype(bool)]
            difference = hit[f"cos_theta_t_{b}"].abs() - hit[f"delta_{b}"] / hit["m"]
            at = _where(where, f"d = {int(d)}", b)
            if certified(rows):
                bound = hit[f"cos_theta_t_{b}"].abs() - hit[f"robustness_certified_{b}"] / hit["m"]
                case = bracketed_mean_case(at, difference, bound)
            else:
                case = mean_case(at, difference)
            cases.append(costed(case, part, FLIPPED))
    return tuple(cases)


def per_d_slope(part: pd.DataFrame, column: str, where: str) -> Case:
    """slope_case of the per-d means of `column` over `part`'s rows, n all of them."""
    grouped = part.groupby("d")[column]
    return slope_case(where, grouped.mean().index, grouped.mean(), grouped.sem(), len(part))


def gap_slope_case(part: pd.DataFrame, where: str) -> Case:
    """The log-log slope of the mean gap over `part`'s rows, with the brackets' ends where certified."""
    where = where + f" (d = {_span(part['d'].unique())})"
    if not certified(part):
        return per_d_slope(part, "gap", where)
    grouped = part.groupby("d")
    means, ses = grouped[["gap", "gap_certified"]].mean(), grouped[["gap", "gap_certified"]].sem()
    return bracketed_slope_case(
        where, means.index, (means["gap"], ses["gap"]), (means["gap_certified"], ses["gap_certified"]), len(part)
    )


def relu_claims(rows: pd.DataFrame, axes: list[str], costed, command: str, run: str) -> list[Claim]:
    if axes:
        return grid_relu_claims(rows, axes, costed, command, run)
    accurate = relu.accurate(rows)
    paper3 = relu.PAPER_TABLE3[12]["mean"]
    table3 = tuple(
        costed(mean_case(f"d = {int(d)}, α = {k}/9", part[accurate[part.index]][f"rho_alpha_{k}"] - paper3[k]),
               part, "accurate nets")
        for d, part in rows.groupby("d")
        if int(d) == 12
        for k in range(relu.ALPHAS)
    )  # fmt: skip
    out = []
    if table3:
        out.append(
            Claim(
                30.1,
                "Table 3 (Theorem 7)",
                "the local compression ρ of accurate ReLU nets is the paper's (about 0.33: a third of the optimum)",
                f"mean ρ {min(paper3):.4f}–{max(paper3):.4f} over α (50 nets, d = 12)",
                "mean of ρ − the paper's mean ρ at the same α, accurate nets",
                "=", 0.0, APPROX_TOLERANCE,
                table3,
                command, run, UNBRACKETED["Table 3 (Theorem 7)"],
            )
        )
    paper4 = relu.PAPER_TABLE4[17]
    out.append(
        Claim(
            30.2,
            "Table 4 (Theorem 7)",
            "|cos θ_t| ≈ δ/m: the compression at the attacked point is the attack's share of ‖a_d‖",
            "|cos θ_t| − δ/m: b1 " + f"{abs(paper4['b1']['cos_theta_t']) - paper4['b1']['ratio']:+.4f}, b2 "
            + f"{abs(paper4['b2']['cos_theta_t']) - paper4['b2']['ratio']:+.4f} (one net, d = 17)",
            "mean of |cos θ_t| − δ/m per input, accurate nets whose attack flipped the label",
            "=", 0.0, APPROX_TOLERANCE,
            relu_input_cases(rows, costed),
            command, run, "" if certified(rows) else NOT_CERTIFIED,
        )
    )
    return out


def width_cases(rows: pd.DataFrame, axes: list[str], fitted, costed) -> tuple[Case, ...]:
    """The gap at each other width minus the gap at the grid's first width, paired by trial (the same
    data) at the same other options and d, over the trials whose nets fit under both."""
    if "width" not in axes:
        return ()
    widths = list(dict.fromkeys(rows["width"]))
    others = [axis for axis in axes if axis != "width"]
    keys = [*others, "d", "trial"]
    reference = rows[(rows["width"] == widths[0]) & fitted(rows)].set_index(keys)["gap"]
    cases = []
    for width in widths[1:]:
        other = rows[(rows["width"] == width) & fitted(rows)].set_index(keys)["gap"]
        both = (other - reference).dropna().reset_index()
        for label, part in configurations(both, others):
            for d, part_d in part.groupby("d"):
                where = _where(f"width={width} vs {widths[0]}", label, f"d = {int(d)}")
                spent = rows[rows["width"].isin([widths[0], width]) & (rows["d"] == d)]
                for axis in others:  # the two cells of this configuration, before any filter
                    spent = spent[spent[axis] == part_d[axis].iloc[0]]
                cases.append(costed(mean_case(where, part_d["gap"]), spent, "trials whose nets fit under both"))
    return tuple(cases)


def grid_linear_claims(rows: pd.DataFrame, axes: list[str], costed, command: str, run: str) -> list[Claim]:
    slopes, tracking, selection = [], [], []
    for label, part in configurations(rows, axes):
        ok = linear.successes(part)
        slopes.append(costed(gap_slope_case(part[ok], label), part, "trials"))
        for d, part_d in part.groupby("d"):
            where = _where(label, f"d = {int(d)}")
            fitted = linear.successes(part_d)
            fit = part_d[fitted]
            if len(fit):
                tracking.append(costed(mean_case(where, fit["cos_theta1"].abs() - fit["phi"]), part_d, "nets that fit"))
            selection.append(
                costed(difference_case(where, part_d["phi"][fitted], part_d["phi"][~fitted]), part_d,
                       "nets in the smaller group (fit or not)")
            )  # fmt: skip
    out = [
        Claim(
            60.1,
            "Beyond the paper: trained linear gap",
            "the trained linear nets' gap falls like d^(-1/2) or faster, to d = 64 (nets that fit)",
            "Theorem 6 for trained nets (shown to d = 17)",
            "log-log slope of the mean gap against d, nets with training accuracy 1",
            "<=", -0.5, SLOPE_MARGIN, tuple(slopes), command, run,
        ),
        Claim(
            60.2,
            "Beyond the paper: |cos θ1| tracks φ",
            "|cos θ1| ≈ φ under other trainings, widths and column scalings, to d = 64",
            "Table 2 and Figure 2's relation",
            "mean of |cos θ1| − φ per configuration and d, nets with training accuracy 1",
            "=", 0.0, APPROX_TOLERANCE, tuple(tracking), command, run,
        ),
        Claim(
            60.5,
            "Beyond the paper: no selection by training success",
            "the linear nets that fit their data are a fair sample of the matrices: φ is the same over them",
            "Table 2 averages over the 18 of 50 runs that fit",
            "mean φ over nets that fit − over nets that did not (Welch), per configuration and d",
            "=", 0.0, APPROX_TOLERANCE, tuple(selection), command, run,
        ),
    ]
    widths = width_cases(rows, axes, linear.successes, costed)
    if widths:
        out.append(
            Claim(
                60.6,
                "Beyond the paper: width",
                "a linear net's width does not change its gap (every width is the same function class)",
                "not addressed (one width, 3000)",
                "mean change of the gap against the grid's first width, paired by trial, nets that fit under both",
                "=", 0.0, APPROX_TOLERANCE, widths, command, run,
            )
        )
    return out


def grid_relu_claims(rows: pd.DataFrame, axes: list[str], costed, command: str, run: str) -> list[Claim]:
    slopes, relation = [], []
    for label, part in configurations(rows, axes):
        slopes.append(costed(gap_slope_case(part[relu.accurate(part)], label), part, "trials"))
        relation += relu_input_cases(part, costed, label)
    unbracketed = "" if certified(rows) else NOT_CERTIFIED
    return [
        Claim(
            60.3,
            "Beyond the paper: Theorem 7's relation",
            "|cos θ_t| ≈ δ/m at b1 and at b2, under other trainings, widths and column scalings, to d = 64",
            "Table 4's relation (one net, d = 17)",
            "mean of |cos θ_t| − δ/m per configuration, d and input, accurate nets whose attack flipped",
            "=", 0.0, APPROX_TOLERANCE, tuple(relation), command, run, unbracketed,
        ),
        Claim(
            60.4,
            "Beyond the paper: trained ReLU gap",
            "the trained ReLU nets' gap δ/opt falls like d^(-1/2) or faster, to d = 64",
            "the paper's 1/√d claim, for nonlinear nets",
            "log-log slope of the mean gap against d, accurate nets",
            "<=", -0.5, SLOPE_MARGIN, tuple(slopes), command, run, unbracketed,
        ),
    ]


# ---- MNIST (Tables 5-6) and ImageNet (Tables 7-8, Figure 6) -------------------------------------


STUDY_CELLS = {"mnist": "mnist/images", "imagenet": "imagenet/pairs"}  # what `jaxfrag decide` grows in a study


def study_costs(meta: dict, trials: int, unit: str, run: str = ""):
    """costed(case): the case (and its ends) with a study's trials (7s measured, pairs) and its measuring
    time: a case's samples are a share of the study's, so its trials and time scale with it. Its cells
    name what grows it ("RUN|mnist/images": the 7s per network; "RUN|imagenet/pairs")."""
    cost_s = float(meta.get("wall_s", {}).get("measure", math.nan))
    study = study_of(meta) if meta else None
    cells = (f"{run}|{STUDY_CELLS[study]}",) if run and study in STUDY_CELLS else ()
    return lambda case: _spent(case, trials=int(trials), cost_s=cost_s, unit=unit, cells=cells)


def _spent(case: Case, **fields) -> Case:
    """The case, and its ends where it has them, with what its run spent on it (`fields`)."""
    ends = tuple(end._replace(**fields) for end in case.ends) if case.ends else None
    return case._replace(ends=ends, **fields)


def mnist_claims(rows: pd.DataFrame, command: str, run: str, meta: dict | None = None) -> list[Claim]:
    usable = rows[~rows["crossed"].astype(bool) & rows["has_a1"].astype(bool)]
    measured = len(rows.drop_duplicates(["network", "image"])) if {"network", "image"} <= set(rows) else len(rows)
    costed = study_costs(meta or {}, measured, "uncrossed test 7s with an A_1", run)
    paper5 = mnist_experiment.PAPER_TABLE5
    bracketed = "Q_certified_ratio" in rows  # jaxfrag mnist --certify: the minimal L2 Q within [certified, Q_l2]
    out = []
    relations = (
        (40.1, "Table 5 (compression)", "|cos θ_t| ≈ Q/(0.5L): the compression at I_7 is the attack's share of L/2",
         "cos_theta_t", paper5["cos_theta_t"]),
        (40.2, "Table 5 (path length)", "|M/(0.5L)| ≈ Q/(0.5L): eq. (8)'s length along I_7 → A_1 predicts the attack",
         "M_ratio", paper5["M/(0.5L)"]),
    )
    for order, title, statement, column, paper_side in relations:
        cases = []
        for rule in mnist_experiment.MASK_RULES:
            block = usable[usable["mask_rule"] == rule]
            cases.append(costed(mean_case(f"{rule} rule, Q FGSM", block[column].abs() - block["Q_fgsm_ratio"])))
            # FGSM's Q is its own step, not the minimal perturbation, so only min L2's has a bracket.
            attacked = block[column].abs() - block["Q_l2_ratio"]
            where = f"{rule} rule, Q min L2"
            if bracketed:
                bound = block[column].abs() - block["Q_certified_ratio"]
                cases.append(costed(bracketed_mean_case(where, attacked, bound)))
            else:
                cases.append(costed(mean_case(where, attacked)))
        paper_diff = np.abs(paper_side) - np.asarray(paper5["Q/(0.5L)"])
        difference = statement.split(":")[0].replace(" ≈ ", " − ")
        out.append(
            Claim(
                order, title, statement + " (the paper's CNN, test 7s made into 1s)",
                f"differences {paper_diff.min():+.2f} to {paper_diff.max():+.2f} over 5 images",
                f"mean of {difference} over uncrossed test 7s with an A_1",
                "=", 0.0, APPROX_TOLERANCE, tuple(cases), command, run, "" if bracketed else UNBRACKETED[title],
            )
        )
    alphas = [f"cos_theta_alpha_{i}" for i in range(mnist_experiment.ALPHA_TABLE)]
    paper6 = float(np.mean(np.abs(mnist_experiment.PAPER_TABLE6_AVERAGE)))
    cases = tuple(
        costed(mean_case(f"{rule} rule", usable[usable["mask_rule"] == rule][alphas].mean(axis=1).abs() - paper6))
        for rule in mnist_experiment.MASK_RULES
    )
    out.append(
        Claim(
            40.3, "Table 6",
            "|cos θ| along the path I_7 → A_1 is small (the net sees a compressed part of A_1 − I_7)",
            f"|average over α| {paper6:.3f} (mean of 4 experiments)",
            "mean over images of |mean of cos θ_α over α = 0, 0.1, ..., 1| minus the paper's",
            "=", 0.0, APPROX_TOLERANCE, cases, command, run, UNBRACKETED["Table 6"],
        )
    )
    return out


def imagenet_claims(rows: pd.DataFrame, command: str, run: str, meta: dict | None = None) -> list[Claim]:
    costed = study_costs(meta or {}, len(rows), "pairs", run)
    paper8 = imagenet_experiment.PAPER_TABLE8
    m = rows["M_ratio"].abs()
    cases = []
    for q, label in (("Q_ll", "Kurakin (the paper's Q)"), ("Q_l2_targeted", "minimal L2, targeted")):
        ok = rows[f"{q}_success"].astype(bool)
        cases.append(costed(mean_case(label, (m - rows[f"{q}_ratio"])[ok])))
    paper_diff = np.abs(paper8["M/(0.5L)"]) - np.asarray(paper8["Q/(0.5L)"])
    paper7 = float(np.mean(np.abs(imagenet_experiment.PAPER_TABLE7_AVERAGE)))
    return [
        Claim(
            50.2, "Table 8",
            "|M/(0.5L)| ≈ Q/(0.5L) on an ImageNet classifier: the path's length predicts the attack",
            f"differences {paper_diff.min():+.3f} to {paper_diff.max():+.3f} over 4 images",
            "mean of |M/(0.5L)| − Q/(0.5L) over pairs whose attack succeeded",
            "=", 0.0, APPROX_TOLERANCE, tuple(cases), command, run, UNBRACKETED["Table 8"],
        ),
        Claim(
            50.1, "Table 7 and Figure 6",
            "|cos θ_α| along the path between the two images is small",
            f"|average over α| {paper7:.4f} (mean of 4 experiments)",
            "mean over pairs of |mean of cos θ_α over the path| minus the paper's",
            "=", 0.0, APPROX_TOLERANCE, (costed(mean_case("all pairs", rows["cos_mean"].abs() - paper7)),),
            command, run, UNBRACKETED["Table 7 and Figure 6"],
        ),
    ]


# ---- output -------------------------------------------------------------------------------------


def interval_text(claim: Claim) -> str:
    """verdicts.csv's `interval`: which intervals the claim's verdicts rest on, and at which level."""
    k = len(claim.cases)
    family = f"Bonferroni over {k} cases: each at {100 * (1 - case_alpha(claim)):.4g}%" if k > 1 else "one case at 95%"
    if any(case.kind == DISTANCE for case in claim.cases):
        kind = "DKW bands at every n" if claim.interval == ANYTIME else "DKW bands at one n"
    else:
        kind = "anytime (normal-mixture confidence sequence)" if claim.interval == ANYTIME else "fixed-n t-interval"
    return f"{kind}; {family}"


def records(found: list[Claim]) -> pd.DataFrame:
    out = []
    for claim in found:
        case = headline(claim)
        low, high = case_interval(claim, case)
        decided, conditions = verdict(claim)
        out.append(
            {
                "order": claim.order, "claim": claim.claim, "statement": claim.statement, "paper": claim.paper,
                "statistic": claim.statistic, "relation": claim.relation, "target": claim.target,
                "tolerance": claim.tolerance, "estimate": case.estimate, "low": low, "high": high,
                "n": case.n, "verdict": decided, "conditions": conditions, "brackets": brackets_text(claim),
                "interval": interval_text(claim), "cases": len(claim.cases), "to_decide": undecided_text(claim),
                "command": claim.command, "run": claim.run,
            }
        )  # fmt: skip
    return pd.DataFrame.from_records(out, columns=list(CSV_COLUMNS))


STORED = ("estimate", "se", "n", "df", "kind", "entries", "trials", "cost_s", "unit", "cells")  # a Case's, on disk
END_FIELDS = ("estimate", "se", "low", "high")
END_COLUMNS = tuple(f"{end}_{field}" for end in ENDS for field in END_FIELDS)
CASE_COLUMNS = (
    "claim", "where", "estimate", "se", "low", "high", "n", "level", "verdict", "to_decide",
    "df", "kind", "entries", "trials", "cost_s", "unit", *END_COLUMNS, "interval", "run", "cells",
)  # fmt: skip


def case_records(found: list[Claim]) -> pd.DataFrame:
    out = []
    for claim in found:
        for case, decided in zip(claim.cases, case_verdicts(claim), strict=True):
            low, high = case_interval(claim, case)
            row = {field: getattr(case, field) for field in ("where", *STORED)}
            row["cells"] = " ".join(case.cells)  # a cell's name holds no space
            row |= {"claim": claim.claim, "low": low, "high": high, "level": 1 - case_alpha(claim)}
            row |= {"verdict": decided, "interval": claim.interval, "run": claim.run}
            row["to_decide"] = decision_text(claim, case) if decided == UNDECIDED else ""
            for end, at in zip(ENDS, case.ends or (None, None), strict=True):
                bounds = case_interval(claim, at) if at else (math.nan, math.nan)
                values = (at.estimate, at.se, *bounds) if at else (math.nan,) * 4
                row |= {f"{end}_{field}": value for field, value in zip(END_FIELDS, values, strict=True)}
            out.append(row)
    return pd.DataFrame.from_records(out, columns=list(CASE_COLUMNS))


def _case_of(row) -> Case:
    """A Case from a row of verdict_cases.csv (its ends, where the row has them)."""
    types = {"estimate": float, "se": float, "n": int, "df": float, "kind": str, "entries": int, "trials": int,
             "cost_s": float, "unit": str, "cells": lambda text: tuple(str(text).split()) if text == text else ()}
    # fmt: skip
    case = Case(str(row["where"]), *(types[field](row[field]) for field in STORED[:3]))
    case = case._replace(**{field: types[field](row[field]) for field in STORED[3:]})
    if not np.isfinite(row.get("lowest_estimate", math.nan)):
        return case
    ends = tuple(case._replace(estimate=float(row[f"{end}_estimate"]), se=float(row[f"{end}_se"])) for end in ENDS)
    return case._replace(ends=ends)


def band(claim_row) -> str:
    target, tolerance, relation = claim_row["target"], claim_row["tolerance"], claim_row["relation"]
    if not tolerance:
        return f"{relation} {target:g}"
    if relation == "=":
        return f"= {target:g} ± {tolerance:g}"
    edge = target + tolerance if relation == "<=" else target - tolerance
    return f"{relation} {edge:g} ({target:g} with margin {tolerance:g})"


def markdown(table: pd.DataFrame, runs_text: bool = True) -> str:
    """verdicts.md's table: claim, paper, ours [interval], n, test, verdict, the verdict at the ends
    of the certified brackets (— where the robustness is exact), and what it rests on."""
    lines = [
        "| claim | the paper | ours [interval] | n | test | verdict | with certified brackets |",
        "|---|---|---|---|---|---|---|",
    ]
    def cell(text) -> str:  # a "|" inside a cell would end it: |cos θ| is written \|cos θ\|
        return str(text).replace("|", "\\|")

    for _, row in table.iterrows():
        ours = stats.format_estimate(row["estimate"], low=row["low"], high=row["high"], spec="+.3f")
        conditions = row["conditions"] if isinstance(row["conditions"], str) else ""  # empty reads back as NaN
        verdict_text = f"**{row['verdict']}**" + (f": {conditions}" if conditions else "")
        lines.append(
            f"| **{cell(row['claim'])}**: {cell(row['statement'])} | {cell(row['paper'])} "
            f"| {ours} ({cell(row['statistic'])}; {cell(row['interval'])}) | {int(row['n'])} | {band(row)} "
            f"| {cell(verdict_text)} "
            f"| {cell(row['brackets']) if isinstance(row['brackets'], str) and row['brackets'] else '—'} |"
        )
    counts = verdict_counts(table)
    lines += ["", "Claims: " + ", ".join(f"{count} {word}" for word, count in counts.items()) + "."]
    undecided = [text for text in table["to_decide"] if isinstance(text, str) and text]
    if undecided:
        lines += ["", "What would decide the undecided cases, at today's estimates and spreads:", ""]
        lines += [f"- {cell(text)}" for text in undecided]
    if runs_text:
        lines += ["", "Reproduce each row with its run's command:", ""]
        commands = {}
        for runs, joined in zip(table["run"], table["command"], strict=True):  # merged claims join with "; "
            commands.update(zip(runs.split("; "), joined.split("; "), strict=True))
        lines += [f"- `{run}`: `{command}`" for run, command in commands.items()]
    return "\n".join(lines) + "\n"


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims hold, fail, hold under conditions, stay undecided and are untested."""
    words = {HOLDS: "hold", FAILS: "fail", CONDITIONAL: "hold under stated conditions",
             UNDECIDED: "undecided", UNTESTED: "untested"}  # fmt: skip
    return {words[v]: int((table["verdict"] == v).sum()) for v in VERDICTS}


RULE_TEXT = (
    f"A case is untested when it rests on fewer than {MIN_SAMPLES} independent samples or has no interval. "
    "Otherwise it holds when its interval lies inside the claim's band (target ± tolerance for =; at or below "
    "the target plus its margin for <=, at or above it less its margin for >=), fails when the interval lies "
    "wholly outside the band, and is undecided when it crosses an edge. A claim's cases share a family-wise "
    f"error of {FAMILY_ALPHA:g} (Bonferroni: each interval at level 1 − {FAMILY_ALPHA:g}/k for k cases), so with "
    "probability at least 95% none of its verdicts is wrong. The intervals are anytime-valid confidence "
    "sequences (the normal mixture of Howard et al. 2021; for Lemma 3's distances, DKW bands at every n), "
    "valid however often more trials are added and the ledger looked at again; the interval column says "
    "which kind each row uses. A claim holds when every tested case holds, fails when every one fails, holds "
    "only under the conditions listed when some hold and some fail, and is otherwise undecided. "
    f"The paper's ≈ is read as within {APPROX_TOLERANCE} of the optimal classifier's robustness; a scaling "
    f"claim's slope must be at most −0.5 + {SLOPE_MARGIN}; Lemma 3's Kolmogorov–Smirnov distance at most "
    f"{KS_TOLERANCE}. The ours column shows the case farthest from the paper's value. Where a verdict rests on "
    "attacked norms and the run certified a lower bound on each, the last column judges the claim again at "
    "the lowest and the highest value its statistic can take with every norm anywhere in its bracket "
    "[certified, attacked]; it is open where a case fails below the paper's band at one end and above it at "
    "the other, since the truth lies between."
)


def read(out: str | Path) -> list[Claim]:
    """The claims of a ledger `write` made in `out` (verdicts.csv and verdict_cases.csv), in its order.

    ValueError when `out` holds no ledger. Verdicts and conditions are not read back: `judge` decides
    them again from the cases. A ledger written before cases carried their standard errors (`legacy`)
    gives back only its claims of means, whose 95% t-intervals give their standard errors exactly."""
    out = Path(out)
    paths = [out / "verdicts.csv", out / "verdict_cases.csv"]
    if not all(path.is_file() for path in paths):
        raise ValueError(f"{out} holds no verdict ledger (verdicts.csv and verdict_cases.csv)")
    table, table_cases = (pd.read_csv(path, keep_default_na=False, na_values=[""]) for path in paths)
    if "se" not in table_cases:
        table, table_cases = legacy(table, table_cases)
    text = ["claim", "statement", "paper", "statistic", "relation", "command", "run", "brackets"]
    table[text] = table[text].astype(object).fillna("")  # an empty cell reads back as NaN
    table_cases[["where", "kind", "unit", "interval"]] = table_cases[["where", "kind", "unit", "interval"]].astype(str)
    table_cases["cells"] = table_cases["cells"].astype(object).fillna("")

    def note(row) -> str:
        # Why a claim has no certified ends is what the tool can do now, not when the ledger was written.
        return UNBRACKETED.get(row["claim"], row["brackets"])

    found = []
    for _, row in table.iterrows():
        rows = table_cases[table_cases["claim"] == row["claim"]]
        cases = tuple(_case_of(c) for _, c in rows.iterrows())
        found.append(
            Claim(
                float(row["order"]), row["claim"], row["statement"], row["paper"], row["statistic"],
                row["relation"], float(row["target"]), float(row["tolerance"]),
                cases, row["command"], row["run"], "" if any(case.ends for case in cases) else note(row),
                str(rows["interval"].iloc[0]) if len(rows) else ANYTIME,
            )  # fmt: skip
        )
    return found


def legacy(table: pd.DataFrame, table_cases: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A ledger written before cases carried standard errors, as one written now: its claims of means
    (their statistic starts "mean") with each case's standard error from its 95% t-interval,
    (high - low) / (2 t_0.975,n-1); the others (slopes, Lemma 3's share), whose intervals were not
    of that form, left out."""
    means = table[table["statistic"].astype(str).str.startswith("mean")].copy()
    cases = table_cases[table_cases["claim"].isin(means["claim"])].copy()
    n = cases["n"].astype(float)
    quantile = np.where(n > 1, sps.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
    cases["se"] = (cases["high"] - cases["low"]) / (2 * quantile)
    cases["df"], cases["kind"], cases["entries"], cases["trials"] = n - 1, NORMAL, 1, 0
    cases["cost_s"], cases["unit"], cases["cells"], cases["interval"] = math.nan, "samples", "", ANYTIME
    for end in ENDS:
        if f"{end}_estimate" in cases:
            cases[f"{end}_se"] = (cases[f"{end}_high"] - cases[f"{end}_low"]) / (2 * quantile)
    if "brackets" not in means:
        means["brackets"] = ""
    return means, cases


def updated(earlier: list[Claim], found: list[Claim]) -> list[Claim]:
    """`earlier`'s claims with those `found` decides replaced by them (a study re-run: the ledger's
    other claims keep the runs that decided them), in the paper's order."""
    fresh = {claim.claim for claim in found}
    return sorted([c for c in earlier if c.claim not in fresh] + list(found), key=lambda claim: claim.order)


def write(out: str | Path, found: list[Claim]) -> pd.DataFrame:
    """verdicts.csv, verdict_cases.csv and verdicts.md in `out` (atomically); returns verdicts.csv's table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = records(found)
    store.atomic_write_text(out / "verdicts.csv", table.to_csv(index=False))
    store.atomic_write_text(out / "verdict_cases.csv", case_records(found).to_csv(index=False))
    store.atomic_write_text(out / "verdicts.md", "# Verdicts\n\n" + RULE_TEXT + "\n\n" + markdown(table))
    return table
