"""Many processes: the work split, the parts on disk, and two real local processes on jax.distributed."""

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from helpers import PLAN_LATE, launch_processes, sweep

from jaxfrag import distributed, store


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("missing", [[(0, 100)], [(0, 5)], [(3, 10), (40, 41), (50, 90)], [(0, 1)]])
def test_share_tiles_the_missing_trials_exactly_once_in_near_equal_pieces(missing, count):
    pieces = [distributed.share(missing, distributed.Processes(index, count)) for index in range(count)]
    covered = sorted(trial for piece in pieces for start, stop in piece for trial in range(start, stop))
    wanted = sorted(trial for start, stop in missing for trial in range(start, stop))
    assert covered == wanted  # every missing trial once, nothing else
    sizes = [sum(stop - start for start, stop in piece) for piece in pieces]
    assert max(sizes) - min(sizes) <= 1
    for piece in pieces:  # in order and contiguous within each missing range
        assert all(start < stop for start, stop in piece) and piece == sorted(piece)


def test_share_depends_only_on_what_is_missing_and_who_asks():
    missing = [(0, 37), (60, 64)]
    assert distributed.share(missing, distributed.Processes(1, 3)) == distributed.share(
        list(missing), distributed.Processes(1, 3)
    )
    assert distributed.share(missing, distributed.Processes(0, 1)) == missing


