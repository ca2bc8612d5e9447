"""The verdict ledger: its one rule on synthetic intervals, and its claims on synthetic run folders
whose statistics are recomputed here with numpy and scipy."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT
from scipy import stats

from jaxfrag.experiments import imagenet as imagenet_experiment
from jaxfrag.experiments import mnist as mnist_experiment
from jaxfrag.reports import verdicts
from jaxfrag.reports.verdicts import CONDITIONAL, FAILS, HOLDS, UNDECIDED, UNTESTED, Case, Claim

# (relation, target, tolerance, low, high, n) -> the verdict the rule must give.
RULE_CASES = [
    (("=", 0.0, 0.05, -0.04, 0.03, 50), HOLDS),  # the interval inside the band
    (("=", 0.0, 0.05, -0.05, 0.05, 50), HOLDS),  # the band's edges belong to it
    (("=", 0.0, 0.05, -0.1, 0.2, 50), UNDECIDED),  # it holds the target but leaves the band: shows nothing
    (("=", 0.0, 0.05, 0.01, 0.2, 50), UNDECIDED),  # across the top edge
    (("=", 0.0, 0.05, -0.3, -0.02, 50), UNDECIDED),  # across the bottom edge
    (("=", 0.0, 0.05, 0.06, 0.2, 50), FAILS),  # wholly above
    (("=", 0.0, 0.05, 0.05, 0.2, 50), UNDECIDED),  # touching the band is not outside it
    (("=", 1.0, 0.05, 0.90, 0.94, 50), FAILS),  # wholly below
    (("=", 1.0, 0.05, 0.888, 1.009, 50), UNDECIDED),  # Table 1's |cos θ2| once called "holds"
    (("<=", -0.5, 0.05, -0.8, -0.7, 50), HOLDS),  # falls faster than the bound: wholly on the claim's side
    (("<=", -0.5, 0.05, -0.8, -0.45, 50), HOLDS),  # up to the margin
    (("<=", -0.5, 0.05, -0.6, -0.1, 50), UNDECIDED),  # reaches the bound, but not wholly below it
    (("<=", -0.5, 0.05, -0.685, 1.02, 50), UNDECIDED),  # the trained ReLU gap's slope once called "holds"
    (("<=", -0.5, 0.05, -0.44, -0.1, 50), FAILS),  # wholly above the bound and its margin
    (("<=", -0.5, 0.0, -0.45, -0.1, 50), FAILS),
    ((">=", 0.5, 0.0, 0.1, 0.4, 50), FAILS),
    ((">=", 0.5, 0.0, 0.4, 0.9, 50), UNDECIDED),
    ((">=", 0.5, 0.0, 0.5, 0.9, 50), HOLDS),
    (("=", 0.0, 0.05, -0.01, 0.02, 9), UNTESTED),  # too few samples, whatever the interval
    (("=", 0.0, 0.0, 0.5, 0.6, 3), UNTESTED),
    (("=", 0.0, 0.05, np.nan, np.nan, 500), UNTESTED),  # no interval
]


def rule_mistakes(rule) -> list:
    """The RULE_CASES that `rule` gets wrong (empty for a correct rule)."""
    return [(args, expected, rule(*args)) for args, expected in RULE_CASES if rule(*args) != expected]


def test_the_rule_turns_intervals_into_the_documented_verdicts():
    assert rule_mistakes(verdicts.judge) == []


def _reaches_band(relation, target, tolerance, low, high, n):
    """The rule this ledger used to have: a case holds when its interval REACHES the band."""
    if n < verdicts.MIN_SAMPLES or not (np.isfinite(low) and np.isfinite(high)):
        return UNTESTED
    below, above = low <= target + tolerance, high >= target - tolerance
    return HOLDS if {"=": below and above, "<=": below, ">=": above}[relation] else FAILS


def _ignores_tolerance(relation, target, tolerance, low, high, n):
    return verdicts.judge(relation, target, 0.0, low, high, n)


def _point_estimate(relation, target, tolerance, low, high, n):
    mid = (low + high) / 2  # judges the estimate, not the interval
    return verdicts.judge(relation, target, tolerance, mid, mid, n)


def _no_sample_floor(relation, target, tolerance, low, high, n):
    return verdicts.judge(relation, target, tolerance, low, high, max(n, verdicts.MIN_SAMPLES))


def _two_sided_bounds(relation, target, tolerance, low, high, n):
    return verdicts.judge("=", target, tolerance, low, high, n)


def _touching_fails(relation, target, tolerance, low, high, n):
    return verdicts.judge(relation, target, tolerance - 1e-9, low, high, n)


@pytest.mark.parametrize(
    "wrong", [_reaches_band, _ignores_tolerance, _point_estimate, _no_sample_floor, _two_sided_bounds, _touching_fails]
)
def test_a_wrong_rule_is_caught(wrong):
    assert rule_mistakes(wrong), f"{wrong.__name__} passed every case: the cases cannot tell it from the rule"


def test_the_rule_refuses_an_unknown_relation():
    with pytest.raises(ValueError):
        verdicts.judge("~", 0, 0, -1, 1, 100)


def _claim(*cases, relation="=", target=0.0, tolerance=0.05, interval=verdicts.FIXED):
    """A claim of (estimate, se, n) cases, fixed-n intervals with the normal's quantile (df inf)."""
    made = tuple(Case(f"case {k}", estimate, se, n) for k, (estimate, se, n) in enumerate(cases))
    return Claim(1, "claim", "statement", "paper", "statistic", relation, target, tolerance, made, "cmd", "run",
                 interval=interval)  # fmt: skip


