"""Grids over options (`jaxfrag.grid`, `--grid`): the product, bad input, common random numbers, resume."""

import json

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import sweep

from jaxfrag import grid
from jaxfrag.config import Config
from jaxfrag.experiments import linear
from jaxfrag.sweep import build_parser
from jaxfrag.sweep import main as sweep_main


def parse(*items, given=()):
    return grid.parse(list(items), build_parser(), set(given))


def test_points_are_the_cartesian_product_first_axis_slowest():
    g = parse("optimizer=adam,sgd,adamw", "width=64,512", "hidden-layers=1,2", "init=torch,glorot", "bias=false,true")
    points = g.points()
    assert len(points) == 3 * 2 * 2 * 2 * 2 == len(set(points))
    assert points[0] == (("optimizer", "adam"), ("width", 64), ("hidden_layers", 1), ("init", "torch"), ("bias", False))
    assert points[1][-1] == ("bias", True) and points[-1][0] == ("optimizer", "adamw")  # last axis fastest
    # Every combination, each once, values parsed by the options' own types.
    for optimizer in ("adam", "sgd", "adamw"):
        for width in (64, 512):
            assert sum(dict(p)["optimizer"] == optimizer and dict(p)["width"] == width for p in points) == 8
    assert grid.label(points[0]) == "optimizer=adam,width=64,hidden-layers=1,init=torch,bias=false"
    assert parse("scale-columns=1,5").points() == [(("scale_columns", 1.0),), (("scale_columns", 5.0),)]
    assert parse().points() == [()] and grid.cell_name("linear", ()) == "linear"
    config = grid.config_for(Config(), points[-1])
    assert (config.optimizer, config.width, config.hidden_layers, config.init, config.bias) == (
        "adamw",
        512,
        2,
        "glorot",
        True,
    )
    name = grid.cell_name("relu", points[5])
    assert grid.split_cell_name(name) == ("relu", grid.label(points[5]))


