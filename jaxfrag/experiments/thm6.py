"""Theorem 6: the +/-1 hypercube model x = A z, label = last bit, and condition (6).

Per trial: sample A (first d-1 columns times `scale_columns`) and a data point
x = A z, build the condition-(6) network from A = Q R, and measure
* phi = R_dd / ||a_d||, the feature-compression ratio;
* the network's exact robustness at x (its distance to its decision boundary,
  computed from the network), which the theory says is R_dd;
* the constructed attack e = -2 z_d R_dd Q_{:,d}, applied to the network;
* the optimal classifier's robustness, half the distance from x to the nearest
  opposite-class point, found EXACTLY: by enumerating all 2^(d-1) candidates
  for d <= brute_force_max_d and by sphere decoding beyond. It equals ||a_d||
  only when that nearest point differs from z in the last bit alone.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxfrag import attacks, data, linalg, optimal, padding, rmt
from jaxfrag.config import Config
from jaxfrag.experiments.base import Experiment, map_trials
from jaxfrag.models import constructed as networks

COLUMNS = {
    "phi": "R_dd / ||a_d||",
    "r_dd": "R_dd of A = Q R (diagonal >= 0)",
    "a_d_norm": "||a_d||, the last column of A",
    "nn_robustness": "the network's exact distance from x to its decision boundary",
    "nn_min_flips": (
        "that perturbation x(1+s) changes the label and x(1-s) does not; "
        "s = 1e-4, or the float resolution of x if coarser"
    ),
    "attack_norm": "||e|| for e = -2 z_d R_dd Q_{:,d}",
    "attack_flips": "adding e changes the network's label",
    "opt_robustness": "half the distance from x to the nearest opposite-class point A z'",
    "opt_exact": "the search for that point completed (brute force, or sphere decoder within its node cap)",
    "opt_bits_flipped": "how many of z_1..z_{d-1} differ in that nearest point (0: it is the last-bit flip)",
    "decoder_nodes": "children the sphere decoder evaluated (0 where brute force was used)",
    "gap": "nn_robustness / opt_robustness",
}


def inputs(key: jax.Array, d, config: Config, size: int | None = None):
    """A trial's mixing matrix A (size, size), sign vector z, and the hidden layers of its network."""
    size = size or d
    key_data, key_net = jax.random.split(key)
    a, z = data.hypercube_model(key_data, d, config.scale_for("thm6"), size)
    hidden = networks.gaussian_hidden_layers(
        key_net, d, config.hidden_widths("thm6", d), config.hidden_widths("thm6", size), size
    )
    return a, z, hidden


def network_metrics(key: jax.Array, d, config: Config, size: int | None = None):
    """Everything but the optimum for one trial; also returns A and z for the search."""
    size = size or d
    a, z, hidden = inputs(key, d, config, size)
    f = linalg.qr(a)
    model = functools.partial(networks.apply, networks.condition6_network(hidden, f))
    x = a @ z
    label = jnp.where(z[-1] > 0, 0, 1)  # output 0 is class +1
    nn = attacks.linear_min_perturbation(model, x, label)
    r_dd, a_d_norm = f.r[-1, -1], jnp.linalg.norm(a[:, -1])
    e = -2 * z[-1] * r_dd * linalg.q_matmul(f, jnp.zeros(size, a.dtype).at[-1].set(1))  # Q_{:,d}
    metrics = {
        "phi": r_dd / a_d_norm,
        "r_dd": r_dd,
        "a_d_norm": a_d_norm,
        "nn_robustness": nn.norm,
        "nn_min_flips": attacks.is_minimal(model, x, nn.delta, label),
        "attack_norm": jnp.linalg.norm(e),
        "attack_flips": attacks.changes_label(model, x, e, label),
    }
    return metrics, a, z


def optimum_metrics(a: jax.Array, z: jax.Array, bits: jax.Array) -> dict[str, jax.Array]:
    """The optimum from the minimising bit pattern: a real opposite-class point and its distance."""
    z_opposite = optimal.flipped_point(z, bits)
    return {
        "opt_robustness": 0.5 * jnp.linalg.norm(a @ z - a @ z_opposite),
        "opt_bits_flipped": jnp.sum(bits.astype(jnp.int32)),
    }


def uses_brute_force(d: int, config: Config) -> bool:
    return d <= config.brute_force_max_d


