"""jaxfrag decide: a round's targets from the ledger's undecided cases, the extension it runs, and a
kill in the middle that --resume takes to the same ledger."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import PLAN_LATE, ROOT, launch_processes, sweep

from jaxfrag import decide, distributed
from jaxfrag.reports import verdicts
from jaxfrag.reports.verdicts import Case, Claim


@pytest.mark.parametrize("text, seconds", [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("600", 600)])
def test_a_budget_is_a_duration(text, seconds):
    assert decide.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 hours", "h", "0", "-3m", "1x"])
def test_a_budget_that_is_not_a_duration_is_refused(text):
    with pytest.raises(ValueError):
        decide.parse_duration(text)


def _claim(*cases):
    return Claim(1, "claim", "s", "p", "stat", "=", 0.0, 0.05, tuple(cases), "cmd", "run", interval=verdicts.FIXED)


def test_a_round_grows_each_undecided_cases_cells_by_what_would_decide_it_at_most_growth():
    cells = ("a|linear/d=8", "a|linear/d=16")
    near = Case("near", 0.03, 0.012, 40, df=39.0, cells=cells)  # undecided, a little more decides it
    far = Case("far", 0.0, 0.05, 40, df=39.0, cells=("a|linear/d=32",))  # undecided, needs far more
    edge = Case("edge", 0.05, 0.01, 40, df=39.0, cells=("b|relu/d=8",))  # on the band's edge: never
    decided = Case("held", 0.0, 0.001, 40, df=39.0, cells=("b|relu/d=16",))
    claim = _claim(near, far, edge, decided)
    assert verdicts.case_verdicts(claim) == [verdicts.UNDECIDED] * 3 + [verdicts.HOLDS]
    held = {"linear/d=8": 50, "linear/d=16": 100, "linear/d=32": 10}
    targets = decide.round_targets([claim], 4.0, lambda run, key: held[key])
    factor = verdicts.to_decide(claim, near).n / near.n
    assert 1 < factor < 4
    assert targets == {
        "a": {
            "linear/d=8": math.ceil(50 * factor), "linear/d=16": math.ceil(100 * factor), "linear/d=32": 40,
        }
    }  # fmt: skip


DECIDE_RUN = ["--experiment", "thm1", "--d", "6..9", "--trials", "10", "--seed", "2"]


def _decide(*args, check=True):
    command = [sys.executable, "-m", "jaxfrag", "decide", "--no-progress", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_decide_extends_the_cells_to_what_a_fresh_run_would_hold_and_survives_a_kill(tmp_path):
    run = tmp_path / "run"
    sweep(*DECIDE_RUN, "--out", run)
    shutil.copytree(run, tmp_path / "copy")
    _decide(tmp_path / "copy", "--ledger", tmp_path / "whole", "--rounds", "2")
    state = json.loads((tmp_path / "whole" / "decide.json").read_text())
    assert state["rounds"] == 2 and state["status"] == "done" and state["trials"] > 0
    meta = json.loads((tmp_path / "copy" / "meta.json").read_text())
    grown = set(meta["extended"].values())
    assert len(grown) == 1 and grown.pop() > 10  # every d of the slope's case grew alike
    trials = meta["extended"]["thm1/d=6"]
    # The extended run equals a run made with that many trials from the start.
    sweep(*DECIDE_RUN[:-4], "--trials", trials, "--seed", "2", "--out", tmp_path / "fresh")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "copy" / "results.parquet"),
        pd.read_parquet(tmp_path / "fresh" / "results.parquet"),
        check_exact=True,
    )
    table = pd.read_csv(tmp_path / "whole" / "verdicts.csv")
    made_by = f"&& jaxfrag decide {tmp_path / 'copy'} --ledger {tmp_path / 'whole'} --rounds 2"
    assert table["command"][0].endswith(made_by)

    # Killed in its second round (or between rounds), then resumed: the same ledger.
    ledger = tmp_path / "ledger"
    command = [sys.executable, "-m", "jaxfrag", "decide", "--no-progress", str(run), "--ledger", str(ledger)]
    process = subprocess.Popen(
        [*command, "--rounds", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        state_file = ledger / "decide.json"
        if state_file.is_file() and json.loads(state_file.read_text())["rounds"] >= 1:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "decide finished before it could be killed"
    refused = _decide(run, "--ledger", ledger, "--rounds", "2", check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr and refused.stderr.count("\n") == 1
    _decide(run, "--ledger", ledger, "--rounds", "2", "--resume")
    for name in ("verdicts.csv", "verdict_cases.csv"):
        ours, theirs = (pd.read_csv(folder / name) for folder in (ledger, tmp_path / "whole"))
        columns = [c for c in ours.columns if c not in ("run", "command", "cells", "cost_s", "to_decide")]
        pd.testing.assert_frame_equal(ours[columns], theirs[columns])  # the runs' paths and times differ
    pd.testing.assert_frame_equal(
        pd.read_parquet(run / "results.parquet"), pd.read_parquet(tmp_path / "copy" / "results.parquet")
    )


def test_decide_with_two_processes_extends_and_judges_as_one_process_does(tmp_path):
    """Each process runs its share of a round's trials; process 0 merges, judges and writes the ledger."""
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    sweep(*DECIDE_RUN, "--out", alone)
    shutil.copytree(alone, shared)
    _decide(alone, "--ledger", tmp_path / "one", "--rounds", "1")
    processes = launch_processes(
        "jaxfrag.decide", [shared, "--ledger", tmp_path / "two", "--rounds", "1"], 2, before=PLAN_LATE
    )  # process 1 plans its share late: it must still run exactly that share
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    meta = json.loads((shared / "meta.json").read_text())
    assert meta["extended"] == json.loads((alone / "meta.json").read_text())["extended"]
    # Every process that has a share of a cell's new trials ran it (a cell grown by one trial has one share).
    held = 10  # DECIDE_RUN's --trials
    shares = {
        key: [i for i in range(2) if distributed.share([(held, target)], distributed.Processes(i, 2))]
        for key, target in meta["extended"].items()
    }
    assert {key: meta["stages"][key]["processes"] for key in shares} == shares
    assert any(share == [0, 1] for share in shares.values())  # the round gave both processes work
    assert not list((shared / "cells").glob("parts/*"))  # every part merged
    pd.testing.assert_frame_equal(
        pd.read_parquet(shared / "results.parquet"), pd.read_parquet(alone / "results.parquet"), check_exact=True
    )
    ours, theirs = (pd.read_csv(tmp_path / name / "verdict_cases.csv") for name in ("two", "one"))
    columns = [c for c in ours.columns if c not in ("run", "command", "cells", "cost_s", "to_decide")]
    pd.testing.assert_frame_equal(ours[columns], theirs[columns])
    made_by = pd.read_csv(tmp_path / "two" / "verdicts.csv")["command"][0]
    assert made_by.endswith(f"--ledger {tmp_path / 'two'} --rounds 1") and "--process-id" not in made_by


def test_decide_refuses_bad_input_in_one_line(tmp_path):
    for args, message in (
        ([tmp_path / "absent", "--ledger", tmp_path / "l"], "not a run folder"),
        ([ROOT, "--ledger", tmp_path / "l", "--budget", "soon"], "not a run folder"),
    ):
        result = _decide(*args, check=False)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


def test_decide_adds_trials_only_to_the_claims_named(tmp_path):
    run = tmp_path / "run"
    sweep("--experiment", "thm1", "thm6", "--d", "6..9", "--trials", "10", "--seed", "1", "--out", run)
    refused = _decide(run, "--ledger", tmp_path / "l", "--claim", "Table 9", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Theorem 1" in refused.stderr
    assert not (tmp_path / "l" / decide.STATE).exists()
    table = verdicts.records(verdicts.claims(run))
    assert set(table["verdict"]) == {verdicts.UNDECIDED}  # both would grow: more trials decide each
    assert all(text.count("more trials") == 1 for text in table["to_decide"])
    _decide(run, "--ledger", tmp_path / "l", "--claim", "Theorem 6", "--rounds", "1")
    grown = json.loads((run / "meta.json").read_text())["extended"]
    assert grown and all(key.startswith("thm6/") for key in grown)
