"""The verdict ledger: every claim of the paper a run folder can decide, with one rule for every verdict.

Contract:
* `judge(relation, target, tolerance, low, high, n)` is THE rule, applied to every case of every
  claim: a case rests on fewer than `MIN_SAMPLES` independent samples (trials, networks, images,
  pairs) or has no 95% interval -> "untested: too few samples"; otherwise it holds when its 95%
  interval reaches the paper's band (target ± tolerance for "=", at or below target + tolerance for
  "<=", at or above target - tolerance for ">="), and fails when the whole interval lies outside it.
* `verdict(cases)` joins a claim's cases (one per d, input, masking rule, configuration...): every
  tested case holds -> "holds"; none -> "fails"; some -> "holds only under stated conditions" (the
  conditions list the cases that hold); no case tested -> "untested: too few samples".
* Certified brackets: a case that rests on attacked norms, from a run that certified a lower bound
  on each (`jaxfrag sweep --certify`), carries `ends`: the same statistic, with its interval, at
  the lowest and the highest value it can take when each attacked norm is anywhere in its bracket
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

from jaxfrag import grid, stats, store
from jaxfrag.config import Config
from jaxfrag.experiments import imagenet as imagenet_experiment
from jaxfrag.experiments import linear, relu
from jaxfrag.experiments import mnist as mnist_experiment

MIN_SAMPLES = 10  # below this many independent samples a case is untested, whatever its interval says
APPROX_TOLERANCE = 0.05  # the paper's "≈": within 0.05 of the optimal robustness (see the module docstring)
HOLDS, FAILS, UNTESTED = "holds", "fails", "untested: too few samples"
CONDITIONAL = "holds only under stated conditions"
VERDICTS = (HOLDS, CONDITIONAL, FAILS, UNTESTED)
RELATIONS = ("=", "<=", ">=")
LISTED = 8  # cases a claim's conditions name one by one (verdict_cases.csv has them all)
CSV_COLUMNS = (
    "order", "claim", "statement", "paper", "statistic", "relation", "target", "tolerance",
    "estimate", "low", "high", "n", "verdict", "conditions", "brackets", "command", "run",
)
ENDS = ("lowest", "highest")  # verdict_cases.csv's columns <end>_estimate, <end>_low, <end>_high


class Case(NamedTuple):
    """One estimate a claim is judged on: where it was measured, the value, its 95% interval, n."""

    where: str
    estimate: float
    low: float
    high: float
    n: int
    # The statistic at the lowest and the highest value the certified brackets allow (module
    # docstring), each a Case of its own; None where the case rests on no bracketed attack.
    ends: tuple[Case, Case] | None = None


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
    """The one rule from a 95% interval to a verdict (the module docstring states it)."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    if n < MIN_SAMPLES or not (np.isfinite(low) and np.isfinite(high)):
        return UNTESTED
    reaches_below = low <= target + tolerance  # some of the interval at or below the band's top
    reaches_above = high >= target - tolerance  # some of it at or above the band's bottom
    holds = {"=": reaches_below and reaches_above, "<=": reaches_below, ">=": reaches_above}[relation]
    return HOLDS if holds else FAILS


def case_verdicts(claim: Claim) -> list[str]:
    return [judge(claim.relation, claim.target, claim.tolerance, c.low, c.high, c.n) for c in claim.cases]


def verdict(claim: Claim) -> tuple[str, str]:
    """(verdict, conditions) of a claim from its cases' verdicts (the module docstring states the rule)."""
    judged = list(zip(claim.cases, case_verdicts(claim), strict=True))
    held = [case.where for case, v in judged if v == HOLDS]
    failed = [case.where for case, v in judged if v == FAILS]
    untested = [case.where for case, v in judged if v == UNTESTED]
    notes = []
    if held and failed:
        # The shorter list is named case by case (up to LISTED), the longer one counted.
        tested = len(held) + len(failed)
        (few_word, few), (many_word, many) = sorted((("holds", held), ("fails", failed)), key=lambda p: len(p[1]))
        named = "; ".join(few[:LISTED]) + (f"; and {len(few) - LISTED} more" if len(few) > LISTED else "")
        notes.append(f"{few_word} at {len(few)} of {tested} cases ({named}); {many_word} at the other {len(many)}")
    if untested and (held or failed):
        notes.append(f"untested at {len(untested)} (too few samples)")
    if not held and not failed:
        return UNTESTED, ""
    if held and failed:
        return CONDITIONAL, ". ".join(notes)
    return (HOLDS if held else FAILS), ". ".join(notes)


