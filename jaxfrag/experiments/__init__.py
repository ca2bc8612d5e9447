"""The experiments a sweep can run, one module per theorem (`base` says what an experiment is).

Contract: `registry()` maps each name of `jaxfrag.config.EXPERIMENTS` to the `EXPERIMENT` of the
module its row names. A new experiment is a module exposing EXPERIMENT plus a row in that table.
"""

from __future__ import annotations

import importlib

from jaxfrag.config import EXPERIMENTS
from jaxfrag.experiments.base import TRIAL_GROUP, Ablation, Experiment, map_trials, trial_group

__all__ = ["TRIAL_GROUP", "Ablation", "Experiment", "map_trials", "registry", "trial_group"]


def registry() -> dict[str, Experiment]:
    """Every experiment of the table, in its order, imported by module name (the table holds no imports)."""
    return {name: importlib.import_module(spec.module).EXPERIMENT for name, spec in EXPERIMENTS.items()}
