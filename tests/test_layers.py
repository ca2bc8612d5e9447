"""The package's shape: its layers and acyclic imports (import-linter), and one table row per experiment."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import toy_experiment

import jaxfrag
from jaxfrag import config, parallel

ROOT = Path(__file__).resolve().parents[1]
LAYERS = "maths and data < models < experiments < engine < reports < command line < entry points"
ACYCLIC = "no import cycle between the modules of any package"
TESTS = Path(__file__).resolve().parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the package under `root` is the one analysed, not the installed one.
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_package_keeps_its_layers_and_has_no_import_cycle():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("stats.py", "from jaxfrag import sweep", LAYERS),  # a low layer imports an entry point
        ("reports/mnist.py", "from jaxfrag import mnist", LAYERS),  # the cycle there was
        ("grid.py", "from jaxfrag import parallel", LAYERS),  # two engine modules kept independent
        ("padding.py", "from jaxfrag import rmt", ACYCLIC),  # a cycle inside one layer
        ("experiments/thm6.py", "from jaxfrag.experiments import relu", ACYCLIC),
    ],
)
def test_an_import_against_the_layers_or_a_cycle_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "jaxfrag", tmp_path / "jaxfrag", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / "jaxfrag" / module
    text = path.read_text()
    future = "from __future__ import annotations\n"
    path.write_text(text.replace(future, future + line + "\n", 1) if future in text else line + "\n" + text)
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken} BROKEN" in result.stdout.replace("\n", "")


def test_a_new_experiment_is_one_module_and_one_table_row(tmp_path):
    """The toy module plus its row run end to end through `python -m jaxfrag.sweep`: rows, keys and summary."""
    row = f"ExperimentSpec({toy_experiment.NAME!r}, {toy_experiment.ID}, 'toy_experiment', False, ('width_mult',))"
    program = (
        f"import runpy, sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from jaxfrag.config import EXPERIMENTS, ExperimentSpec\n"
        f"EXPERIMENTS[{toy_experiment.NAME!r}] = {row}\n"
        "sys.argv = ['jaxfrag.sweep', *sys.argv[1:]]\n"
        "runpy.run_module('jaxfrag.sweep', run_name='__main__', alter_sys=True)\n"
    )
    trials, dims = 64, (5, 9)
    args = ["--d", ",".join(map(str, dims)), "--experiment", "toy", "--trials", str(trials), "--seed", "3"]
    result = subprocess.run(
        [sys.executable, "-c", program, *args, "--out", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "toy" in result.stdout and "exact mean" in result.stdout
    rows = pd.read_parquet(tmp_path / "results.parquet")
    assert set(rows["experiment"]) == {"toy"} and len(rows) == trials * len(dims)
    # Each trial's number from its key (seed, the row's id, d, trial index), recomputed here; and the
    # cell means against the closed form within 4 standard errors.
    config.EXPERIMENTS["toy"] = config.ExperimentSpec("toy", toy_experiment.ID, "toy_experiment", False, ())
    try:
        summary = pd.read_csv(tmp_path / "summary.csv").set_index("d")
        for d in dims:
            keys = parallel.trial_keys(parallel.cell_key(3, "toy", d), np.arange(trials))
            expected = np.asarray(jax.vmap(lambda key, d=d: toy_experiment.trial_gap(key, d, 16))(keys))
            got = rows[rows["d"] == d].sort_values("trial")["gap"].to_numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-6)
            mean, se = summary.loc[d, "gap_mean"], summary.loc[d, "gap_se"]
            assert abs(mean - toy_experiment.mean_gap(d)) < 4 * se and math.isclose(
                summary.loc[d, "gap_theory"], toy_experiment.mean_gap(d)
            )
    finally:
        del config.EXPERIMENTS["toy"]


def test_the_entry_points_parse_their_options_without_loading_jax():
    """The import policy's reason (jaxfrag.cli): --help and bad input answer before JAX or matplotlib load."""
    modules = ("jaxfrag.sweep", "jaxfrag.mnist", "jaxfrag.imagenet", "jaxfrag.models.__main__", "jaxfrag.cli")
    modules += ("jaxfrag.verdicts", "jaxfrag.report", "jaxfrag.__main__")
    program = (
        f"import sys\nfor name in {modules!r}:\n    __import__(name)\n"
        "from jaxfrag import sweep, verdicts\nfrom jaxfrag import __main__ as command\n"
        "assert sweep.main(['--d', '7', '--trials', '0']) == 2\n"
        "assert verdicts.main(['no-such-run']) == 2 and command.main(['--version']) == 0\n"
        "print(sorted(m for m in ('jax', 'jaxlib', 'matplotlib', 'flax') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [f"jaxfrag {jaxfrag.__version__}", "[]"], result.stdout
    assert "--trials must be > 0" in result.stderr and "not a run folder" in result.stderr