BAD_GRIDS = {
    "unknown option": (["--grid", "momentum=0.9,0.99"], "unknown option"),
    "a value the option refuses": (["--grid", "optimizer=adam,lbfgs"], "lbfgs"),
    "a value of the wrong type": (["--grid", "width=64,wide"], "integer"),
    "a value out of range": (["--grid", "width=64,0"], "width"),
    "a grid that repeats d": (["--grid", "d=8,12"], "own axis"),
    "an axis given twice": (["--grid", "width=64", "width=512"], "twice"),
    "a repeated value": (["--grid", "width=64,64"], "repeated"),
    "an option that changes nothing": (["--grid", "chunk=8,16"], "does not change results"),
    "the sample size": (["--grid", "trials=8,16"], "paired"),
    "the precision": (["--grid", "x64=false,true"], "two sweeps"),
    "an option also given as a flag": (["--width", "64", "--grid", "width=64,512"], "also given"),
    "an axis an experiment ignores": (["--experiment", "thm6", "linear", "--grid", "width=8,16"], "thm6"),
    "no values": (["--grid", "width="], "option=value1"),
    "a cap below --epochs at a point": (["--max-epochs", "10", "--grid", "protocol=epochs,until-fit"], "at protocol"),
    "a cap below --epochs without a grid": (["--protocol", "until-fit", "--max-epochs", "10"], "below --epochs 20"),
    "an unknown protocol": (["--grid", "protocol=epochs,forever"], "forever"),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grid_is_one_line_exit_2_before_anything_runs(case, tmp_path, capsys):
    # In process: the sweep refuses a grid while parsing, before JAX or the run folder (the
    # subprocess path of bad input is tested in test_sweep.py).
    argv, phrase = BAD_GRIDS[case]
    if "--experiment" not in argv:
        argv = ["--experiment", "linear", *argv]
    out = tmp_path / "out"
    assert sweep_main(["--d", "8", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("jaxfrag.sweep: error: ") and phrase in err, err
    assert not out.exists()


def test_two_configurations_see_the_same_data_for_the_same_trial():
    # Common random numbers: the trial's key splits the same way whatever the point, so A, the
    # training points and the initialisation key agree (the network's shape is the point's own).
    key, d = jax.random.key(11), 7
    runs = [
        jax.jit(lambda k, c=c: linear.train_trial(k, d, c))(key)
        for c in (Config(width=8, epochs=1, max_points=64), Config(width=16, epochs=1, optimizer="sgd", max_points=64))
    ]
    (a1, points1, net1, *_), (a2, points2, net2, *_) = runs
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(points1, points2)
    assert net1.weights[0].shape != net2.weights[0].shape


# The quick attack: these tests are about the grid's plumbing, and its programs compile faster.
GRID_ARGS = [
    "--experiment", "linear", "--d", "6", "--trials", "8", "--width", "8", "--epochs", "2", "--attack", "quick",
]  # fmt: skip


def test_a_grid_writes_rows_per_configuration_and_its_default_point_is_a_plain_run(tmp_path):
    plain, run = tmp_path / "plain", tmp_path / "grid"
    sweep(*GRID_ARGS, "--out", plain)
    result = sweep(*GRID_ARGS, "--grid", "optimizer=adam,sgd", "scale-columns=5,1", "--out", run)
    rows, summary = pd.read_parquet(run / "results.parquet"), pd.read_csv(run / "summary.csv")
    assert len(rows) == 2 * 2 * 8 and list(rows.columns[:3]) == ["experiment", "optimizer", "scale_columns"]
    assert len(summary) == 2 * 2 and {"optimizer", "scale_columns"} <= set(summary.columns)
    assert set(zip(summary.optimizer, summary.scale_columns, strict=True)) == {
        ("adam", 5.0),
        ("adam", 1.0),
        ("sgd", 5.0),
        ("sgd", 1.0),
    }
    # The point that equals the defaults (adam, columns x5) is the run without --grid, bit for bit.
    default = rows[(rows.optimizer == "adam") & (rows.scale_columns == 5.0)]
    default = default.drop(columns=["optimizer", "scale_columns"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(default, pd.read_parquet(plain / "results.parquet"))
    # Paired: phi depends on A alone, which every point with the same column factor shares trial by trial.
    for scale in (5.0, 1.0):
        cells = [rows[(rows.optimizer == o) & (rows.scale_columns == scale)] for o in ("adam", "sgd")]
        np.testing.assert_array_equal(cells[0]["phi"].to_numpy(), cells[1]["phi"].to_numpy())
    assert "--- linear at optimizer=sgd,scale-columns=1 ---" in result.stdout
    # Points that differ only in the column factor (a run-time value of the program) share one program.
    stages = json.loads((run / "meta.json").read_text())["stages"]
    for optimizer in ("adam", "sgd"):
        assert stages[f"linear~optimizer={optimizer},scale-columns=5/d=6"]["compile_s"] > 0
        assert stages[f"linear~optimizer={optimizer},scale-columns=1/d=6"]["compile_s"] == 0
    assert (run / "figures" / "optimizer=sgd,scale-columns=1" / "figure2.png").exists()
    assert (run / "figures" / "compression_vs_fragility.png").exists()
    paired = pd.read_csv(run / "paired.csv")  # per axis: the other value against the default, the other axis fixed
    assert sorted(zip(paired.axis, paired.value, paired.reference, paired.rest, strict=True)) == [
        ("optimizer", "sgd", "adam", "scale-columns=1"),
        ("optimizer", "sgd", "adam", "scale-columns=5"),
        ("scale-columns", "1", "5", "optimizer=adam"),
        ("scale-columns", "1", "5", "optimizer=sgd"),
    ]
    # An interrupted grid: a finished cell lost, and the tables never written. --resume redoes only that cell.
    lost = run / "cells" / "linear~optimizer=sgd,scale-columns=5_d0006.parquet"
    kept = run / "cells" / "linear~optimizer=adam,scale-columns=1_d0006.parquet"
    assert lost.exists() and kept.exists()
    lost.unlink()
    (run / "results.parquet").unlink()
    kept_time = kept.stat().st_mtime_ns
    sweep(*GRID_ARGS, "--grid", "optimizer=adam,sgd", "scale-columns=5,1", "--out", run, "--resume")
    pd.testing.assert_frame_equal(pd.read_parquet(run / "results.parquet"), rows)
    assert kept.stat().st_mtime_ns == kept_time
    # Resuming with another grid is refused.
    other = sweep(*GRID_ARGS, "--grid", "optimizer=adam,adamw", "--out", run, "--resume", check=False)
    assert other.returncode == 2 and "grid" in other.stderr