def test_a_claims_cases_share_one_family_wise_error():
    # Each of k cases is judged at level 1 - 0.05 / k (Bonferroni): its interval is the normal's at that level.
    for k in (1, 2, 7):
        claim = _claim(*[(0.01, 0.02, 100)] * k)
        low, high = verdicts.case_interval(claim, claim.cases[0])
        z = stats.norm.ppf(1 - 0.05 / k / 2)
        assert (low, high) == pytest.approx((0.01 - z * 0.02, 0.01 + z * 0.02))
    # A case inside the band alone holds; beside 19 more identical cases its interval widens across the edge.
    assert verdicts.verdict(_claim((0.01, 0.018, 100)))[0] == HOLDS
    assert verdicts.verdict(_claim(*[(0.01, 0.018, 100)] * 20))[0] == UNDECIDED


def test_a_claim_joins_its_cases_with_the_one_rule():
    inside, outside, across, few = (0.0, 0.001, 50), (1.0, 0.001, 50), (0.05, 0.01, 50), (0.0, 0.001, 5)
    assert verdicts.verdict(_claim(inside, inside)) == (HOLDS, "")
    assert verdicts.verdict(_claim(outside, outside))[0] == FAILS
    decided, conditions = verdicts.verdict(_claim(inside, outside, across, few))
    assert decided == CONDITIONAL
    assert conditions == (
        "holds at 1 of 3 cases (case 0); fails at 1. undecided at 1 (case 2). untested at 1 (too few samples)"
    )
    decided, conditions = verdicts.verdict(_claim(inside, inside, across))
    assert (decided, conditions) == (UNDECIDED, "holds at 2 of 3 cases. undecided at 1 (case 2)")
    assert verdicts.verdict(_claim(across))[0] == UNDECIDED
    assert verdicts.verdict(_claim(few, few)) == (UNTESTED, "")
    # The one-row summary shows the tested case farthest from the paper's value.
    assert verdicts.headline(_claim(inside, outside, (5, 1, 5))).where == "case 1"


def test_the_samples_that_would_decide_a_case_are_the_first_at_which_its_interval_leaves_the_edge():
    for interval in verdicts.INTERVALS:
        # Inside the band but across its top edge: more samples at the same spread make it hold.
        case = Case("d = 12", 0.03, 0.015, 40, df=39, trials=100, cost_s=60.0, unit="nets that fit")
        claim = _claim((0, 1, 50), interval=interval)._replace(cases=(case,))
        assert verdicts.case_verdict(claim, case) == UNDECIDED
        found = verdicts.to_decide(claim, case)
        spread = case.se * np.sqrt(case.n)

        def at(n, case=case, claim=claim, spread=spread):
            grown = case._replace(se=spread / np.sqrt(n), n=n, df=case.df + n - case.n)
            return verdicts.case_verdict(claim._replace(cases=(grown,)), grown)

        assert at(found.n) == HOLDS and at(found.n - 1) == UNDECIDED
        assert found.more == found.n - 40
        assert found.trials == pytest.approx(100 * (found.n / 40 - 1))  # the run's yield: 40 of 100 trials fit
        assert found.seconds == pytest.approx(60 * (found.n / 40 - 1))
        text = verdicts.decision_text(claim, case)
        assert text.startswith(f"about {found.more} more nets that fit (about ") and text.endswith(" min")
        # An estimate on the band's edge: no affordable sample size decides it.
        edge = case._replace(estimate=0.05)
        assert verdicts.to_decide(claim, edge) is None
        assert "sits on the band's edge" in verdicts.decision_text(claim, edge)


def _t_interval(values, level: float = 0.95):
    values = np.asarray(values, float)
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def _write_run(path, meta: dict, rows: pd.DataFrame):
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps(meta))
    rows.to_parquet(path / "results.parquet")
    return path