@pytest.mark.parametrize(
    "environ,expected",
    [
        ({}, None),
        ({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"}, None),  # sbatch's shell, not an srun step
        ({"SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "4"}, "SLURM"),
        ({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1"}, None),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
        ({"OMPI_COMM_WORLD_SIZE": "1"}, None),
        ({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}, "TPU pod"),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
    ],
)
def test_launchers_are_detected_only_when_they_started_several_processes(environ, expected):
    assert distributed.launcher_detected(environ) == expected


@pytest.mark.parametrize(
    "options,message",
    [
        (["--coordinator", "localhost:1234"], "go together"),
        (["--num-processes", "2", "--process-id", "0"], "go together"),
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2"], "0..1"),
        (["--coordinator", "localhost:1234", "--num-processes", "0", "--process-id", "0"], "num-processes"),
    ],
)
def test_bad_process_options_are_one_line_exit_2(options, message, tmp_path):
    result = sweep("--d", "8", *options, "--out", tmp_path / "out", check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_parts_merge_only_when_they_tile_the_cell(tmp_path):
    folder = store.RunFolder.open(tmp_path, {"x": 1}, resume=False)
    assert folder.missing("thm6", 9, 10) == [(0, 10)]
    for start, stop in [(6, 10), (0, 3)]:
        trials = np.arange(start, stop)
        folder.write_part("thm6", 9, start, stop, {"trial": trials, "_aux": trials[:, None] * [1, 2]}, {"p": start})
    assert folder.missing("thm6", 9, 10) == [(3, 6)]
    with pytest.raises(ValueError, match="tile"):
        folder.read_parts("thm6", 9, 10)
    folder.write_part("thm6", 9, 3, 6, {"trial": np.arange(3, 6), "_aux": np.arange(3, 6)[:, None] * [1, 2]}, {})
    assert folder.missing("thm6", 9, 10) == []
    arrays, infos = folder.read_parts("thm6", 9, 10)
    np.testing.assert_array_equal(arrays["trial"], np.arange(10))
    np.testing.assert_array_equal(arrays["_aux"], np.arange(10)[:, None] * [1, 2])
    assert infos == [{"p": 0}, {}, {"p": 6}]
    # A folder holding only parts is a run: --resume with another config is refused.
    with pytest.raises(store.RunFolderError, match="different config"):
        folder.write_meta({"config": {"x": 1}})
        store.RunFolder.open(tmp_path, {"x": 2}, resume=True)


# --- two real processes on this machine: jax.distributed with gloo CPU collectives, one device each ---

ARGS = ["--d", "7..10", "--experiment", "thm6", "--trials", "400", "--seed", "4"]


def _launch(out, count: int, *extra) -> list[subprocess.Popen]:
    return launch_processes("jaxfrag.sweep", [*ARGS, *extra, "--out", out], count)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process run (two devices, its own chunk size) that every multi-process run must equal."""
    out = tmp_path_factory.mktemp("single")
    sweep(*ARGS, "--out", out)
    return pd.read_parquet(out / "results.parquet")


def test_two_processes_give_the_single_process_rows_bit_for_bit(reference, tmp_path):
    processes = _launch(tmp_path, 2, "--chunk", "96")
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert "process 0 merged" in outputs[1][0]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), reference)
    stages = pd.read_json(tmp_path / "meta.json", typ="series")["stages"]
    assert all(stages[f"thm6/d={d}"]["processes"] == [0, 1] for d in range(7, 11))  # both did a share
    assert not (tmp_path / "cells" / "parts").exists()


def test_a_process_that_plans_late_still_runs_exactly_its_share(reference, tmp_path):
    """Every process plans from the same listing of the run folder, whatever parts another has written since."""
    processes = launch_processes("jaxfrag.sweep", [*ARGS, "--chunk", "96", "--out", tmp_path], 2, before=PLAN_LATE)
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), reference)
    stages = pd.read_json(tmp_path / "meta.json", typ="series")["stages"]
    assert all(stages[f"thm6/d={d}"]["processes"] == [0, 1] for d in range(7, 11))


def test_a_killed_process_stops_the_other_and_resume_completes_the_rows(reference, tmp_path):
    survivor, victim = _launch(tmp_path, 2, "--chunk", "8", "--peer-timeout", "3")
    parts = tmp_path / "cells" / "parts"

    def victim_parts():  # process 1 runs the upper half of every cell's trials
        return [p for p in parts.glob("*.npz") if int(p.stem.rpartition("_")[2].split("-")[0]) >= 200]

    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None and not victim_parts():
        time.sleep(0.01)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    tic = time.time()
    _, stderr = survivor.communicate(timeout=120)  # it must stop, not hang
    assert survivor.returncode == 1 and time.time() - tic < 60
    assert len(stderr.strip().splitlines()) == 1 and "process 1 of 2 stopped answering" in stderr, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    left = len(victim_parts())
    assert 1 <= left < 4 * 200 // 8, "the victim finished before it could be killed"
    # Resume with another number of processes (one, two devices) and another chunk size.
    sweep(*ARGS, "--out", tmp_path, "--resume")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), reference)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "earlier, now, allowed",
    [
        (16, 16, True), (16, 32, True), (16, None, True), (16, 8, False), (16, "16", False),
        ([[1, 2]], [[1, 2], [3, 4]], True), ([[1, 2]], [[1, 2]], True), ([[1, 2], [3, 4]], [[1, 2]], False),
        ([[1, 2]], [[3, 4], [1, 2]], False), ([[1, 2]], 3, False), ("demo", "demo", True), ("demo", "x", False),
    ],
)  # fmt: skip
def test_a_growable_entry_may_rise_or_gain_entries_after_its_own_never_shrink_or_change(
    tmp_path, earlier, now, allowed
):
    folder = store.RunFolder.open(tmp_path, {"fixed": 1, "pairs": earlier}, resume=False)
    folder.write_meta({"config": {"fixed": 1, "pairs": earlier}})
    folder.write_cell("x", 0, pd.DataFrame({"a": [1]}), {})
    assert store.grows(earlier, now) is allowed
    if allowed:
        store.RunFolder.open(tmp_path, {"fixed": 1, "pairs": now}, resume=True, growable=("pairs",))
    else:
        with pytest.raises(store.RunFolderError, match="not shrink"):
            store.RunFolder.open(tmp_path, {"fixed": 1, "pairs": now}, resume=True, growable=("pairs",))
    if earlier != now:
        with pytest.raises(store.RunFolderError, match="different config"):  # only the named entries may grow
            store.RunFolder.open(tmp_path, {"fixed": 1, "pairs": now}, resume=True, growable=())