def compiled_size(d: int, config: Config) -> int:
    # All brute-force dimensions share one program; enumerating 2^(size-1)
    # patterns must stay cheap, so that program is exactly brute_force_max_d
    # wide. Beyond, sizes 32, 48, 64, ...: the decoder's per-node cost grows
    # with the size, so the grid is finer than thm1's. 4 programs for 7..64.
    if uses_brute_force(d, config):
        return config.brute_force_max_d
    return max(32, padding.bucket(d, 16))


def search_inputs(key: jax.Array, d, config: Config, size: int):
    """One trial's network metrics and its nearest-opposite-point problem (brute-force or search form)."""
    metrics, a, z = network_metrics(key, d, config, size)
    return metrics, a, z, opposite_point_problem(a, z, d, size, config)


def opposite_point_problem(a: jax.Array, z: jax.Array, d, size: int, config: Config):
    """One trial's nearest-opposite-point problem: solved bits (brute force) or the sorted search form."""
    c, b = optimal.opposite_class_problem(a, z, padding.real_mask(size, d))
    if uses_brute_force(size, config):
        return optimal.closest_binary_bruteforce(c, b)
    return optimal.search_problem(c, b)


def decoder_lanes() -> int:
    """Searches stepped together: enough to amortise a CPU's per-step overhead (measured at d = 56:
    111 ns per node with 256 lanes, 131 with 128, 139 with 512); an accelerator needs far more
    parallel work (that value is a starting point, not yet measured)."""
    return 256 if jax.default_backend() == "cpu" else 16384


def run_chunk(keys: jax.Array, d, size: int, config: Config, lanes: int | None = None) -> dict[str, jax.Array]:
    metrics, a, z, problem = map_trials(lambda key: search_inputs(key, d, config, size), keys)
    metrics.update(solve_optimum(a, z, problem, d, size, config, lanes))
    metrics["gap"] = metrics["nn_robustness"] / metrics["opt_robustness"]
    return {name: metrics[name] for name in COLUMNS}


def solve_optimum(a, z, problem, d, size: int, config: Config, lanes: int | None = None) -> dict[str, jax.Array]:
    """A chunk's optimum columns (opt_robustness, opt_bits_flipped, opt_exact, decoder_nodes) from its problems."""
    num = a.shape[0]
    if uses_brute_force(size, config):
        bits = problem
        exact, nodes = jnp.ones(num, bool), jnp.zeros(num, jnp.int32)
    else:
        problems, perm = problem
        # Padded columns (BIG e_k) sort to the top of the search: skip them.
        found = optimal.sphere_decode(
            problems, skip=size - d, lanes=lanes or decoder_lanes(), max_nodes=config.max_nodes
        )
        # Back from the sorted column order: bit j of the search is column perm[j] of C.
        bits = jax.vmap(lambda p, s: jnp.zeros(size - 1, s.dtype).at[p[: size - 1]].set(s))(perm, found.bits)
        exact, nodes = found.exact, found.nodes
    return {**jax.vmap(optimum_metrics)(a, z, bits), "opt_exact": exact, "decoder_nodes": nodes}


def theory(d: int, config: Config) -> dict[str, float]:
    r_dd_mean = math.sqrt(2 / math.pi)  # R_dd ~ |N(0, 1)|
    return {
        "phi_mean_theory": float(rmt.phi_mean(d)),
        "phi_mean_asymptote": float(rmt.phi_mean_asymptote(d)),
        "r_dd_mean_theory": r_dd_mean,
        "nn_robustness_mean_theory": r_dd_mean,
        "attack_norm_mean_theory": 2 * r_dd_mean,
        # gap = R_dd / opt >= R_dd / ||a_d|| = phi, with equality when the nearest
        # opposite point is the last-bit flip; E[phi] is the closed form.
        "gap_theory": float(rmt.phi_mean(d)),
    }


def cell_stats(aux, d: int, size: int, config: Config) -> dict[str, str]:
    return {"opt_method": "brute_force" if uses_brute_force(d, config) else "sphere_decoder"}


def bytes_per_trial(size: int, config: Config) -> int:
    width = config.width_mult * size
    brute = (2 ** (size - 1)) * size if uses_brute_force(size, config) else 0
    return 4 * (8 * (width * (width + size) * config.depth_for("thm6") + 6 * size * size) + 2 * brute)


EXPERIMENT = Experiment(
    name="thm6",
    paper="Theorem 6",
    columns=COLUMNS,
    run_chunk=run_chunk,
    size=compiled_size,
    theory=theory,
    theory_slope=lambda config: -0.5,
    gap_theory_kind="lower bound E[phi], equal when the optimum is the last-bit flip",
    bytes_per_trial=bytes_per_trial,
    cell_stats=cell_stats,
)
