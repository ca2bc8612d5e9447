"""Section 6, "Linear networks": trained networks on Theorem 6's data (Tables 1-2, Figure 2).

Per trial: draw A (first d-1 columns times 5 by default), take the training set
(all 2^d points x = A z while 2^d <= max_points, else max_points distinct ones
drawn uniformly, `data.sample_distinct`, so d runs to 64), train a d -> width
-> 2 identity-activation network with optax (see `jaxfrag.models.linear`), and
measure, with W = H_2 H_1 and W1, W2 its rows:
* train accuracy and loss, and whether training diverged;
* cos theta1 = cos(W1 - W2, a_d) and cos theta2 = cos(W1, last row of A^-1),
  signed, and phi = R_dd / ||a_d||, which Theorem 6 says |cos theta1| is close to;
* the network's exact robustness on its training set: the smallest distance
  from a training point to its decision boundary (from the network itself), the
  minimal perturbation at that worst point applied scaled by 1 +- 1e-4;
* the optimal classifier's exact robustness at that same point (half the
  distance to the nearest opposite-class point among all 2^d, by brute force or
  the sphere decoder, as in thm6), and the gap.

The last row of A^-1 is Q_{:,d}^T / R_dd for A = Q R, so cos theta2 uses Q_{:,d}.
The per-d summary adds the paper's Table 2 statistics (successes with
|cos theta2| > 0.9) beside the paper's numbers, and the same unconditioned.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxfrag import attacks, data, linalg, plots, rmt
from jaxfrag.config import Config
from jaxfrag.experiments import thm6
from jaxfrag.experiments.base import Ablation, Experiment, map_trials
from jaxfrag.models import linear as linear_net
from jaxfrag.stats import format_estimate, mean_se

COLUMNS = {
    "train_acc": "accuracy on the training points",
    "train_loss": "mean cross-entropy on the training points after training",
    "diverged": "a NaN or inf loss was seen during training",
    "epochs_run": "epochs trained: --epochs, or under --protocol until-fit up to --max-epochs",
    "cos_theta1": "cos of the angle between W1 - W2 and a_d, the last column of A (signed)",
    "cos_theta2": "cos of the angle between W1 and the last row of A^-1 (signed)",
    "phi": "R_dd / ||a_d||",
    "robustness_exact": "the network's smallest distance from a training point to its decision boundary",
    "robustness_ratio": "robustness_exact / ||a_d||",
    "robustness_attack": "the minimal-L2 gradient attack's perturbation norm at that point (attacks.minimal_l2)",
    "robustness_attack_success": "that attack's perturbation, applied, changes the label",
    "opt_robustness": "at that worst point: half the distance to the nearest opposite-class point (exact)",
    "opt_exact": "the search for that point completed",
    "opt_bits_flipped": "how many of z_1..z_{d-1} differ in that nearest point",
    "decoder_nodes": "children the sphere decoder evaluated (0 where brute force was used)",
    "gap": "robustness_exact / opt_robustness",
    "attack_flips": "the minimal perturbation at the worst point, scaled by 1 + 1e-4, changes the label, "
    "and scaled by 1 - 1e-4 does not",
    "worst_point": "index i of that point: z_j = 2 bit_j(i) - 1 (uint64)",
    "n_points": "distinct training points used",
    "points_sampled": "the training points are a sample of the 2^d (2^d > max_points)",
}

# The paper's section 6 at d = 12: Table 2 over 18 of 20 successful runs out of 50.
PAPER_TABLE2 = {
    12: {"runs": 50, "successes": 20, "filtered": 18, "abs_cos1": 0.3645, "phi": 0.3280, "abs_diff": 0.0367}
}
PAPER_TABLE1 = {  # d = 12, its first 10 runs with training accuracy 1
    "cos_theta1": [-0.1970, -0.1907, -0.6017, -0.2119, -0.2449, -0.5054, -0.7794, -0.5868, -0.1655, -0.4739],
    "cos_theta2": [-0.9992, -0.9992, -0.9984, -0.9994, -0.9955, -0.9988, -0.0795, -0.9972, -0.9993, -0.9942],
    "phi": [0.1812, 0.1870, 0.5888, 0.2048, 0.2032, 0.4985, 0.0738, 0.5895, 0.1480, 0.4497],
}
TABLE2_FILTER = 0.9  # |cos theta2| above this, as in the paper's Table 2
TABLE1_D = 12


def cosine(u: jax.Array, v: jax.Array) -> jax.Array:
    return u @ v / (jnp.linalg.norm(u) * jnp.linalg.norm(v))


class TrialTraining(NamedTuple):
    a: jax.Array  # the data matrix
    indices: jax.Array  # the training points' index words
    net: linear_net.LinearNet  # trained
    diverged: jax.Array
    epochs: jax.Array  # epochs run


def train_trial(key: jax.Array, d: int, config: Config, experiment: str = "linear", network=linear_net, pair=None):
    """One trial's data and trained network.

    `network` is the module of the network's loss and stopping test (`cross_entropy`, `fits`):
    `linear_net` by default, `relu_net` for the relu experiment; the data follow `experiment`'s
    column scaling. With `pair` ((2, WORDS) point indices), the training set holds both points, or
    neither if config.pair is "fresh" (`data.training_indices`).
    """
    key_a, key_points, key_init, key_train = jax.random.split(key, 4)
    a = data.mixing_matrix(key_a, d, config.scale_for(experiment))
    if pair is None:
        indices = data.hypercube_indices(key_points, d, config.max_points)
    else:
        indices = data.training_indices(key_points, d, config.max_points, pair, held_out=config.pair == "fresh")
    net = linear_net.init(key_init, d, config, a.dtype)
    fit = functools.partial(network.fits, a=a, indices=indices)
    trained = linear_net.train(key_train, net, a, indices, config, network.cross_entropy, fit=fit)
    return TrialTraining(a, indices, trained.net, trained.diverged, trained.epochs)


def trained_metrics(key: jax.Array, d: int, config: Config):
    """One trial up to the optimum: (metrics, A, z of the worst point, its opposite-point problem)."""
    a, indices, net, diverged, epochs = train_trial(key, d, config)

    w, b = linear_net.affine_map(net)
    x, labels = data.hypercube_batch(a, indices)
    logits = x @ w.T + b
    predicted = jnp.argmax(logits, axis=1)
    # Two classes: every point's distance to the boundary is |s(x)| / ||u||, s = u.x + c.
    u = w[1] - w[0]
    worst = jnp.argmin(jnp.abs(x @ u + (b[1] - b[0])))
    model = functools.partial(linear_net.apply, net)
    nn = attacks.linear_min_perturbation(model, x[worst], predicted[worst])

    # As if no closed form existed.
    attack = attacks.minimal_l2(model, x[worst], predicted[worst], **attacks.PRESETS[config.attack])

    f = linalg.qr(a)
    r_dd, a_d = f.r[-1, -1], a[:, -1]
    q_d = linalg.q_matmul(f, jnp.zeros(d, a.dtype).at[-1].set(1))
    a_d_norm = jnp.linalg.norm(a_d)
    metrics = {
        "train_acc": jnp.mean(predicted == labels),
        "train_loss": jnp.mean(jax.vmap(lambda lo, y: -jax.nn.log_softmax(lo)[y])(logits, labels)),
        "diverged": diverged | ~jnp.all(jnp.isfinite(w)),
        "epochs_run": epochs,
        "cos_theta1": cosine(w[0] - w[1], a_d),
        "cos_theta2": cosine(w[0], q_d),  # last row of A^-1 = Q_{:,d}^T / R_dd, R_dd > 0
        "phi": r_dd / a_d_norm,
        "robustness_exact": nn.norm,
        "robustness_ratio": nn.norm / a_d_norm,
        "robustness_attack": attack.norm,
        "robustness_attack_success": attack.success,
        "attack_flips": attacks.is_minimal(model, x[worst], nn.delta, predicted[worst]),
        "worst_point": indices[worst],
        "n_points": data.count_distinct(indices),
        "points_sampled": jnp.asarray(2**d > config.max_points),
    }
    z = data.sign_vectors(indices[worst][None], d, a.dtype)[0]
    return metrics, a, z, thm6.opposite_point_problem(a, z, d, d, config)


def host_columns(arrays: dict) -> dict:
    """The worst point's index words as one uint64 column."""
    return {**arrays, "worst_point": data.words_to_int(arrays["worst_point"])}


