"""benchmarks/accelerator.py --quick on this CPU, so the one-shot accelerator script cannot rot."""

import json
import subprocess
import sys

import numpy as np
from helpers import ROOT

WORKLOADS = {"thm6", "qr_d12", "qr_d64", "linear_d12", "relu_d12", "minimal_l2"}


def test_accelerator_script_quick_run_writes_every_figure_within_the_ceiling(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "accelerator.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("accelerator-*-quick.json")
    report = json.loads(path.read_text())
    assert report["quick"] is True and report["backend"] == "cpu"
    assert report["ceiling"]["flops_per_s"] > 0 and report["ceiling"]["bytes_per_s"] > 0
    assert set(report["figures"]) == WORKLOADS
    for name, figure in report["figures"].items():
        assert figure["run_s"] > 0 and figure["rate"] > 0, name
        # Our work counts are lower bounds: a figure above the measured ceiling would mean a wrong count.
        assert 0 <= figure["flops_fraction"] < 1.5 and 0 <= figure["bandwidth_fraction"] < 1.5, (name, figure)
        assert name in result.stdout  # the printed table
    figures = report["figures"]
    assert all(row["opt_exact"] for row in figures["thm6"]["per_d"]) and figures["thm6"]["skipped_d"] == []
    assert figures["minimal_l2"]["verified_fraction"] == 1.0  # every perturbation, applied, flips the label
    assert np.isfinite(figures["minimal_l2"]["median_norm"])
    assert figures["linear_d12"]["networks"] == 16 and figures["relu_d12"]["networks"] == 16