def _at_end(claim: Claim, side: int) -> Claim:
    """The claim with every case at its lowest (side 0) or highest (1) end; a case without ends stays."""
    return claim._replace(cases=tuple(case.ends[side] if case.ends else case for case in claim.cases))


def bracket_verdicts(claim: Claim) -> tuple[str, str] | None:
    """The claim's verdict with every case at its lowest end, and at its highest; None when no case has ends."""
    if not any(case.ends for case in claim.cases):
        return None
    return verdict(_at_end(claim, 0))[0], verdict(_at_end(claim, 1))[0]


def _failed_side(claim: Claim, case: Case) -> int:
    """-1 where the case's interval lies below the paper's band, +1 above, 0 where it reaches it (or is untested)."""
    if judge(claim.relation, claim.target, claim.tolerance, case.low, case.high, case.n) != FAILS:
        return 0
    return -1 if case.high < claim.target - claim.tolerance else 1


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
        named = "; ".join(c.where for c in open_cases[:LISTED])
        named += f"; and {len(open_cases) - LISTED} more" if len(open_cases) > LISTED else ""
        return (
            f"open: {len(open_cases)} case(s) fail below the band at one end of the brackets and above it at "
            f"the other, so the truth may lie in it ({named}){span}"
        )
    if judged[0] == judged[1] == judged[2]:
        return f"{verdict(claim)[0]} at both ends, case by case{span}"

    def counted(side: int) -> str:
        tested = [v for v in judged[side + 1] if v != UNTESTED]
        return f"{ends[side]} (fails at {tested.count(FAILS)} of {len(tested)})"

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


# ---- estimates with their 95% intervals (all from jaxfrag.stats) ----------------------------------


def mean_case(where: str, values) -> Case:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    estimate = stats.interval(values)
    return Case(where, estimate.mean, estimate.low, estimate.high, estimate.n)


def proportion_case(where: str, hits: int, n: int) -> Case:
    """A share with its exact (Clopper-Pearson) 95% interval."""
    if n == 0:
        return Case(where, math.nan, math.nan, math.nan, 0)
    ci = sps.binomtest(int(hits), int(n)).proportion_ci(0.95, method="exact")
    return Case(where, hits / n, float(ci.low), float(ci.high), int(n))


def difference_case(where: str, first, second) -> Case:
    """mean(first) - mean(second) for two independent groups, with Welch's t-interval; n is the
    smaller group (the one the interval rests on)."""
    first, second = (np.asarray(v, float) for v in (first, second))
    first, second = first[np.isfinite(first)], second[np.isfinite(second)]
    n = min(len(first), len(second))
    if n < 2:
        return Case(where, math.nan, math.nan, math.nan, n)
    ci = sps.ttest_ind(first, second, equal_var=False).confidence_interval(0.95)
    return Case(where, float(first.mean() - second.mean()), float(ci.low), float(ci.high), n)


def slope_case(where: str, d, means, n: int) -> Case:
    """The log-log slope of per-d means against d, with the regression's t-interval (NaN below 3 d)."""
    fit = stats.loglog_fit(np.asarray(d, float), np.asarray(means, float))
    return Case(where, fit.slope, fit.ci_low, fit.ci_high, int(n))


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


def bracketed_slope_case(where: str, d, attacked_means, certified_means, n: int) -> Case:
    """slope_case of per-d means of a quantity each sample knows only within [certified, attacked],
    with the steepest and the shallowest slope those means allow: the least-squares slope is
    sum_i w_i log(mean_i) / sum w_i^2 with w_i = log d_i - mean(log d), increasing in mean_i where
    w_i > 0 and decreasing where w_i < 0, so its extremes take every mean at one end of its range."""
    d = np.asarray(d, float)
    attacked_means, certified_means = np.asarray(attacked_means, float), np.asarray(certified_means, float)
    low, high = np.minimum(attacked_means, certified_means), np.maximum(attacked_means, certified_means)
    rising = np.log(d) > np.mean(np.log(d))
    steepest, shallowest = np.where(rising, low, high), np.where(rising, high, low)
    return slope_case(where, d, attacked_means, n)._replace(
        ends=(slope_case(where, d, steepest, n), slope_case(where, d, shallowest, n))
    )


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
    """The command that reproduces the run: as it was typed when meta.json has it, else rebuilt."""
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