def run_chunk(keys: jax.Array, d, size: int, config: Config, lanes: int | None = None) -> dict[str, jax.Array]:
    # Compiled per d (size == d): the number of points and of training steps is 2^d-dependent.
    metrics, a, z, problem = map_trials(lambda key: trained_metrics(key, size, config), keys)
    metrics.update(thm6.solve_optimum(a, z, problem, size, size, config, lanes))
    metrics["gap"] = metrics["robustness_exact"] / metrics["opt_robustness"]
    return {name: metrics[name] for name in COLUMNS}


def theory(d: int, config: Config) -> dict[str, float]:
    phi_mean = float(rmt.phi_mean(d))
    return {"phi_mean_theory": phi_mean, "gap_theory": phi_mean}


def bytes_per_trial(size: int, config: Config) -> int:
    points = data.num_points(size, config.max_points)
    # sample_distinct's buffer: its words, the sorted copy, draw order and flags (4-byte words).
    draws = data.draws_needed(size, points) * (3 * data.WORDS + 3) if 2**size > config.max_points else 0
    brute = (2 ** (size - 1)) * size if thm6.uses_brute_force(size, config) else 0
    return 4 * (6 * linear_net.num_parameters(size, config) + points * (4 * size + 14) + draws + 2 * brute)


def successes(rows: pd.DataFrame) -> pd.Series:
    """The paper's "valid runs": training accuracy 1 (and no divergence)."""
    return (rows["train_acc"] == 1) & ~rows["diverged"].astype(bool)


