"""The command line: parsing, bad input, the output contract, resume and kills."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, check_report_page, sweep

import jaxfrag
from jaxfrag.cli import UsageError, parse_dims


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("7..10", [7, 8, 9, 10]),
        ("8..64:8", [8, 16, 24, 32, 40, 48, 56, 64]),
        ("8,12,16", [8, 12, 16]),
        ("12", [12]),
        ("9,3..4", [3, 4, 9]),
    ],
)
def test_parse_dims(text, expected):
    assert parse_dims(text) == expected


@pytest.mark.parametrize("text", ["64..7", "", "abc", "1", "1..5", "7..", "7..64:0", "8,,9", "2.5"])
def test_parse_dims_rejects(text):
    with pytest.raises(UsageError):
        parse_dims(text)


BAD_INPUTS = {
    "reversed d": ["--d", "64..7"],
    "empty d": ["--d", ""],
    "non-numeric d": ["--d", "seven"],
    "d below 2": ["--d", "1..4"],
    "zero trials": ["--d", "8", "--trials", "0"],
    "negative trials": ["--d", "8", "--trials", "-3"],
    "unknown experiment": ["--d", "8", "--experiment", "thm9"],
    "linear: zero width": ["--d", "8", "--experiment", "linear", "--width", "0"],
    "linear: negative width": ["--d", "8", "--experiment", "linear", "--width", "-5"],
    "linear: max-points below 2": ["--d", "8", "--experiment", "linear", "--max-points", "1"],
    "linear: unknown optimiser": ["--d", "8", "--experiment", "linear", "--optimizer", "lbfgs"],
    "linear: unknown init": ["--d", "8", "--experiment", "linear", "--init", "orthogonal"],
    "linear: zero lr": ["--d", "8", "--experiment", "linear", "--lr", "0"],
    "linear: zero epochs": ["--d", "8", "--experiment", "linear", "--epochs", "0"],
    "linear: d above 64": ["--d", "65", "--experiment", "linear"],
    "relu: d above 64": ["--d", "8,65", "--experiment", "relu"],
    "relu: zero width": ["--d", "8", "--experiment", "relu", "--width", "0"],
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(case, tmp_path):
    out = tmp_path / "out"
    result = sweep(*BAD_INPUTS[case], "--out", out, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "error" in result.stderr
    assert not out.exists()


def test_unwritable_out_is_rejected(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = sweep("--d", "8", "--out", blocker / "out", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not writable" in result.stderr and "Traceback" not in result.stderr
    result = sweep("--d", "8", "--out", blocker, check=False)
    assert result.returncode == 2 and "not a folder" in result.stderr
    assert blocker.read_text() == "not a folder"


def test_non_empty_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = sweep("--d", "8", "--out", tmp_path, check=False)
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "meta.json").exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    result = sweep("--d", "5,9,14", "--experiment", "thm1", "thm6", "--trials", "24", "--seed", "3", "--out", out)
    return out, result


def test_output_contract(small_run):
    out, result = small_run
    rows = pd.read_parquet(out / "results.parquet")
    assert list(rows.columns[:5]) == ["experiment", "d", "trial", "seed", "nonfinite"]
    assert len(rows) == 2 * 3 * 24 and set(rows["experiment"]) == {"thm1", "thm6"}
    assert (rows["seed"] == 3).all() and not rows["nonfinite"].any()
    pd.testing.assert_frame_equal(jaxfrag.load(out), rows)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 6
    for column in ["n", "gap_mean", "gap_se", "gap_theory", "phi_mean_theory", "opt_robustness_mean", "e_norm_se"]:
        assert column in summary.columns
    thm6 = summary[summary["experiment"] == "thm6"].set_index("d")
    assert thm6.loc[9, "opt_method"] == "brute_force" and thm6.loc[14, "opt_method"] == "sphere_decoder"
    # The summary is the mean of the stored rows.
    cell = rows[(rows["experiment"] == "thm6") & (rows["d"] == 9)]
    assert thm6.loc[9, "gap_mean"] == pytest.approx(cell["gap"].mean())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["trials"] == 24 and meta["x64"] is False
    assert "jax:" in meta["jax_environment"] and len(meta["devices"]) >= 1
    assert {"thm1/d=5", "thm6/d=14"} <= set(meta["stages"]) and "compile_s" in meta["stages"]["thm1/d=5"]
    for name in ("thm1", "thm6"):
        assert (out / "figures" / f"scaling_{name}.png").stat().st_size > 10_000
    assert "log-log slope" in result.stdout and "thm6" in result.stdout
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    assert meta["jaxfrag_version"] == jaxfrag.__version__ and meta["argv"][:2] == ["--no-progress", "--d"]
    assert len(meta.get("git_commit", "0" * 40)) == 40  # recorded from a git checkout
    check_report_page(out, min_verdict_rows=2)  # Theorems 1 and 6


def test_rerun_without_resume_is_refused_and_changes_nothing(small_run):
    out, _ = small_run
    before = snapshot(out)
    result = sweep(
        "--d", "5,9,14", "--experiment", "thm1", "thm6", "--trials", "24", "--seed", "3", "--out", out, check=False
    )
    assert result.returncode == 2 and "--resume" in result.stderr
    assert snapshot(out) == before


def test_resume_with_another_config_is_refused_and_changes_nothing(small_run):
    out, _ = small_run
    before = snapshot(out)
    result = sweep(
        "--d",
        "5,9,14",
        "--experiment",
        "thm1",
        "thm6",
        "--trials",
        "24",
        "--seed",
        "4",
        "--out",
        out,
        "--resume",
        check=False,
    )
    assert result.returncode == 2 and "different config" in result.stderr and "seed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert snapshot(out) == before


def test_resume_of_a_finished_run_recomputes_nothing(small_run):
    out, _ = small_run
    rows = pd.read_parquet(out / "results.parquet")
    cells = {p.name: p.read_bytes() for p in (out / "cells").iterdir()}
    sweep("--d", "5,9,14", "--experiment", "thm1", "thm6", "--trials", "24", "--seed", "3", "--out", out, "--resume")
    assert {p.name: p.read_bytes() for p in (out / "cells").iterdir()} == cells
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), rows)


EXTEND_ARGS = ["--d", "8", "--experiment", "thm4", "thm6", "linear", "--width", "24", "--epochs", "2"]
EXTEND_ARGS += ["--attack", "quick", "--seed", "11"]


def test_a_run_extended_in_place_equals_a_fresh_run_with_every_trial(tmp_path):
    # XLA's fusion emitters as users run them: the suite turns them off to compile faster, and with them
    # off (and LLVM's passes too) a linear net's last bits depended on its chunk (seen at d = 6).
    flags = os.environ["XLA_FLAGS"].replace("--xla_cpu_use_fusion_emitters=false", "")
    env = {**os.environ, "XLA_FLAGS": flags}
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    sweep(*EXTEND_ARGS, "--trials", "16", "--out", grown, env=env)
    sweep(*EXTEND_ARGS, "--trials", "32", "--out", grown, "--resume", env=env)
    sweep(*EXTEND_ARGS, "--trials", "32", "--out", fresh, env=env)
    rows = pd.read_parquet(grown / "results.parquet")
    assert len(rows) == 3 * 32 and json.loads((grown / "meta.json").read_text())["config"]["trials"] == 32
    pd.testing.assert_frame_equal(rows, pd.read_parquet(fresh / "results.parquet"), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(grown / "summary.csv"), pd.read_csv(fresh / "summary.csv"))
    # Lemma 3's statistics need every trial's R: thm4's cells were run again from trial 0, to the same numbers.
    from jaxfrag import store

    stats = [store.RunFolder(run).read_cell_stats() for run in (grown, fresh)]
    assert stats[0] == stats[1] and stats[0][("thm4", 8)]["lemma3_trials"] == 32
    assert not (grown / "cells" / "parts").exists()
    # Fewer trials than the cells hold is refused, and changes nothing.
    before = snapshot(grown)
    result = sweep(*EXTEND_ARGS, "--trials", "8", "--out", grown, "--resume", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "not shrink" in result.stderr
    assert snapshot(grown) == before


KILL_TRIALS = 500  # a second or so per cell in the suite: time to kill the run between its cells
KILL_ARGS = ["--d", "26..31", "--experiment", "thm1", "--trials", str(KILL_TRIALS), "--seed", "5"]


def _start(out):
    return subprocess.Popen(
        [sys.executable, "-m", "jaxfrag.sweep", "--no-progress", *KILL_ARGS, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(process, condition, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    return False


def test_resume_after_sigkill_gives_the_uninterrupted_rows(tmp_path):
    reference = tmp_path / "reference"
    sweep(*KILL_ARGS, "--out", reference)
    out = tmp_path / "killed"
    process = _start(out)
    killed = _kill_when(process, lambda: len(list((out / "cells").glob("*.parquet"))) >= 2)
    assert killed, "the run finished before it could be killed"
    done = len(list((out / "cells").glob("*.parquet")))
    assert 2 <= done < 6
    # What the kill left is complete: every cell file reads, meta.json parses.
    for cell in (out / "cells").glob("*.parquet"):
        assert len(pd.read_parquet(cell)) == KILL_TRIALS
    json.loads((out / "meta.json").read_text())
    sweep(*KILL_ARGS, "--out", out, "--resume")
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "results.parquet"), pd.read_parquet(reference / "results.parquet")
    )
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_resume_of_a_run_killed_before_any_cell_starts_afresh(tmp_path):
    out = tmp_path / "early"
    process = _start(out)
    assert _kill_when(process, lambda: (out / "meta.json").exists())
    assert not list((out / "cells").glob("*.parquet"))
    # Nothing finished, so even a different config may take the folder over.
    sweep("--d", "6", "--experiment", "thm1", "--trials", "10", "--out", out, "--resume")
    rows = pd.read_parquet(out / "results.parquet")
    assert len(rows) == 10 and (rows["d"] == 6).all()


def test_x64_run_computes_in_float64(tmp_path):
    sweep("--d", "6,14", "--trials", "16", "--x64", "--out", tmp_path)
    rows = pd.read_parquet(tmp_path / "results.parquet")
    assert rows["gap"].dtype == np.float64 and len(rows) == 3 * 2 * 16
    assert rows["nn_min_flips"].all() and not rows["nonfinite"].any()
    assert json.loads((tmp_path / "meta.json").read_text())["x64"] is True


def test_existing_empty_folder_is_used(tmp_path):
    sweep("--d", "6", "--experiment", "thm6", "--trials", "8", "--out", tmp_path)
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 8


def test_nonfinite_trials_are_flagged_and_never_averaged():
    from jaxfrag.stats import nonfinite_rows, summarise_cell

    columns = {"gap": np.array([0.5, np.nan, 1.5, np.inf]), "flips": np.array([True, True, False, True])}
    flags = nonfinite_rows(columns)
    assert flags.tolist() == [False, True, False, True]
    rows = pd.DataFrame({**columns, "nonfinite": flags})
    summary = summarise_cell(rows, ["gap", "flips"])
    assert summary["n"] == 2 and summary["n_nonfinite"] == 2
    assert summary["gap_mean"] == pytest.approx(1.0) and summary["flips_mean"] == pytest.approx(0.5)


def test_programs_are_compiled_a_few_ahead_and_released_after_their_last_cell():
    """A long grid must not hold every compiled program at once (LLVM's JIT ran out of memory maps
    after 38 cells of a 64-cell grid): compile_ahead starts at most `programs` distinct ones."""
    from jaxfrag import stages
    from jaxfrag import sweep as sweep_module
    from jaxfrag.experiments import registry

    class Recorder:
        config = sweep_module.make_config(sweep_module.parse_args(["--d", "8", "--experiment", "linear"]))

        def __init__(self):
            self.started = []

        def program_key(self, experiment, d, chunk=None, trials=None, config=None):
            return (experiment.name, d, chunk, config.width)

        def prefetch(self, experiment, d, chunk=None, trials=None, config=None):
            key = self.program_key(experiment, d, chunk, trials, config)
            if key not in self.started:
                self.started.append(key)

    experiments, runner = registry(), Recorder()
    plan = [
        stages.Piece("linear", (("width", width),), d, [(0, 8)], 8)
        for width, d in [(64, 8), (64, 8), (64, 12), (512, 8), (512, 12), (512, 16)]
    ]
    stages.compile_ahead(runner, experiments, plan, 0, programs=2)
    assert runner.started == [("linear", 8, 8, 64), ("linear", 12, 8, 64)]
    stages.compile_ahead(runner, experiments, plan, 3, programs=2)
    assert runner.started[2:] == [("linear", 8, 8, 512), ("linear", 12, 8, 512)]