def _sweep_rows(rng, name: str, dims, slope: float, trials: int = 40) -> pd.DataFrame:
    frames = []
    for d in dims:
        gap = d**slope * rng.lognormal(0, 0.1, trials)
        columns = {"experiment": name, "d": d, "trial": np.arange(trials), "nonfinite": False, "gap": gap}
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("slope, expected", [(-0.75, HOLDS), (-0.52, HOLDS), (-0.2, FAILS), (-0.45, UNDECIDED)])
def test_theorem_rows_fit_the_mean_gap_and_judge_the_slope(tmp_path, slope, expected):
    rng = np.random.default_rng(0)
    dims = [8, 16, 24, 32, 48, 64]
    rows = _sweep_rows(rng, "thm1", dims, slope)
    meta = {"config": {"experiments": ["thm1"], "d": dims, "trials": 40}, "argv": ["--d", "8..64", "--out", "x"]}
    (claim,) = verdicts.claims(_write_run(tmp_path / "run", meta, rows))
    per_d = rows.groupby("d")["gap"]
    means, sems = per_d.mean().to_numpy(), per_d.std(ddof=1).to_numpy() / np.sqrt(per_d.size().to_numpy())
    fit = stats.linregress(np.log(dims), np.log(means))
    # The slope's sampling error by the delta method: slope = sum w_i log(mean_i), var = sum w_i^2 (se_i/mean_i)^2.
    x = np.log(dims)
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    case = claim.cases[0]
    assert case.estimate == pytest.approx(fit.slope)
    assert case.se == pytest.approx(np.sqrt(((weights * sems / means) ** 2).sum()))
    assert case.n == len(rows) and claim.command == "jaxfrag sweep --d 8..64 --out x"
    assert (claim.relation, claim.target, claim.tolerance) == ("<=", -0.5, verdicts.SLOPE_MARGIN)
    assert verdicts.verdict(claim)[0] == expected


def _linear_rows(rng, d: int, n: int, offset: float) -> pd.DataFrame:
    phi = rng.uniform(0.1, 0.6, n)
    return pd.DataFrame(
        {
            "experiment": "linear", "d": d, "trial": np.arange(n), "nonfinite": False,
            "train_acc": np.where(np.arange(n) % 5 == 0, 0.9, 1.0), "diverged": False,
            "cos_theta1": -(phi + offset + rng.normal(0, 0.02, n)), "phi": phi,
            "cos_theta2": np.where(np.arange(n) % 7 == 0, -0.5, -0.99),
            "robustness_ratio": phi + rng.normal(0, 0.02, n),
        }
    )  # fmt: skip


@pytest.mark.parametrize("offset, expected", [(0.02, HOLDS), (0.12, FAILS)])
def test_table2_is_the_paired_difference_on_the_papers_nets(tmp_path, offset, expected):
    rng = np.random.default_rng(1)
    rows = _linear_rows(rng, 12, 200, offset)
    meta = {"config": {"experiments": ["linear"], "d": [12], "trials": 200}, "stages": {"linear/d=12": {"run_s": 80}}}
    run = _write_run(tmp_path / "run", meta, rows)
    found = {claim.claim: claim for claim in verdicts.claims(run, interval=verdicts.FIXED)}
    assert {"Table 1", "Table 1 (robustness)", "Table 2", "Figure 2"} <= set(found)
    kept = rows[(rows.train_acc == 1) & (rows.cos_theta2.abs() > 0.9)]
    mean, low, high = _t_interval(kept.cos_theta1.abs() - kept.phi)
    (case,) = found["Table 2"].cases
    assert (case.estimate, *verdicts.case_interval(found["Table 2"], case), case.n) == pytest.approx(
        (mean, low, high, len(kept))
    )
    assert (case.trials, case.cost_s) == (200, 80)  # what the run spent on the cell the case rests on
    assert verdicts.verdict(found["Table 2"])[0] == expected
    # The anytime interval is wider than the fixed-n one, around the same estimate.
    anytime = verdicts.claims(run)[2]
    assert anytime.claim == "Table 2" and anytime.interval == verdicts.ANYTIME
    wide = verdicts.case_interval(anytime, anytime.cases[0])
    assert wide[0] < low and wide[1] > high and np.mean(wide) == pytest.approx(mean)


def _relu_rows(rng, d: int, n: int, shift_b2: float) -> pd.DataFrame:
    m = rng.uniform(4, 6, n)
    columns = {"experiment": "relu", "d": d, "trial": np.arange(n), "nonfinite": False, "train_acc": 1.0}
    columns |= {"diverged": False, "m": m}
    for k in range(10):
        columns[f"rho_alpha_{k}"] = rng.uniform(0.2, 0.45, n)
    for b, shift in (("b1", -shift_b2), ("b2", shift_b2)):
        ratio = rng.uniform(0.1, 0.5, n)
        columns |= {f"delta_{b}": ratio * m, f"flips_{b}": True}
        columns[f"cos_theta_t_{b}"] = -(ratio + shift + rng.normal(0, 0.01, n))
    return pd.DataFrame(columns)