def per_trial(rows: pd.DataFrame) -> pd.DataFrame:
    """The ablation measures: Theorem 6 says |cos theta1| tracks phi, and the worst training point's
    margin over ||a_d|| is |cos theta1| for a network that has learnt the last row of A^-1."""
    abs_cos = rows["cos_theta1"].abs()
    return pd.DataFrame(
        {
            "success": successes(rows),
            "compression": abs_cos,
            "robustness": rows["robustness_ratio"],
            "tracking": abs_cos - rows["phi"],
            "phi": rows["phi"],
            "gap": rows["gap"],
        }
    )


ABLATION = Ablation(
    per_trial=per_trial,
    labels={
        "success": "training accuracy 1",
        "compression": "|cos θ1|",
        "robustness": "robustness / ‖a_d‖",
        "tracking": "|cos θ1| − φ",
        "gap": "robustness / optimal robustness",
    },
)


def cell_summary(rows: pd.DataFrame, d: int, config: Config) -> dict[str, float]:
    """Success fraction, the Table 2 statistics on successes with |cos theta2| > 0.9, and the same unconditioned."""
    ok = successes(rows)
    out: dict[str, float] = {
        "runs": len(rows),
        "successes": int(ok.sum()),
        "success_fraction": float(ok.mean()),
        "success_fraction_se": float(math.sqrt(ok.mean() * (1 - ok.mean()) / len(rows))),
    }
    finite = rows[~rows["nonfinite"].astype(bool)]
    groups = {
        "table2": rows[ok & (rows["cos_theta2"].abs() > TABLE2_FILTER)],
        "success": rows[ok],
        "all": finite,
    }
    for prefix, group in groups.items():
        abs_cos1 = group["cos_theta1"].abs().to_numpy()
        phi = group["phi"].to_numpy()
        out[f"{prefix}_n"] = len(group)
        measures = [("abs_cos_theta1", abs_cos1), ("phi", phi), ("abs_diff", np.abs(abs_cos1 - phi))]
        if prefix == "success":  # the measured robustness where training succeeded (failures have ~0 margins)
            measures += [("robustness_ratio", group["robustness_ratio"].to_numpy()), ("gap", group["gap"].to_numpy())]
        for name, values in measures:
            out[f"{prefix}_{name}_mean"], out[f"{prefix}_{name}_se"] = mean_se(values)
    attack_ratio = (
        (finite["robustness_attack"] / finite["robustness_exact"]).to_numpy() if "robustness_attack" in finite else []
    )
    if len(attack_ratio):  # how close the gradient attack comes to the exact answer (issue bounds: 1.01, 1.05)
        out.update(attack_ratio_median=float(np.median(attack_ratio)), attack_ratio_max=float(np.max(attack_ratio)))
    paper = PAPER_TABLE2.get(d)
    if paper:
        out.update(
            paper_success_fraction=paper["successes"] / paper["runs"],
            paper_table2_n=paper["filtered"],
            paper_table2_abs_cos_theta1=paper["abs_cos1"],
            paper_table2_phi=paper["phi"],
            paper_table2_abs_diff=paper["abs_diff"],
        )
    return out


def table1(rows: pd.DataFrame, d: int = TABLE1_D, count: int = 10) -> pd.DataFrame:
    """The paper's Table 1 layout: the first `count` successful runs at d (by trial index)."""
    cell = rows[(rows["experiment"] == "linear") & (rows["d"] == d)].sort_values("trial")
    first = cell[successes(cell)].head(count)
    return pd.DataFrame(
        [first["cos_theta1"].to_numpy(), first["cos_theta2"].to_numpy(), first["phi"].to_numpy()],
        index=["cos(theta1)", "cos(theta2)", "phi"],
        columns=[f"run {t}" for t in first["trial"]],
    )


def epochs_text(config: Config) -> str:
    """How long the nets trained, for the reports' headers."""
    if config.protocol == "until-fit":
        return f"at least {config.epochs} epochs and on until training accuracy 1 (at most {config.max_epochs})"
    return f"{config.epochs} epochs"


def attack_text(config: Config) -> str:
    """The reports' note on a run whose attack is not the full one: strong adds ALMA's lanes to it,
    the others' norms are looser upper bounds."""
    if config.attack == "full":
        return ""
    bound = "the full attack and ALMA's lanes" if config.attack == "strong" else "a looser upper bound"
    return f"; the {config.attack} minimal-L2 attack ({bound})"