def claims(path: str | Path) -> list[Claim]:
    """Every claim one run folder can decide."""
    meta, rows, cell_stats = read_run(path)
    study = study_of(meta)
    command, run = command_of(meta, study), str(path)
    if study == "mnist":
        return mnist_claims(rows, command, run)
    if study == "imagenet":
        return imagenet_claims(rows, command, run)
    return sweep_claims(meta, rows, cell_stats, command, run)


def ledger(paths) -> list[Claim]:
    """The claims of several run folders, one per claim: a claim two runs decide (Figure 2 from runs
    at d = 12 and at d = 17) is judged on the cases of both, and names both runs and commands."""
    merged: dict[str, Claim] = {}
    for claim in (claim for path in paths for claim in claims(path)):
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
    finite = rows[~rows["nonfinite"].astype(bool)] if "nonfinite" in rows else rows
    present = list(dict.fromkeys(finite["experiment"]))
    for name, (order, title, paper) in THEOREMS.items():
        part = finite[finite["experiment"] == name]
        if part.empty:
            continue
        per_d = part.groupby("d")["gap"].mean()
        case = slope_case("d = " + _span(per_d.index), per_d.index, per_d.to_numpy(), len(part))
        out.append(
            Claim(order, title, SLOPE_STATEMENT, paper, "log-log slope of the mean gap against d", "<=", -0.5, 0.0,
                  (case,), command, run)
        )
    if "thm4" in present:
        out.append(lemma3_claim(cell_stats, command, run))
    if "linear" in present:
        out += linear_claims(finite[finite["experiment"] == "linear"], axes, command, run)
    if "relu" in present:
        out += relu_claims(finite[finite["experiment"] == "relu"], axes, command, run)
    return out


def _span(ds) -> str:
    ds = sorted(int(d) for d in ds)
    if len(ds) > 2 and ds == list(range(ds[0], ds[-1] + 1)):
        return f"{ds[0]}..{ds[-1]}"
    return ", ".join(map(str, ds))


def lemma3_claim(cell_stats: dict, command: str, run: str) -> Claim:
    p_values = [s["lemma3_ks_bonferroni_p"] for (cell, _), s in cell_stats.items()
                if cell == "thm4" and "lemma3_ks_bonferroni_p" in s]
    rejected = int(sum(p < 0.05 for p in p_values))
    return Claim(
        4.5,
        "Lemma 3",
        "R of a product of Gaussian matrices has the entries of the product of their Bartlett factors",
        "a distributional identity (no number)",
        "share of d at which the two-sample KS test over R's entries (Bonferroni) rejects at 5%",
        "<=",
        0.05,
        0.0,
        (proportion_case(f"{len(p_values)} d", rejected, len(p_values)),),
        command,
        run,
    )


def linear_claims(rows: pd.DataFrame, axes: list[str], command: str, run: str) -> list[Claim]:
    if axes:
        return grid_linear_claims(rows, axes, command, run)
    ok = rows[linear.successes(rows)]
    table2 = ok[ok["cos_theta2"].abs() > linear.TABLE2_FILTER]
    abs_cos1 = lambda part: part["cos_theta1"].abs()  # noqa: E731
    paper2 = linear.PAPER_TABLE2[12]
    ds = sorted(int(d) for d in rows["d"].unique())
    tracked = tuple(
        mean_case(f"d = {d}", abs_cos1(part) - part["phi"]) for d, part in table2.groupby("d") if int(d) in ds
    )
    out = [
        Claim(
            20.1,
            "Table 1",
            "a trained linear net's W1 aligns with the last row of A^-1: |cos θ2| ≈ 1 (nets with training accuracy 1)",
            "|cos θ2| > 0.99 in 9 of 10 runs (d = 12)",
            "mean |cos θ2| over nets with training accuracy 1",
            "=", 1.0, APPROX_TOLERANCE,
            tuple(mean_case(f"d = {d}", part["cos_theta2"].abs()) for d, part in ok.groupby("d")),
            command, run,
        ),
        Claim(
            20.2,
            "Table 1 (robustness)",
            "|cos θ1| is the perturbation that flips it, over ‖a_d‖",
            "|cos θ1| 'quantifies how much perturbation' flips the net",
            "mean of robustness / ‖a_d‖ − |cos θ1| over nets with training accuracy 1",
            "=", 0.0, APPROX_TOLERANCE,
            tuple(mean_case(f"d = {d}", part["robustness_ratio"] - abs_cos1(part)) for d, part in ok.groupby("d")),
            command, run,
        ),
    ]
    if 12 in ds:
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
            tracked,
            command, run,
        )
    )
    return out