def test_table4_keeps_the_inputs_apart_so_opposite_errors_cannot_cancel(tmp_path):
    rng = np.random.default_rng(2)
    rows = _relu_rows(rng, 12, 100, shift_b2=0.08)  # b1 off by -0.08, b2 by +0.08: pooled, about 0
    meta = {"config": {"experiments": ["relu"], "d": [12], "trials": 100}}
    found = {claim.claim: claim for claim in verdicts.claims(_write_run(tmp_path / "run", meta, rows))}
    table4 = found["Table 4 (Theorem 7)"]
    assert [case.where for case in table4.cases] == ["d = 12, b1", "d = 12, b2"]
    for case, b in zip(table4.cases, ("b1", "b2"), strict=True):
        difference = rows[f"cos_theta_t_{b}"].abs() - rows[f"delta_{b}"] / rows.m
        assert case.estimate == pytest.approx(difference.mean()) and case.n == len(rows)
    assert verdicts.verdict(table4)[0] == FAILS
    assert len(found["Table 3 (Theorem 7)"].cases) == 10


def test_study_claims_are_untested_below_ten_samples(tmp_path):
    rng = np.random.default_rng(3)
    n = 6
    columns = {"crossed": False, "has_a1": True, "cos_theta_t": -rng.uniform(0.2, 0.4, n)}
    columns |= {"M_ratio": -rng.uniform(0.3, 0.6, n), "Q_fgsm_ratio": rng.uniform(0.3, 0.6, n)}
    columns |= {"Q_l2_ratio": rng.uniform(0.3, 0.6, n)}
    columns |= {f"cos_theta_alpha_{i}": -rng.uniform(0.1, 0.3, n) for i in range(mnist_experiment.ALPHA_TABLE)}
    rows = pd.concat([pd.DataFrame(columns).assign(mask_rule=rule) for rule in mnist_experiment.MASK_RULES])
    mnist = _write_run(tmp_path / "mnist", {"config": {"experiment": "mnist"}, "command": ["jaxfrag", "mnist"]}, rows)
    found = verdicts.claims(mnist)
    assert [claim.claim for claim in found] == [
        "Table 5 (compression)", "Table 5 (path length)", "Table 6",
    ]  # fmt: skip
    assert all(verdicts.verdict(claim)[0] == UNTESTED for claim in found)
    first = found[0].cases[0]  # the stroke rule against FGSM's Q
    assert first.estimate == pytest.approx((rows.cos_theta_t.abs() - rows.Q_fgsm_ratio)[:n].mean())
    pairs = pd.DataFrame(
        {"M_ratio": -rng.uniform(0.05, 0.1, 4), "cos_mean": rng.uniform(-0.01, 0.01, 4)}
        | {f"{q}_{kind}": values for q in ("Q_ll", "Q_l2_targeted")
           for kind, values in (("ratio", rng.uniform(0.05, 0.1, 4)), ("success", np.ones(4, bool)))}
    )  # fmt: skip
    imagenet = _write_run(tmp_path / "imagenet", {"config": {"experiment": "imagenet"}}, pairs)
    found = verdicts.claims(imagenet)
    assert [claim.claim for claim in found] == ["Table 8", "Table 7 and Figure 6"]
    assert all(verdicts.verdict(claim)[0] == UNTESTED for claim in found)
    paper = np.mean(np.abs(imagenet_experiment.PAPER_TABLE7_AVERAGE))
    assert found[1].cases[0].estimate == pytest.approx((pairs.cos_mean.abs() - paper).mean())