def report(summary: pd.DataFrame, rows: pd.DataFrame, config: Config) -> str:
    cells = summary[summary["experiment"] == "linear"].sort_values("d")
    lines = [
        f"linear (section 6): d -> {config.width} x{config.hidden_layers} -> 2 linear nets, {config.optimizer} "
        f"lr {config.lr:g}, {epochs_text(config)} of batches of {config.batch_size}, init {config.init}, "
        f"bias {'on' if config.bias else 'off'}, columns 1..d-1 of A x{config.scale_for('linear'):g}"
        + attack_text(config),
        "Table 2: successes (train acc 1) with |cos theta2| > 0.9; mean ± standard error",
        f"{'d':>4} {'successes':>17} {'kept':>5}  {'|cos theta1|':>17}  {'phi':>17}  {'||cos theta1| - phi|':>20}",
    ]
    for _, c in cells.iterrows():
        d = int(c["d"])
        lines.append(
            f"{d:>4} {int(c['successes']):>6}/{int(c['runs']):<4} ({c['success_fraction']:.2f}) "
            f"{int(c['table2_n']):>5}  "
            f"{format_estimate(c['table2_abs_cos_theta1_mean'], c['table2_abs_cos_theta1_se']):>17}  "
            f"{format_estimate(c['table2_phi_mean'], c['table2_phi_se']):>17}  "
            f"{format_estimate(c['table2_abs_diff_mean'], c['table2_abs_diff_se']):>20}"
        )
        paper = PAPER_TABLE2.get(d)
        if paper:
            lines.append(
                f"{'':>4} {paper['successes']:>6}/{paper['runs']:<4} ({paper['successes'] / paper['runs']:.2f}) "
                f"{paper['filtered']:>5}  {paper['abs_cos1']:>17.4f}  {paper['phi']:>17.4f}  {paper['abs_diff']:>20.4f}"
                "   <- the paper"
            )
    lines.append("Unconditioned (all finite trials) vs on successes, E[phi], and the exact gap on successes:")
    lines.append(
        f"{'d':>4}  {'|cos theta1| all':>17}  {'phi all':>17}  {'phi successes':>17}  {'E[phi]':>7}  "
        f"{'gap successes':>17}  attack_flips"
    )
    for _, c in cells.iterrows():
        pm = lambda name: format_estimate(c[f"{name}_mean"], c[f"{name}_se"])  # noqa: B023 (used at once)
        lines.append(
            f"{int(c['d']):>4}  {pm('all_abs_cos_theta1'):>17}  {pm('all_phi'):>17}  {pm('success_phi'):>17}  "
            f"{c['phi_mean_theory']:>7.4f}  {pm('success_gap'):>17}  {c['attack_flips_mean']:.3f}"
        )
    lines.append("The minimal-L2 attack against the exact robustness (robustness_attack / robustness_exact):")
    for _, c in cells.iterrows():
        lines.append(
            f"{int(c['d']):>4}  median {c.get('attack_ratio_median', np.nan):.5f}  "
            f"max {c.get('attack_ratio_max', np.nan):.5f}  success {c['robustness_attack_success_mean']:.3f}"
        )
    if (rows["experiment"] == "linear").any() and (rows["d"] == TABLE1_D).any():
        t1 = table1(rows)
        if len(t1.columns):
            lines.append(f"Table 1 layout, the first {len(t1.columns)} successful runs at d = {TABLE1_D}:")
            lines.append(t1.to_string(float_format=lambda v: f"{v:.4f}"))
    return "\n".join(lines)


def figures(figure_path, summary: pd.DataFrame, rows: pd.DataFrame, config: Config) -> None:
    cells = summary[summary["experiment"] == "linear"].sort_values("d")
    if len(cells):
        plots.figure2(cells, figure_path("figure2.png"))
    if ((rows["experiment"] == "linear") & (rows["d"] == TABLE1_D)).any():
        plots.table1_figure(table1(rows), PAPER_TABLE1, TABLE1_D, figure_path("table1.png"))


EXPERIMENT = Experiment(
    name="linear",
    paper="section 6, Tables 1-2, Figure 2",
    columns=COLUMNS,
    run_chunk=run_chunk,
    size=lambda d, config: d,
    theory=theory,
    theory_slope=lambda config: -0.5,
    gap_theory_kind="E[phi], Theorem 6's prediction for |cos theta1| (the gap when the optimum is the last-bit flip)",
    bytes_per_trial=bytes_per_trial,
    host_columns=host_columns,
    cell_summary=cell_summary,
    report=report,
    figures=figures,
    ablation=ABLATION,
)
