"""What every sweep experiment is: the `Experiment` record, its grid hook `Ablation`, and `map_trials`.

Contract: each module exposes an `Experiment`. Its `run_chunk(keys, d, size,
config)` takes a batch of per-trial keys (one per trial, derived only from
seed, experiment, d and trial index), the dimension d (a runtime value) and the
compiled size `size(d, config)` >= d that the trials are embedded in (see
`jaxfrag.padding`), and returns a dict of per-trial arrays: the metric
`columns` in order, plus auxiliary arrays whose names start with "_" that
`cell_stats` reduces to per-(experiment, d) statistics and that are not stored
per trial. Inside, the work is a pure function of ONE trial's key, vmapped at
the edge; only the sphere decoder is batched by design.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from jaxfrag.config import Config


class Ablation(NamedTuple):
    """What a grid answers for a trained experiment (`jaxfrag.reports.grid`)."""

    # rows -> per trial: success (bool), compression, robustness (over the last-bit flip's), tracking
    # (compression minus what the paper says it tracks), phi and gap, on the rows' index.
    per_trial: Callable[[pd.DataFrame], pd.DataFrame]
    labels: dict[str, str]  # measure -> how reports and figures name it for this experiment


class Experiment(NamedTuple):
    name: str
    paper: str  # where in the paper
    columns: dict[str, str]  # metric column -> what it is
    run_chunk: Callable[[jax.Array, jax.Array, int, Config], dict[str, jax.Array]]
    size: Callable[[int, Config], int]  # the compiled size for dimension d
    theory: Callable[[int, Config], dict[str, float]]  # closed forms for summary.csv
    theory_slope: Callable[[Config], float]  # predicted log-log slope of the gap against d, as d grows
    gap_theory_kind: str  # what summary.csv's gap_theory is for the mean gap: "upper bound", ...
    bytes_per_trial: Callable[[int, Config], int]  # working memory at a compiled size, to size chunks
    cell_stats: Callable[[dict[str, np.ndarray], int, int, Config], dict[str, float | str]] = (
        lambda aux, d, size, config: {}
    )
    # Extra summary.csv columns computed from a cell's stored rows (so a resumed run gets them too).
    cell_summary: Callable[[pd.DataFrame, int, Config], dict[str, float]] = lambda rows, d, config: {}
    # Host-side finishing of a chunk's numpy arrays, e.g. index words joined into uint64 columns.
    host_columns: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] = lambda arrays: arrays
    # Text printed after the gap table, e.g. the paper's tables beside ours: (summary, rows, config) -> str.
    report: Callable[[pd.DataFrame, pd.DataFrame, Config], str] | None = None
    # Extra figures: (figure_path(name) -> Path, summary, rows, config) -> None.
    figures: Callable[[Callable, pd.DataFrame, pd.DataFrame, Config], None] | None = None
    # Trained experiments: the per-trial measures of the slopes, the paired table and the
    # compression-vs-fragility figure.
    ablation: Ablation | None = None
    # cell_stats reads every trial's auxiliary arrays, which the cell file does not keep: a cell extended
    # with more trials is run again from trial 0 (`jaxfrag.stages`).
    stats_from_every_trial: bool = False


# Trials per vmapped group inside a device's chunk. On a CPU, a batched
# Householder sweep streams every trial's matrix through memory once per
# column; in groups of 8 the group stays in cache, which made thm6's per-trial
# work 2.7x faster at d = 49 than one vmap over 1000 trials. A GPU or TPU wants
# the opposite: wide batches, few sequential steps. Chunks per device are
# multiples of the group, so every trial runs through the same compiled group
# (bitwise reproducible across chunk sizes on each backend).
TRIAL_GROUP = 8  # on a CPU
ACCELERATOR_TRIAL_GROUP = 1024


def trial_group(platform: str | None = None) -> int:
    """Trials per vmapped group on `platform` (default: JAX's default backend)."""
    return TRIAL_GROUP if (platform or jax.default_backend()) == "cpu" else ACCELERATOR_TRIAL_GROUP


def map_trials(fn: Callable, keys: jax.Array):
    """fn(key) for every trial key, vmapped in groups of `trial_group()` (len(keys) must be a multiple)."""
    group = trial_group()
    if keys.shape[0] % group:
        raise ValueError(f"a chunk per device must be a multiple of {group} trials, got {keys.shape[0]}")
    return jax.lax.map(fn, keys, batch_size=group)