def test_certified_mnist_rows_bracket_the_minimal_l2_cases_and_not_fgsms(tmp_path):
    # jaxfrag mnist --certify: Q_l2's cases get ends at Q_certified and at Q_l2; FGSM's Q is its own
    # step, not the minimal perturbation, so its cases keep none.
    rng = np.random.default_rng(5)
    n = 30
    q_l2 = rng.uniform(0.5, 1.0, n)
    columns = {"crossed": False, "has_a1": True, "cos_theta_t": -rng.uniform(0.2, 0.4, n)}
    columns |= {"M_ratio": -rng.uniform(0.3, 0.6, n), "Q_fgsm_ratio": rng.uniform(0.6, 1.2, n)}
    columns |= {"Q_l2_ratio": q_l2, "Q_certified_ratio": q_l2 / rng.uniform(5, 20, n)}
    columns |= {f"cos_theta_alpha_{i}": -rng.uniform(0.1, 0.3, n) for i in range(mnist_experiment.ALPHA_TABLE)}
    rows = pd.concat([pd.DataFrame(columns).assign(mask_rule=rule) for rule in mnist_experiment.MASK_RULES])
    rows.loc[rows.index[:3], "Q_l2_ratio"] = np.nan  # the attack missed: no value at either end
    meta = {"config": {"experiment": "mnist"}, "command": ["jaxfrag", "mnist"]}
    run = _write_run(tmp_path / "mnist", meta, rows)
    found = {claim.claim: claim for claim in verdicts.claims(run, interval=verdicts.FIXED)}
    for title, column in (("Table 5 (compression)", "cos_theta_t"), ("Table 5 (path length)", "M_ratio")):
        claim = found[title]
        assert claim.unbracketed == ""
        for rule in mnist_experiment.MASK_RULES:
            block = rows[rows.mask_rule == rule]
            fgsm, l2 = (case for case in claim.cases if case.where.startswith(f"{rule} rule"))
            assert fgsm.where.endswith("FGSM") and fgsm.ends is None
            attacked = (block[column].abs() - block.Q_l2_ratio).dropna()
            bound = (block[column].abs() - block.Q_certified_ratio)[block.Q_l2_ratio.notna()]
            assert l2.estimate == pytest.approx(attacked.mean()) and l2.n == len(attacked) == n - 3
            # The certified Q is the shorter, so |cos| - Q is largest there: the highest end.
            assert (l2.ends[0].estimate, l2.ends[1].estimate) == pytest.approx((attacked.mean(), bound.mean()))
            # Each of the claim's 4 cases at level 1 - 0.05 / 4, its ends too.
            at_end = verdicts.case_interval(claim, l2.ends[1])
            assert at_end == pytest.approx(_t_interval(bound, 1 - 0.05 / 4)[1:])
        # At Q_l2 the left side is well below Q/(0.5L), at Q_certified (5-20 times shorter) well above:
        # each min-L2 case fails on both sides, so the band lies inside its bracket and the truth may hold.
        assert verdicts.bracket_verdicts(claim) == (FAILS, FAILS)
        assert [case.where for case in verdicts.straddling(claim)] == [
            f"{rule} rule, Q min L2" for rule in mnist_experiment.MASK_RULES
        ]
        assert verdicts.brackets_text(claim).startswith("open: 2 case(s) fail below the band"), claim.claim
    # Brackets a twentieth wide leave both ends below the band: failed whatever the true perturbation.
    narrow = rows.assign(Q_certified_ratio=rows.Q_l2_ratio / 1.05)
    claim = verdicts.claims(_write_run(tmp_path / "narrow", meta, narrow))[0]
    assert verdicts.straddling(claim) == []
    assert verdicts.brackets_text(claim) == "fails at both ends, case by case"
    plain = _write_run(tmp_path / "plain", meta, rows.drop(columns=["Q_certified_ratio"]))
    table5 = verdicts.claims(plain)[0]
    assert all(case.ends is None for case in table5.cases)
    assert verdicts.brackets_text(table5) == verdicts.NOT_CERTIFIED


