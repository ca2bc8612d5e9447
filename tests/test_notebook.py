"""The notebooks run end to end on tiny sweeps."""

import os

import nbformat
import pandas as pd
import pytest
from helpers import ROOT, sweep
from nbclient import NotebookClient


def execute(path, run):
    """Run a notebook on the sweep output `run`; returns its text outputs and its images."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["JAXFRAG_RUN"] = str(run)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        os.environ.pop("JAXFRAG_RUN")
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return text, [o for o in outputs if "image/png" in o.get("data", {})]


def test_scaling_laws_notebook_executes(tmp_path):
    run = tmp_path / "run"
    sweep("--d", "5,9,14", "--experiment", "thm1", "thm6", "--trials", "30", "--out", run)
    text, images = execute(ROOT / "notebooks" / "scaling_laws.ipynb", run)
    assert "180 trials" in text and "slope" in text and "largest |z|" in text
    assert len(images) == 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One sweep of both trained experiments, which both notebooks read (one process, one report).
    The notebooks read the attack's columns whichever attack made them: the quick one compiles faster."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = sweep(
        "--d", "7,12", "--experiment", "linear", "relu", "--trials", "16", "--width", "32", "--epochs", "3",
        "--attack", "quick", "--out", run,
    )  # fmt: skip
    return run, result.stdout


def test_linear_networks_notebook_executes(trained_run):
    run, stdout = trained_run
    assert "Table 2" in stdout and "<- the paper" in stdout
    assert (run / "figures" / "figure2.png").exists() and (run / "figures" / "table1.png").exists()
    text, images = execute(ROOT / "notebooks" / "linear_networks.ipynb", run)
    assert "32 trained networks" in text and "attack verified minimal" in text and "paper, d = 12" in text
    assert len(images) == 2


def test_nonlinear_notebook_executes(trained_run):
    run, stdout = trained_run
    assert "Table 3, d = 12" in stdout and "paper median" in stdout and "Table 4, d = 7" in stdout
    assert (run / "figures" / "table3_rho.png").exists() and (run / "figures" / "table4_scatter.png").exists()
    text, images = execute(ROOT / "notebooks" / "nonlinear.ipynb", run)
    assert "32 trained ReLU networks" in text and "paper, d = 17" in text and "corr(rho, phi)" in text
    assert len(images) == 2


def test_ablations_notebook_executes_on_a_grid_of_both_trained_experiments(trained_run, tmp_path):
    # The trained run's options with an lr axis: its programs come from the session's compilation
    # cache (lr is a run-time value, so both points share them), and its lr=0.001 point is that run.
    plain, _ = trained_run
    run = tmp_path / "run"
    result = sweep(
        "--d", "7,12", "--experiment", "linear", "relu", "--trials", "16", "--width", "32", "--epochs", "3",
        "--attack", "quick", "--grid", "lr=0.01,0.001", "--out", run,
    )  # fmt: skip
    assert "log-log slopes against d" in result.stdout and "lr: 0.01 vs 0.001" in result.stdout
    for name in ("measures.csv", "slopes.csv", "paired.csv", "figures/compression_vs_fragility.png"):
        assert (run / name).exists(), name
    rows = pd.read_parquet(run / "results.parquet")
    default = rows[rows.lr == 0.001].drop(columns="lr").reset_index(drop=True)
    pd.testing.assert_frame_equal(default, pd.read_parquet(plain / "results.parquet"))
    paired = pd.read_csv(run / "paired.csv")
    assert set(paired.experiment) == {"linear", "relu"} and set(paired.reference) == {0.001}
    text, images = execute(ROOT / "notebooks" / "ablations.ipynb", run)
    assert "128 finite trained networks" in text and "largest difference from the sweep's tables" in text
    assert "configurations flagged" in text
    assert len(images) == 1
