"""Theorem 1: d Gaussian points, one class each, and the 2-layer linear net of condition (1).

Per trial: sample X (d, d), build the network from X = Q_2 R, and at the point
x_d of class d measure
* the constructed attack e = Q_2 (0, .., 0, R_{d-1,d-1} - R_{d-1,d}, -R_dd) of
  eq. (2)-(3), applied to the network;
* the network's exact robustness (its smallest label-changing perturbation);
* the optimal classifier's robustness, half the distance to the nearest other
  point; and their ratio, the gap, which Theorem 1 says shrinks like d^(-1/2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxfrag import attacks, data, linalg, optimal, padding, rmt
from jaxfrag.config import Config
from jaxfrag.experiments.base import Experiment, map_trials
from jaxfrag.models import constructed as networks

COLUMNS = {
    "e_norm": "||e|| of the constructed attack, eq. (3)",
    "e_flips": "adding e gives f_{d-1} > f_d, eq. (2), so the label is no longer d",
    "e_targeted": "adding e makes class d-1 the argmax (the construction leaves other classes free)",
    "nn_robustness": "the network's exact minimal perturbation at x_d: min over j of margin / ||w_d - w_j||",
    "nn_min_flips": (
        "that perturbation x(1+s) changes the label and x(1-s) does not; "
        "s = 1e-4, or the float resolution of x if coarser"
    ),
    "opt_robustness": "half the smallest distance from x_d to another point (minimum-distance classifier)",
    "gap": "nn_robustness / opt_robustness",
}


def point_metrics(points: jax.Array, hidden: networks.HiddenLayers, d) -> dict[str, jax.Array]:
    """Theorems 1 and 4 metrics at the last point of `points` for the condition-(1) network.

    `points` is (size, size) with the d real points in its last d columns.
    """
    size = points.shape[0]
    classes = padding.real_mask(size, d)
    f = linalg.qr(points)
    model = functools.partial(networks.apply, networks.condition1_network(hidden, f))
    x, label, target = points[:, -1], size - 1, size - 2
    r = f.r
    e = linalg.q_matmul(f, jnp.zeros(size, r.dtype).at[-2:].set(jnp.stack([r[-2, -2] - r[-2, -1], -r[-1, -1]])))
    logits = model(x + e)
    nn = attacks.linear_min_perturbation(model, x, label, classes)
    opt = optimal.half_min_distance(points, size - 1, classes)
    return {
        "e_norm": jnp.linalg.norm(e),
        "e_flips": logits[target] > logits[label],
        "e_targeted": attacks.predict(model, x + e, classes) == target,
        "nn_robustness": nn.norm,
        "nn_min_flips": attacks.is_minimal(model, x, nn.delta, label, classes),
        "opt_robustness": opt,
        "gap": nn.norm / opt,
    }


def inputs(key: jax.Array, d, config: Config, size: int | None = None):
    """A trial's data points (size, size) and the hidden layers of its network."""
    size = size or d
    key_points, key_net = jax.random.split(key)
    points = data.gaussian_points(key_points, d, size)
    hidden = networks.gaussian_hidden_layers(
        key_net, d, config.hidden_widths("thm1", d), config.hidden_widths("thm1", size), size
    )
    return points, hidden


def trial(key: jax.Array, d, config: Config, size: int | None = None) -> dict[str, jax.Array]:
    return point_metrics(*inputs(key, d, config, size), d)


def run_chunk(keys: jax.Array, d, size: int, config: Config) -> dict[str, jax.Array]:
    return map_trials(lambda key: trial(key, d, config, size), keys)


def theory(d: int, config: Config) -> dict[str, float]:
    law = rmt.thm1_attack_norm_law()
    return {
        "e_norm_mean_theory": float(law.mean()),
        "e_norm_sq_mean_theory": float(rmt.attack_norm_sq_mean(d, 0)),
        "opt_robustness_asymptote": float(rmt.min_distance_asymptote(d)),
        # Theorem 1's prediction: robustness at most ||e|| = O(1) against sqrt(2d)/2.
        "gap_theory": float(law.mean() / rmt.min_distance_asymptote(d)),
    }


def bytes_per_trial(size: int, config: Config) -> int:
    width = config.width_mult * size
    return 4 * 8 * (width * (width + size) * config.depth_for("thm1") + 4 * size * size)


EXPERIMENT = Experiment(
    name="thm1",
    paper="Theorem 1",
    columns=COLUMNS,
    run_chunk=run_chunk,
    size=lambda d, config: padding.bucket(d, 32),  # 2 programs for d = 7..64
    theory=theory,
    theory_slope=lambda config: -0.5,
    gap_theory_kind="asymptotic upper bound E||e|| / sqrt(d/2)",
    bytes_per_trial=bytes_per_trial,
)