def test_verdicts_command_writes_the_ledger_and_refuses_what_is_not_a_run(tmp_path):
    rng = np.random.default_rng(4)
    dims = [8, 16, 32]
    rows = pd.concat([_sweep_rows(rng, "thm1", dims, -0.8), _sweep_rows(rng, "thm6", dims, -0.55)])
    run = _write_run(tmp_path / "run", {"config": {"experiments": ["thm1", "thm6"], "d": dims, "trials": 40}}, rows)
    command = [sys.executable, "-m", "jaxfrag", "verdicts", str(run), "--ledger", str(tmp_path / "ledger")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "ledger" / "verdicts.csv")
    assert list(table.claim) == ["Theorem 1", "Theorem 6"] and list(table.columns) == list(verdicts.CSV_COLUMNS)
    assert "| **Theorem 1**:" in (tmp_path / "ledger" / "verdicts.md").read_text() and "Theorem 6" in result.stdout
    cases = pd.read_csv(tmp_path / "ledger" / "verdict_cases.csv")
    assert len(cases) == 2 and set(cases.verdict) <= set(verdicts.VERDICTS)
    refused = subprocess.run(command[:4] + [str(tmp_path / "absent")], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "not a run folder" in refused.stderr


def test_a_ledger_reads_back_exactly_and_update_replaces_only_the_rerun_claims(tmp_path):
    rng = np.random.default_rng(7)
    dims = [8, 16, 32]
    rows = pd.concat([_sweep_rows(rng, "thm1", dims, -0.8), _sweep_rows(rng, "thm6", dims, -0.55)])
    config = {"config": {"experiments": ["thm1", "thm6"], "d": dims, "trials": 40}}
    first = verdicts.ledger([_write_run(tmp_path / "first", config, rows)])
    verdicts.write(tmp_path / "ledger", first)
    assert repr(verdicts.read(tmp_path / "ledger")) == repr(first)  # every field, cases included (NaN too)
    # A re-run of Theorem 1 alone, now failing its bound: its row changes, Theorem 6's stays.
    rerun = _write_run(
        tmp_path / "rerun", {"config": {"experiments": ["thm1"], "d": dims, "trials": 40}},
        _sweep_rows(rng, "thm1", dims, 0.3),
    )  # fmt: skip
    command = [sys.executable, "-m", "jaxfrag", "verdicts", str(rerun), "--ledger", str(tmp_path / "ledger")]
    result = subprocess.run(command + ["--update"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "ledger" / "verdicts.csv")
    assert list(table.claim) == ["Theorem 1", "Theorem 6"]
    assert list(table.run) == [str(rerun), str(tmp_path / "first")]
    assert list(table.verdict) == [FAILS, verdicts.verdict(first[1])[0]]
    cases = pd.read_csv(tmp_path / "ledger" / "verdict_cases.csv")
    assert list(cases.run) == [str(rerun), str(tmp_path / "first")]
    empty = subprocess.run(command[:-1] + [str(tmp_path / "none"), "--update"], capture_output=True, text=True)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "holds no verdict ledger" in empty.stderr


def test_grid_claims_pair_widths_by_trial_and_judge_each_configuration(tmp_path):
    rng = np.random.default_rng(5)
    frames = []
    for width, shift in ((512, 0.0), (64, 0.1)):
        for d in (8, 16, 32):
            rows = _linear_rows(rng, d, 60, offset=0.02 if width == 512 else 0.2)
            rows["gap"] = d**-0.6 + shift + rng.normal(0, 0.01, len(rows))
            frames.append(rows.assign(width=width, protocol="epochs"))
    rows = pd.concat(frames, ignore_index=True)
    meta = {"config": {"experiments": ["linear"], "d": [8, 16, 32], "trials": 60,
                       "grid": {"protocol": ["epochs"], "width": [512, 64]}}}  # fmt: skip
    # The cells' stages as the sweep names them, in --grid's order (width first): meta.json's config sorts it.
    meta["stages"] = {
        f"linear~width={w},protocol=epochs/d={d}": {"run_s": d + w} for w in (512, 64) for d in (8, 16, 32)
    }
    run = _write_run(tmp_path / "run", meta, rows)
    found = {claim.claim: claim for claim in verdicts.claims(run, interval=verdicts.FIXED)}
    tracking = found["Beyond the paper: |cos θ1| tracks φ"]
    assert len(tracking.cases) == 6 and tracking.cases[0].where == "protocol=epochs, width=512, d = 8"
    assert tracking.cases[0].cells == (f"{run}|linear~width=512,protocol=epochs/d=8",)
    assert (tracking.cases[0].trials, tracking.cases[0].cost_s) == (60, 520)
    assert verdicts.verdict(tracking)[0] == CONDITIONAL  # width 512 tracks phi, width 64 does not
    ok = (rows.train_acc == 1) & ~rows.diverged
    width = found["Beyond the paper: width"]
    assert [case.where for case in width.cases] == [f"width=64 vs 512, protocol=epochs, d = {d}" for d in (8, 16, 32)]
    at16 = [rows[ok & (rows.width == w) & (rows.d == 16)].set_index("trial").gap for w in (64, 512)]
    assert width.cases[1].estimate == pytest.approx((at16[0] - at16[1]).dropna().mean())
    assert verdicts.verdict(width)[0] == FAILS  # +0.1, beyond the tolerance
    selection_claim = found["Beyond the paper: no selection by training success"]
    selection = selection_claim.cases[0]
    part = rows[(rows.width == 512) & (rows.d == 8)]
    fitted = ok[part.index]
    level = 1 - 0.05 / len(selection_claim.cases)
    welch = stats.ttest_ind(part.phi[fitted], part.phi[~fitted], equal_var=False).confidence_interval(level)
    assert verdicts.case_interval(selection_claim, selection) == pytest.approx((welch.low, welch.high))
    slopes = found["Beyond the paper: trained linear gap"]
    assert len(slopes.cases) == 2 and all(np.isfinite(verdicts.case_interval(slopes, c)).all() for c in slopes.cases)


def test_a_claim_two_runs_decide_is_one_row_judged_on_both(tmp_path):
    rng = np.random.default_rng(6)
    runs = []
    for d, offset in ((12, 0.02), (17, 0.2)):
        meta = {"config": {"experiments": ["linear"], "d": [d], "trials": 50}, "argv": ["--d", str(d)]}
        runs.append(_write_run(tmp_path / f"d{d}", meta, _linear_rows(rng, d, 50, offset)))
    found = [claim for claim in verdicts.ledger(runs) if claim.claim == "Figure 2"]
    assert len(found) == 1 and [case.where for case in found[0].cases] == ["d = 12", "d = 17"]
    assert found[0].command == "jaxfrag sweep --d 12; jaxfrag sweep --d 17"
    assert verdicts.verdict(found[0])[0] == CONDITIONAL  # within the tolerance at d = 12, not at d = 17
    table = verdicts.records(verdicts.ledger(runs))
    assert table["claim"].is_unique


def test_a_sweep_that_did_not_record_its_command_gets_it_rebuilt_from_its_config():
    config = {"experiments": ["linear"], "d": [8, 16], "trials": 128, "max_points": 4096, "width": 3000,
              "bias": True, "grid": {"width": [512, 64], "scale-columns": [5.0, 1.0]}}  # fmt: skip
    command = verdicts.command_of({"config": config}, "sweep")
    expected = "jaxfrag sweep --experiment linear --d 8,16 --trials 128 --bias --max-points 4096"
    assert command == expected + " --grid width=512,64 scale-columns=5,1"
    assert verdicts.command_of({"config": config, "argv": ["--d", "8"]}, "sweep") == "jaxfrag sweep --d 8"


@pytest.mark.parametrize("interval", verdicts.INTERVALS)
def test_lemma3_bounds_the_largest_ks_distance_per_d_with_dkw_bands(tmp_path, interval):
    from jaxfrag import store

    rng = np.random.default_rng(7)
    dims = list(range(8, 28))
    config = {"experiments": ["thm4"], "d": dims, "trials": 40}
    folder = store.RunFolder.open(tmp_path / "run", config, resume=False)
    frames, observed = [], {}
    for d in dims:
        rows = _sweep_rows(rng, "thm4", [d], -1.5)
        observed[d] = 0.3 if d == 20 else 0.004  # one d whose laws differ
        folder.write_cell(
            "thm4", d, rows, {"lemma3_ks_max": observed[d], "lemma3_entries": d * (d + 1) // 2, "lemma3_trials": 50_000}
        )
        frames.append(rows)
    pd.concat(frames, ignore_index=True).to_parquet(tmp_path / "run" / "results.parquet")
    (tmp_path / "run" / "meta.json").write_text(json.dumps({"config": config}))
    lemma3 = next(claim for claim in verdicts.claims(tmp_path / "run", interval) if claim.claim == "Lemma 3")
    assert [case.where for case in lemma3.cases] == [f"d = {d}" for d in dims]
    # Each entry's two empirical laws within eps of theirs at once: 2 x entries bands per case, each
    # at the family's level shared by 20 d; Massart's DKW at one n, or spent over every n.
    case = lemma3.cases[dims.index(9)]
    alpha = 0.05 / 20 / (2 * 45)
    spent = alpha / (50_000 * 50_001) if interval == verdicts.ANYTIME else alpha
    eps = np.sqrt(np.log(2 / spent) / (2 * 50_000))
    assert verdicts.case_interval(lemma3, case) == pytest.approx((0.0, 0.004 + 2 * eps))
    decided = dict(zip([c.where for c in lemma3.cases], verdicts.case_verdicts(lemma3), strict=True))
    assert decided.pop("d = 20") == FAILS and set(decided.values()) == {HOLDS}
    assert verdicts.verdict(lemma3)[0] == CONDITIONAL


def _certified_relu_grid(rng, dims, bracket_at_64: float, trials: int = 40) -> pd.DataFrame:
    """relu grid rows whose attacked gap is flat in d, with certified bounds up to 2% below it, and at
    d = 64 `bracket_at_64` times below."""
    frames = []
    for d in dims:
        rows = _relu_rows(rng, d, trials, shift_b2=0.0)
        bracket = bracket_at_64 if d == 64 else 1.0
        for b in ("b1", "b2"):
            rows[f"robustness_certified_{b}"] = rows[f"delta_{b}"] / (bracket * rng.uniform(1, 1.02, trials))
            rows[f"opt_robustness_{b}"] = rows["m"]
        rows["gap"] = 0.5 * sum(rows[f"delta_{b}"] / rows.m for b in ("b1", "b2"))
        rows["gap_certified"] = 0.5 * sum(rows[f"robustness_certified_{b}"] / rows.m for b in ("b1", "b2"))
        frames.append(rows.assign(protocol="until-fit"))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("bracket_at_64, expected", [(1.02, (FAILS, FAILS)), (4.0, (HOLDS, FAILS))])
def test_certified_brackets_judge_a_claim_at_the_lowest_and_highest_values_they_allow(
    tmp_path, bracket_at_64, expected
):
    # A flat attacked gap (slope 0): the claim "falls like d^(-1/2)" fails. Narrow brackets leave it
    # failed at both ends; a bracket of 4x at d = 64 lets the true gap fall fast enough.
    rng = np.random.default_rng(8)
    dims = [8, 16, 32, 64]
    rows = _certified_relu_grid(rng, dims, bracket_at_64)
    meta = {"config": {"experiments": ["relu"], "d": dims, "trials": 40, "grid": {"protocol": ["until-fit"]}}}
    run = _write_run(tmp_path / "run", meta, rows)
    found = {claim.claim: claim for claim in verdicts.claims(run, interval=verdicts.FIXED)}
    slope = found["Beyond the paper: trained ReLU gap"]
    (case,) = slope.cases
    # The ends against an exact search over every choice of end for each d's mean gap.
    per_d = rows.groupby("d")[["gap", "gap_certified"]].mean()
    slopes = [
        stats.linregress(np.log(dims), np.log([per_d.iloc[k, choice >> k & 1] for k in range(4)])).slope
        for choice in range(16)
    ]
    assert case.estimate == pytest.approx(slopes[0])
    assert (case.ends[0].estimate, case.ends[1].estimate) == pytest.approx((min(slopes), max(slopes)))
    assert verdicts.verdict(slope)[0] == FAILS and verdicts.bracket_verdicts(slope) == expected
    text = verdicts.brackets_text(slope)
    both = expected == (FAILS, FAILS)
    wanted = "fails at both ends, case by case" if both else "at the lowest: holds (fails at 0 of 1)"
    assert text.startswith(wanted), text
    # Theorem 7's relation: the ends put each δ at its certified bound or at the attack's norm.
    relation = found["Beyond the paper: Theorem 7's relation"]
    first = relation.cases[0]
    part = rows[rows.d == 8]
    attacked = part.cos_theta_t_b1.abs() - part.delta_b1 / part.m
    bound = part.cos_theta_t_b1.abs() - part.robustness_certified_b1 / part.m
    assert first.where.endswith("d = 8, b1") and first.estimate == pytest.approx(attacked.mean())
    assert first.ends[0].estimate == pytest.approx(attacked.mean())
    assert first.ends[1].estimate == pytest.approx(bound.mean())
    assert verdicts.case_interval(relation, first.ends[1]) == pytest.approx(
        _t_interval(bound, 1 - 0.05 / len(relation.cases))[1:]
    )
    # The ledger writes the ends and reads them back exactly; without --certify a claim says so.
    verdicts.write(tmp_path / "ledger", list(found.values()))
    assert repr(verdicts.read(tmp_path / "ledger")) == repr(list(found.values()))
    assert text in (tmp_path / "ledger" / "verdicts.md").read_text()
    plain = rows.drop(columns=["robustness_certified_b1", "robustness_certified_b2", "gap_certified"])
    (plain_slope,) = [c for c in verdicts.claims(_write_run(tmp_path / "plain", meta, plain)) if "gap" in c.claim]
    assert plain_slope.cases[0].ends is None and verdicts.brackets_text(plain_slope) == verdicts.NOT_CERTIFIED


def test_a_ledger_written_before_standard_errors_gives_back_its_means_with_their_standard_errors(tmp_path):
    # Its cases held 95% t-intervals only: for a mean, (high - low) / (2 t_0.975,n-1) is its standard
    # error exactly; its slopes' intervals were of another kind, so those claims are left out.
    rng = np.random.default_rng(9)
    rows = pd.concat([_relu_rows(rng, 12, 40, shift_b2=0.0), _sweep_rows(rng, "thm1", [8, 16, 32], -0.8)])
    meta = {"config": {"experiments": ["thm1", "relu"], "d": [12], "trials": 40}}
    found = verdicts.claims(_write_run(tmp_path / "run", meta, rows))
    verdicts.write(tmp_path / "ledger", found)
    cases = pd.read_csv(tmp_path / "ledger" / "verdict_cases.csv")
    halves = stats.t.ppf(0.975, cases.n - 1) * cases.se  # the 95% t-intervals old ledgers held
    cases["low"], cases["high"] = cases.estimate - halves, cases.estimate + halves
    kept = ["claim", "where", "estimate", "low", "high", "n", "verdict", "run"]
    cases[kept].to_csv(tmp_path / "ledger" / "verdict_cases.csv", index=False)
    back = {claim.claim: claim for claim in verdicts.read(tmp_path / "ledger")}
    assert set(back) == {"Table 3 (Theorem 7)", "Table 4 (Theorem 7)"}  # Theorem 1's slope left out
    wanted = {case.where: case for claim in found for case in claim.cases}
    for claim in back.values():
        assert claim.cases and claim.interval == verdicts.ANYTIME
        for case in claim.cases:
            assert case.se == pytest.approx(wanted[case.where].se) and case.n == wanted[case.where].n


def test_the_committed_ledger_holds_and_fails_only_what_its_intervals_show():
    """docs/ledger, read as plain CSV and checked without `judge`: a case holds only with its interval
    inside its claim's band, fails only with it wholly outside; the paper's claims have 10 samples."""
    claims = pd.read_csv(ROOT / "docs" / "ledger" / "verdicts.csv").set_index("claim")
    cases = pd.read_csv(ROOT / "docs" / "ledger" / "verdict_cases.csv")
    assert len(cases) > 100
    for _, case in cases.iterrows():
        claim = claims.loc[case["claim"]]
        bottom = claim["target"] - claim["tolerance"] if claim["relation"] in ("=", ">=") else -np.inf
        top = claim["target"] + claim["tolerance"] if claim["relation"] in ("=", "<=") else np.inf
        inside = bottom <= case["low"] and case["high"] <= top
        outside = case["high"] < bottom or case["low"] > top
        if case["verdict"] == verdicts.HOLDS:
            assert inside, (case["claim"], case["where"])
        if case["verdict"] == verdicts.FAILS:
            assert outside, (case["claim"], case["where"])
    paper = claims[~claims.index.str.startswith("Beyond the paper")]
    assert (paper["n"] >= verdicts.MIN_SAMPLES).all(), paper["n"]
