"""The experiments a sweep can run, one module per theorem.

Contract: each module exposes an `Experiment`. Its `run_chunk(keys, d, size,
config)` takes a batch of per-trial keys (one per trial, derived only from
seed, experiment, d and trial index), the dimension d (a runtime value) and the
compiled size `size(d, config)` >= d that the trials are embedded in (see
`jaxfrag.embedding`), and returns a dict of per-trial arrays: the metric
`columns` in order, plus auxiliary arrays whose names start with "_" that
`cell_stats` reduces to per-(experiment, d) statistics and that are not stored
per trial. Inside, the work is a pure function of ONE trial's key, vmapped at
the edge; only the sphere decoder is batched by design.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxfrag.config import Config


class Experiment(NamedTuple):
    name: str
    paper: str  # where in the paper
    columns: dict[str, str]  # metric column -> what it is
    run_chunk: Callable[[jax.Array, jax.Array, int, Config], dict[str, jax.Array]]
    size: Callable[[int, Config], int]  # the compiled size for dimension d
    theory: Callable[[int, Config], dict[str, float]]  # closed forms for summary.csv
    theory_slope: Callable[[Config], float]  # predicted log-log slope of the gap against d
    bytes_per_trial: Callable[[int, Config], int]  # working memory at a compiled size, to size chunks
    cell_stats: Callable[[dict[str, np.ndarray], int, int, Config], dict[str, float | str]] = (
        lambda aux, d, size, config: {}
    )


def registry() -> dict[str, Experiment]:
    from jaxfrag.experiments import thm1, thm4, thm6

    return {e.name: e for e in (thm1.EXPERIMENT, thm4.EXPERIMENT, thm6.EXPERIMENT)}


# Stable integers folded into the key, so that adding experiments never changes
# an existing experiment's numbers.
EXPERIMENT_IDS = {"thm1": 1, "thm4": 4, "thm6": 6, "linear": 100, "relu": 200}
