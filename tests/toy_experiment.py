"""A toy sweep experiment, registered by a row in `jaxfrag.config.EXPERIMENTS` alone (tests/test_layers.py).

Per trial: x ~ N(0, I_d) and gap = ||x|| / sqrt(d), whose mean is the chi distribution's
sqrt(2) Gamma((d + 1)/2) / (Gamma(d/2) sqrt(d)).
"""

import math

import jax
import jax.numpy as jnp

from jaxfrag import padding
from jaxfrag.experiments.base import Experiment, map_trials

NAME = "toy"
ID = 900  # its key id, as the table row gives it


def trial_gap(key: jax.Array, d, size: int) -> jax.Array:
    x = jax.random.normal(key, (size,)) * padding.real_mask(size, d)
    return jnp.sqrt(jnp.sum(x * x)) / jnp.sqrt(d)


def run_chunk(keys, d, size, config):
    return {"gap": map_trials(lambda key: trial_gap(key, d, size), keys)}


def mean_gap(d: int) -> float:
    return math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2)) * math.sqrt(2 / d)


EXPERIMENT = Experiment(
    name=NAME,
    paper="none: a test's toy",
    columns={"gap": "||x|| / sqrt(d) for x ~ N(0, I_d)"},
    run_chunk=run_chunk,
    size=lambda d, config: 16,  # one program for every d <= 16
    theory=lambda d, config: {"gap_theory": mean_gap(d)},
    theory_slope=lambda config: 0.0,
    gap_theory_kind="exact mean",
    bytes_per_trial=lambda size, config: 64 * size,
)