def certified(rows: pd.DataFrame) -> bool:
    """The relu rows carry certified lower bounds (`jaxfrag sweep --certify`)."""
    return all(column in rows for column in relu.CERTIFIED_COLUMNS)


def relu_input_cases(rows: pd.DataFrame, where: str = "") -> tuple[Case, ...]:
    """Theorem 7's |cos θ_t| − δ/m per input (b1, b2 kept apart: pooled, opposite signs could cancel),
    over accurate nets whose attack flipped the label; with certified bounds r, the ends put δ
    anywhere in [r, δ] (cos θ_t stays the attacked point's)."""
    good = rows[relu.accurate(rows)]
    cases = []
    for d, part in good.groupby("d"):
        for b in relu.INPUTS:
            hit = part[part[f"flips_{b}"].astype(bool)]
            difference = hit[f"cos_theta_t_{b}"].abs() - hit[f"delta_{b}"] / hit["m"]
            at = _where(where, f"d = {int(d)}", b)
            if certified(rows):
                bound = hit[f"cos_theta_t_{b}"].abs() - hit[f"robustness_certified_{b}"] / hit["m"]
                cases.append(bracketed_mean_case(at, difference, bound))
            else:
                cases.append(mean_case(at, difference))
    return tuple(cases)


def gap_slope_case(part: pd.DataFrame, where: str) -> Case:
    """The log-log slope of the mean gap over `part`'s rows, with the brackets' ends where certified."""
    if not certified(part):
        return _per_d_slope(part, "gap", where)
    per_d = part.groupby("d")[["gap", "gap_certified"]].mean()
    return bracketed_slope_case(
        where + f" (d = {_span(per_d.index)})", per_d.index, per_d["gap"], per_d["gap_certified"], len(part)
    )


def relu_claims(rows: pd.DataFrame, axes: list[str], command: str, run: str) -> list[Claim]:
    if axes:
        return grid_relu_claims(rows, axes, command, run)
    good = rows[relu.accurate(rows)]
    paper3 = relu.PAPER_TABLE3[12]["mean"]
    table3 = tuple(
        mean_case(f"d = {int(d)}, α = {k}/9", part[f"rho_alpha_{k}"] - paper3[k])
        for d, part in good.groupby("d")
        if int(d) == 12
        for k in range(relu.ALPHAS)
    )
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
            relu_input_cases(rows),
            command, run, "" if certified(rows) else NOT_CERTIFIED,
        )
    )
    return out


def _per_d_slope(part: pd.DataFrame, column: str, where: str) -> Case:
    per_d = part.groupby("d")[column].mean()
    return slope_case(where + f" (d = {_span(per_d.index)})", per_d.index, per_d.to_numpy(), len(part))


def width_cases(rows: pd.DataFrame, axes: list[str], fitted) -> tuple[Case, ...]:
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
                cases.append(mean_case(where, part_d["gap"]))
    return tuple(cases)


def grid_linear_claims(rows: pd.DataFrame, axes: list[str], command: str, run: str) -> list[Claim]:
    slopes, tracking, selection = [], [], []
    for label, part in configurations(rows, axes):
        ok = linear.successes(part)
        fit = part[ok]
        slopes.append(_per_d_slope(fit, "gap", label))
        for d, part_d in fit.groupby("d"):
            tracking.append(mean_case(_where(label, f"d = {int(d)}"), part_d["cos_theta1"].abs() - part_d["phi"]))
        for d, part_d in part.groupby("d"):
            fitted = linear.successes(part_d)
            where = _where(label, f"d = {int(d)}")
            selection.append(difference_case(where, part_d["phi"][fitted], part_d["phi"][~fitted]))
    out = [
        Claim(
            60.1,
            "Beyond the paper: trained linear gap",
            "the trained linear nets' gap falls like d^(-1/2) or faster, to d = 64 (nets that fit)",
            "Theorem 6 for trained nets (shown to d = 17)",
            "log-log slope of the mean gap against d, nets with training accuracy 1",
            "<=", -0.5, 0.0, tuple(slopes), command, run,
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
    widths = width_cases(rows, axes, linear.successes)
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


def grid_relu_claims(rows: pd.DataFrame, axes: list[str], command: str, run: str) -> list[Claim]:
    slopes, relation = [], []
    for label, part in configurations(rows, axes):
        slopes.append(gap_slope_case(part[relu.accurate(part)], label))
        relation += relu_input_cases(part, label)
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
            "<=", -0.5, 0.0, tuple(slopes), command, run, unbracketed,
        ),
    ]


