"""The MNIST entry point end to end on a tiny run: outputs, --resume, and its notebook."""

import subprocess
import sys

import pandas as pd
from helpers import ROOT
from test_notebook import execute


def test_mnist_entry_point_resumes_and_its_notebook_executes(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "jaxfrag.mnist", "--out", str(run), "--no-progress", "--networks", "2"]
    command += ["--epochs", "1", "--train-images", "2048", "--images", "8", "--n-alpha", "11"]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "Table 5" in first.stdout and "Table 6" in first.stdout and "The paper's claims" in first.stdout
    assert "-0.2255" in first.stdout  # the paper's numbers beside ours
    for name in ("results.parquet", "summary.csv", "claims.csv", "meta.json", "networks.npz"):
        assert (run / name).exists()
    for name in ("gallery_stroke.png", "gallery_bar.png", "claims.png", "cos_alpha.png"):
        assert (run / "figures" / name).exists()
    rows = pd.read_parquet(run / "results.parquet")
    assert len(rows) == 2 * 8 * 2 and set(rows.mask_rule) == {"stroke", "bar"}
    # Without --resume the folder is refused; with it, nothing is retrained and the rows are the same.
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    (run / "results.parquet").unlink()
    again = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(run / "results.parquet"), rows)
    text, images = execute(ROOT / "notebooks" / "mnist.ipynb", run)
    assert "16 (network, 7) pairs from 2 networks" in text and "paper 1" in text and "rule bar" in text
    assert len(images) == 1