# ---- MNIST (Tables 5-6) and ImageNet (Tables 7-8, Figure 6) -------------------------------------


def mnist_claims(rows: pd.DataFrame, command: str, run: str) -> list[Claim]:
    usable = rows[~rows["crossed"].astype(bool) & rows["has_a1"].astype(bool)]
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
            cases.append(mean_case(f"{rule} rule, Q FGSM", block[column].abs() - block["Q_fgsm_ratio"]))
            # FGSM's Q is its own step, not the minimal perturbation, so only min L2's has a bracket.
            attacked = block[column].abs() - block["Q_l2_ratio"]
            where = f"{rule} rule, Q min L2"
            if bracketed:
                cases.append(bracketed_mean_case(where, attacked, block[column].abs() - block["Q_certified_ratio"]))
            else:
                cases.append(mean_case(where, attacked))
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
        mean_case(f"{rule} rule", usable[usable["mask_rule"] == rule][alphas].mean(axis=1).abs() - paper6)
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


def imagenet_claims(rows: pd.DataFrame, command: str, run: str) -> list[Claim]:
    paper8 = imagenet_experiment.PAPER_TABLE8
    m = rows["M_ratio"].abs()
    cases = []
    for q, label in (("Q_ll", "Kurakin (the paper's Q)"), ("Q_l2_targeted", "minimal L2, targeted")):
        ok = rows[f"{q}_success"].astype(bool)
        cases.append(mean_case(label, (m - rows[f"{q}_ratio"])[ok]))
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
            "=", 0.0, APPROX_TOLERANCE, (mean_case("all pairs", rows["cos_mean"].abs() - paper7),), command, run,
            UNBRACKETED["Table 7 and Figure 6"],
        ),
    ]


# ---- output -------------------------------------------------------------------------------------


def records(found: list[Claim]) -> pd.DataFrame:
    out = []
    for claim in found:
        case = headline(claim)
        decided, conditions = verdict(claim)
        out.append(
            {
                "order": claim.order, "claim": claim.claim, "statement": claim.statement, "paper": claim.paper,
                "statistic": claim.statistic, "relation": claim.relation, "target": claim.target,
                "tolerance": claim.tolerance, "estimate": case.estimate, "low": case.low, "high": case.high,
                "n": case.n, "verdict": decided, "conditions": conditions, "brackets": brackets_text(claim),
                "command": claim.command, "run": claim.run,
            }
        )
    return pd.DataFrame.from_records(out, columns=list(CSV_COLUMNS))


END_COLUMNS = tuple(f"{end}_{field}" for end in ENDS for field in ("estimate", "low", "high"))
CASE_COLUMNS = ("claim", "where", "estimate", "low", "high", "n", *END_COLUMNS, "verdict", "run")


def case_records(found: list[Claim]) -> pd.DataFrame:
    out = []
    for claim in found:
        for case, decided in zip(claim.cases, case_verdicts(claim), strict=True):
            row = {"claim": claim.claim, **case._replace(ends=None)._asdict(), "verdict": decided, "run": claim.run}
            for end, at in zip(ENDS, case.ends or (None, None), strict=True):
                row |= {f"{end}_{field}": getattr(at, field) if at else math.nan for field in Case._fields[1:4]}
            out.append(row)
    return pd.DataFrame.from_records(out, columns=list(CASE_COLUMNS))


def _case_of(row) -> Case:
    """A Case from a row of verdict_cases.csv (its ends, where the row has them)."""
    case = Case(str(row["where"]), float(row["estimate"]), float(row["low"]), float(row["high"]), int(row["n"]))
    if not all(column in row and np.isfinite(row[column]) for column in (f"{end}_estimate" for end in ENDS)):
        return case
    ends = tuple(
        case._replace(**{field: float(row[f"{end}_{field}"]) for field in ("estimate", "low", "high")}) for end in ENDS
    )
    return case._replace(ends=ends)


def band(claim_row) -> str:
    target, tolerance = claim_row["target"], claim_row["tolerance"]
    if tolerance:
        return f"{claim_row['relation']} {target:g} ± {tolerance:g}"
    return f"{claim_row['relation']} {target:g}"


def markdown(table: pd.DataFrame, runs_text: bool = True) -> str:
    """verdicts.md's table: claim, paper, ours [95% interval], n, test, verdict, the verdict at the ends
    of the certified brackets (— where the robustness is exact), and what it rests on."""
    lines = [
        "| claim | the paper | ours [95% interval] | n | test | verdict | with certified brackets |",
        "|---|---|---|---|---|---|---|",
    ]
    def cell(text) -> str:  # a "|" inside a cell would end it: |cos θ| is written \|cos θ\|
        return str(text).replace("|", "\\|")

    for _, row in table.iterrows():
        ours = stats.format_estimate(row["estimate"], low=row["low"], high=row["high"], spec="+.3f")
        verdict_text = f"**{row['verdict']}**" + (f": {row['conditions']}" if row["conditions"] else "")
        lines.append(
            f"| **{cell(row['claim'])}**: {cell(row['statement'])} | {cell(row['paper'])} "
            f"| {ours} ({cell(row['statistic'])}) | {int(row['n'])} | {band(row)} | {cell(verdict_text)} "
            f"| {cell(row['brackets']) if isinstance(row['brackets'], str) and row['brackets'] else '—'} |"
        )
    if runs_text:
        lines += ["", "Reproduce each row with its run's command:", ""]
        commands = {}
        for runs, joined in zip(table["run"], table["command"], strict=True):  # merged claims join with "; "
            commands.update(zip(runs.split("; "), joined.split("; "), strict=True))
        lines += [f"- `{run}`: `{command}`" for run, command in commands.items()]
    return "\n".join(lines) + "\n"


RULE_TEXT = (
    f"A case is untested when it rests on fewer than {MIN_SAMPLES} independent samples or has no 95% interval; "
    "otherwise it holds when its 95% interval reaches the paper's band (target ± tolerance for =, at or below "
    "the target for <=, at or above it for >=) and fails when the whole interval lies outside. A claim holds "
    "when every tested case holds, fails when none does, and otherwise holds only under the conditions listed. "
    f"The paper's ≈ is read as within {APPROX_TOLERANCE} of the optimal classifier's robustness; the ours column "
    "shows the case farthest from the paper's value. Where a verdict rests on attacked norms and the run certified "
    "a lower bound on each, the last column judges the claim again at the lowest and the highest value its "
    "statistic can take with every norm anywhere in its bracket [certified, attacked]; it is open where a case "
    "fails below the paper's band at one end and above it at the other, since the truth lies between."
)


def read(out: str | Path) -> list[Claim]:
    """The claims of a ledger `write` made in `out` (verdicts.csv and verdict_cases.csv), in its order.

    ValueError when `out` holds no ledger. Verdicts and conditions are not read back: `judge`
    decides them again from the cases."""
    out = Path(out)
    paths = [out / "verdicts.csv", out / "verdict_cases.csv"]
    if not all(path.is_file() for path in paths):
        raise ValueError(f"{out} holds no verdict ledger (verdicts.csv and verdict_cases.csv)")
    table, table_cases = (pd.read_csv(path) for path in paths)
    if "brackets" not in table:  # written before certified brackets
        table["brackets"] = [UNBRACKETED.get(claim, "") for claim in table["claim"]]
    text = ["claim", "statement", "paper", "statistic", "relation", "command", "run", "brackets"]
    table[text] = table[text].astype(object).fillna("")  # an empty cell reads back as NaN

    def note(row) -> str:
        # Why a claim has no certified ends is what the tool can do now, not when the ledger was written.
        return UNBRACKETED.get(row["claim"], row["brackets"])

    found = []
    for _, row in table.iterrows():
        cases = tuple(_case_of(c) for _, c in table_cases[table_cases["claim"] == row["claim"]].iterrows())
        found.append(
            Claim(
                float(row["order"]), row["claim"], row["statement"], row["paper"], row["statistic"],
                row["relation"], float(row["target"]), float(row["tolerance"]),
                cases, row["command"], row["run"], "" if any(case.ends for case in cases) else note(row),
            )  # fmt: skip
        )
    return found


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
