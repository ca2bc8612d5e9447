"""Section 6, "Nonlinear networks" and "Perturbation analysis" (Theorem 7; Tables 3 and 4).

Per trial: draw A (the first d-1 columns times 5 by default, section 6's
protocol; `--scale-columns 1` is Theorem 6 as stated), train a d -> width -> 2
ReLU network on the hypercube points x = A z (label = last bit) exactly as the
linear experiment trains its linear ones (`jaxfrag.models.relu`), around one
pair z+, z- that agree in the first d-1 (uniform) signs and differ in the last,
b1 = A z+ (class 1) and b2 = A z- (class 0), so that b1 - b2 = 2 a_d. With
`--pair train` (the default, as the paper) both are training points: all 2^d
points while 2^d <= max_points, else a uniform sample that holds the pair. With
`--pair fresh` both are held out of training (`data.training_indices`; the
pair is the same either way, and so are the other training points but two).
Then measure:

* Table 3: rho at x = alpha b1 + (1 - alpha) b2, alpha_k = k/9: the paper's
  x1 - x2 = b1 - b2 for every alpha, so rho = |cos(grad(f1 - f2)(x), a_d)|, from
  `compression.path_compression` (f1, f2: output neurons 0 and 1, the linear
  experiment's W1, W2).
* Table 4, for b in {b1, b2}: the minimal-L2 attack (`attacks.minimal_l2`, from
  the class the network gives b) with its norm delta and whether applying it
  changes the label; cos theta_t = cos(grad(f1 - f2)(b + delta), a_d), signed; m =
  ||a_d||. The paper's claim is |cos theta_t| ~ delta / m.
* With --certify, a certified lower bound on the net's robustness at b1 and b2
  (`certify.certified_radius`; found without the attack, except that `bab` bisects up to the
  attack's norm): the net's true robustness lies between it and the attack's norm, and the gap
  between gap_certified and gap.
* The optimal (minimum-distance) classifier's exact robustness at b1 and at b2,
  half the distance to the nearest opposite-class point among all 2^d (brute
  force or sphere decoder, as thm6), at most m (the last-bit flip).

Were grad(f1 - f2) a uniformly random direction, rho would have the law of phi
(`jaxfrag.rmt`): mean Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)), 0.2352 at d = 12.
The per-d summary has Table 3's mean, standard error, median and its
order-statistic 95% interval per alpha over accurate networks (training accuracy
1), and Table 4's means with the |cos theta_t| - delta/m difference and its
interval, over accurate networks and over all trials.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxfrag import attacks, certify, compression, data, linalg, plots, rmt
from jaxfrag.config import Config
from jaxfrag.experiments import linear, thm6
from jaxfrag.experiments.base import Ablation, Experiment, map_trials
from jaxfrag.models import relu as relu_net
from jaxfrag.stats import format_estimate, interval, mean_se, median_ci

ALPHAS = 10  # alpha_k = k / 9, k = 0..9, as the paper's Table 3
INPUTS = ("b1", "b2")

COLUMNS = {
    "train_acc": "accuracy on the training points",
    "train_loss": "mean cross-entropy on the training points after training",
    "diverged": "a NaN or inf loss was seen during training",
    "epochs_run": linear.COLUMNS["epochs_run"],
    **{
        f"rho_alpha_{k}": f"|cos(grad(f1 - f2), a_d)| at x = alpha b1 + (1 - alpha) b2, alpha = {k}/9"
        for k in range(ALPHAS)
    },
    "delta_b1": "norm of the minimal-L2 attack's perturbation of b1 = A z+",
    "delta_b2": "norm of the minimal-L2 attack's perturbation of b2 = A z-",
    "flips_b1": "that perturbation, added to b1, changes the network's label",
    "flips_b2": "that perturbation, added to b2, changes the network's label",
    "cos_theta_t_b1": "cos of the angle between grad(f1 - f2) at b1 + delta and a_d (signed)",
    "cos_theta_t_b2": "cos of the angle between grad(f1 - f2) at b2 + delta and a_d (signed)",
    "opt_robustness_b1": "half the distance from b1 to the nearest opposite-class point A z' (exact)",
    "opt_robustness_b2": "half the distance from b2 to the nearest opposite-class point A z' (exact)",
    "opt_exact": "both searches for those points completed",
    "m": "||a_d||, the last column of A",
    "phi": "R_dd / ||a_d||, Theorem 6's compression ratio of the same A",
    "correct_b1": "the network classifies b1 as class 1 (z_d = +1)",
    "correct_b2": "the network classifies b2 as class 0 (z_d = -1)",
    "gap": "mean over b1, b2 of delta_b / opt_robustness_b",
    "robustness_certified_b1": "a certified lower bound on the net's robustness at b1 (with --certify only)",
    "robustness_certified_b2": "a certified lower bound on the net's robustness at b2 (with --certify only)",
    "gap_certified": "mean over b1, b2 of robustness_certified_b / opt_robustness_b: the gap is in [this, gap] "
    "(with --certify only)",
    "pair_index": "index i of z-: z_j = 2 bit_j(i) - 1; z+ is i + 2^(d-1) (uint64)",
    "pair_trained": "both b1 and b2 are among the training points (--pair train), or neither (fresh: False)",
    "n_points": "distinct training points used",
    "points_sampled": "the training points are a sample of the 2^d (of the other 2^d - 2 with --pair fresh)",
}

# The paper's Table 3 (d = 12, 50 accurate one-hidden-layer ReLU networks) and Table 4 (d = 17,
# averages over 10 inputs b1 and 10 inputs b2 of one network; cos theta_t as printed, signed).
PAPER_TABLE3 = {
    12: {
        "mean": [0.3278, 0.3275, 0.3273, 0.3270, 0.3272, 0.3275, 0.3274, 0.3281, 0.3280, 0.3276],
        "median": [0.3270, 0.3261, 0.3258, 0.3255, 0.3303, 0.3307, 0.3293, 0.3322, 0.3315, 0.3324],
        "networks": 50,
    }
}
PAPER_TABLE4 = {
    17: {
        "b1": {"cos_theta_t": -0.15324514, "delta": 0.8023384809494019, "m": 5.1928935050964355, "ratio": 0.15450701},
        "b2": {"cos_theta_t": -0.14983976, "delta": 0.7597464323043823, "m": 5.1928935050964355, "ratio": 0.14630501},
    }
}


def pair_words(key: jax.Array, d: int) -> jax.Array:
    """(WORDS,) uint32: the index of z-, uniform over [0, 2^(d-1)) (its last bit is 0)."""
    if d <= 31:  # one int32 draw, as before indices had two words: the same pairs as earlier versions
        return data.index_words(jax.random.randint(key, (1,), 0, 2 ** (d - 1), jnp.int32))[0]
    return jax.random.bits(key, (data.WORDS,), jnp.uint32) & jnp.asarray(data.word_masks(d - 1))


def pair_indices(pair: jax.Array, d: int) -> jax.Array:
    """(2, WORDS) uint32: the indices of z+ (the index of z- with bit d-1 set) and of z- (`pair`)."""
    high_bit = jnp.zeros(data.WORDS, jnp.uint32).at[(d - 1) // 32].set(jnp.uint32(1 << ((d - 1) % 32)))
    return jnp.stack([pair | high_bit, pair])


def host_columns(arrays: dict) -> dict:
    """The pair's index words as one uint64 column."""
    return {**arrays, "pair_index": data.words_to_int(arrays["pair_index"])}


def trained_metrics(key: jax.Array, d: int, config: Config):
    """One trial up to the optimum: (metrics, A, z+, z-, their opposite-point problems)."""
    key_train, key_pair = jax.random.split(key)
    pair = pair_words(key_pair, d)
    both = pair_indices(pair, d)
    a, indices, net, diverged, epochs = linear.train_trial(key_train, d, config, "relu", relu_net, pair=both)
    accuracy, loss = relu_net.evaluate(net, a, indices)
    model = functools.partial(relu_net.apply, net)

    z_plus, z_minus = data.sign_vectors(both, d, a.dtype)
    b1, b2 = a @ z_plus, a @ z_minus
    a_d = a[:, -1]
    m = jnp.linalg.norm(a_d)

    # x1 - x2 = b1 - b2 for every alpha, and the path from b2 to b1 is x = alpha b1 + (1 - alpha) b2.
    path = compression.path_compression(model, b2, b1, (0, 1), ALPHAS)
    metrics = {
        "train_acc": accuracy,
        "train_loss": loss,
        "diverged": diverged | ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(net)])),
        "epochs_run": epochs,
        **{f"rho_alpha_{k}": jnp.abs(path.cos[k]) for k in range(ALPHAS)},
    }
    grad_g = compression.margin_gradient(model, 0, 1)
    for name, b, true_class in (("b1", b1, 1), ("b2", b2, 0)):
        label = jnp.argmax(model(b))
        attack = attacks.minimal_l2(model, b, label, **attacks.PRESETS[config.attack])
        metrics[f"delta_{name}"] = attack.norm
        metrics[f"flips_{name}"] = attack.success
        metrics[f"cos_theta_t_{name}"] = linear.cosine(grad_g(b + attack.delta), a_d)
        metrics[f"correct_{name}"] = label == true_class
        if config.certify != "off":
            # The bound rungs are found without the attack's norm, so that the two check each other;
            # branch and bound tightens up to it (any radius above a verified crossing is uncertifiable).
            upper = attack.norm if config.certify == "bab" else None
            network = certify.chain(net.weights, net.biases)
            metrics[f"robustness_certified_{name}"] = certify.certified_radius(
                network, b, label, method=config.certify, upper=upper
            ).radius
    metrics.update(
        m=m,
        phi=linalg.qr(a).r[-1, -1] / m,
        pair_index=pair,
        pair_trained=jnp.all(data.contains(indices, both)),
        n_points=data.count_distinct(indices),
        points_sampled=jnp.asarray(indices.shape[0] < 2**d - (2 if config.pair == "fresh" else 0)),
    )
    problems = tuple(thm6.opposite_point_problem(a, z, d, d, config) for z in (z_plus, z_minus))
    return metrics, a, z_plus, z_minus, problems


CERTIFIED_COLUMNS = ("robustness_certified_b1", "robustness_certified_b2", "gap_certified")


def run_chunk(keys: jax.Array, d, size: int, config: Config, lanes: int | None = None) -> dict[str, jax.Array]:
    # Compiled per d (size == d), as linear: the training set and the step count depend on 2^d.
    metrics, a, z_plus, z_minus, (problem_plus, problem_minus) = map_trials(
        lambda key: trained_metrics(key, size, config), keys
    )
    exact = jnp.ones(keys.shape[0], bool)
    for name, z, problem in (("b1", z_plus, problem_plus), ("b2", z_minus, problem_minus)):
        optimum = thm6.solve_optimum(a, z, problem, size, size, config, lanes)
        metrics[f"opt_robustness_{name}"] = optimum["opt_robustness"]
        exact = exact & optimum["opt_exact"]
    metrics["opt_exact"] = exact
    metrics["gap"] = 0.5 * sum(metrics[f"delta_{b}"] / metrics[f"opt_robustness_{b}"] for b in INPUTS)
    certified = config.certify != "off"
    if certified:
        metrics["gap_certified"] = 0.5 * sum(
            metrics[f"robustness_certified_{b}"] / metrics[f"opt_robustness_{b}"] for b in INPUTS
        )
    # Without --certify its columns are left out, not NaN: a NaN would mark the trial non-finite.
    return {name: metrics[name] for name in COLUMNS if certified or name not in CERTIFIED_COLUMNS}


def theory(d: int, config: Config) -> dict[str, float]:
    rho_random = float(rmt.phi_mean(d))
    return {
        "rho_random_mean": rho_random,
        "rho_random_median": rmt.random_cos_median(d),
        "phi_mean_theory": rho_random,
        "gap_theory": rho_random,
    }


def bytes_per_trial(size: int, config: Config) -> int:
    block = min(relu_net.EVAL_BLOCK, 2**size) * config.width  # evaluation activations
    return linear.bytes_per_trial(size, config) + 4 * (3 * config.batch_size * config.width + 2 * block)


def accurate(rows: pd.DataFrame) -> pd.Series:
    """The paper's "accurate networks": training accuracy 1 (and no divergence)."""
    return linear.successes(rows)


def per_net(rows: pd.DataFrame) -> pd.DataFrame:
    """Per net, |cos theta_t| and delta/m averaged over the inputs whose attack flipped the label
    (NaN where neither did), and accurate (training accuracy 1, no divergence)."""
    flipped = np.stack([rows[f"flips_{b}"].to_numpy(bool) for b in INPUTS])
    abs_cos = np.stack([rows[f"cos_theta_t_{b}"].abs().to_numpy(float) for b in INPUTS])
    ratio = np.stack([(rows[f"delta_{b}"] / rows["m"]).to_numpy(float) for b in INPUTS])
    count = flipped.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_of = lambda values: np.where(flipped, values, 0).sum(axis=0) / count  # noqa: E731
        return pd.DataFrame(
            {"abs_cos_theta_t": mean_of(abs_cos), "delta_over_m": mean_of(ratio), "accurate": accurate(rows)},
            index=rows.index,
        )


def per_trial(rows: pd.DataFrame) -> pd.DataFrame:
    """The ablation measures: Theorem 7's claim is |cos theta_t| ~ delta / m (`per_net`)."""
    nets = per_net(rows)
    return pd.DataFrame(
        {
            "success": nets["accurate"],
            "compression": nets["abs_cos_theta_t"],
            "robustness": nets["delta_over_m"],
            "tracking": nets["abs_cos_theta_t"] - nets["delta_over_m"],
            "phi": rows["phi"],
            "gap": rows["gap"],
        }
    )


ABLATION = Ablation(
    per_trial=per_trial,
    labels={
        "success": "training accuracy 1",
        "compression": "|cos θ_t|",
        "robustness": "δ / m",
        "tracking": "|cos θ_t| − δ/m",
        "gap": "δ / optimal robustness",
    },
)


def certified_summary(rows: pd.DataFrame) -> dict[str, float]:
    """With --certify: the certified gap's mean, and the bracket attacked / certified per input (median, p90, max)."""
    if "gap_certified" not in rows or not np.isfinite(rows["gap_certified"].to_numpy(float)).any():
        return {}
    out = {}
    out["accurate_gap_certified_mean"], out["accurate_gap_certified_se"] = mean_se(
        rows["gap_certified"].to_numpy(float)
    )
    brackets = np.concatenate(
        [(rows[f"delta_{b}"] / rows[f"robustness_certified_{b}"]).to_numpy(float) for b in INPUTS]
    )
    for name, value in (("median", np.median), ("p90", lambda v: np.percentile(v, 90)), ("max", np.max)):
        out[f"bracket_{name}"] = float(value(brackets)) if len(brackets) else math.nan
    return out


def cell_summary(rows: pd.DataFrame, d: int, config: Config) -> dict[str, float]:
    """Table 3 per alpha and Table 4 per input, over accurate networks (and Table 4 over all trials);
    per net (both inputs pooled, `per_net`), |cos theta_t|, delta/m and the gap over accurate nets."""
    finite = rows[~rows["nonfinite"].astype(bool)]
    ok = accurate(finite)
    good = finite[ok]
    out: dict[str, float] = {
        "runs": len(rows),
        "accurate": int(ok.sum()),
        "accurate_fraction": float(ok.mean()) if len(finite) else math.nan,
    }
    for k in range(ALPHAS):
        rho = good[f"rho_alpha_{k}"].to_numpy(float)
        out[f"table3_rho_{k}_mean"], out[f"table3_rho_{k}_se"] = mean_se(rho)
        out[f"table3_rho_{k}_median"] = float(np.median(rho)) if len(rho) else math.nan
        out[f"table3_rho_{k}_median_low"], out[f"table3_rho_{k}_median_high"] = median_ci(rho)
    out["accurate_phi_mean"], out["accurate_phi_se"] = mean_se(good["phi"].to_numpy(float))
    out["accurate_gap_mean"], out["accurate_gap_se"] = mean_se(good["gap"].to_numpy(float))
    out.update(certified_summary(good))
    nets = per_net(good)
    for name in ("abs_cos_theta_t", "delta_over_m"):
        values = nets[name].to_numpy(float)
        out[f"accurate_{name}_mean"], out[f"accurate_{name}_se"] = mean_se(values[np.isfinite(values)])
    for group_name, group in (("table4", good), ("table4_all", finite)):
        for b in INPUTS:
            hit = group[group[f"flips_{b}"].astype(bool)]
            prefix = f"{group_name}_{b}"
            abs_cos = hit[f"cos_theta_t_{b}"].abs().to_numpy(float)
            ratio = (hit[f"delta_{b}"] / hit["m"]).to_numpy(float)
            out[f"{prefix}_n"] = len(hit)
            out[f"{prefix}_flips"] = float(group[f"flips_{b}"].astype(bool).mean()) if len(group) else math.nan
            for name, values in (
                ("cos_theta_t", hit[f"cos_theta_t_{b}"].to_numpy(float)),
                ("abs_cos_theta_t", abs_cos),
                ("delta", hit[f"delta_{b}"].to_numpy(float)),
                ("m", hit["m"].to_numpy(float)),
                ("delta_over_m", ratio),
                ("delta_over_opt", (hit[f"delta_{b}"] / hit[f"opt_robustness_{b}"]).to_numpy(float)),
                ("opt_over_m", (hit[f"opt_robustness_{b}"] / hit["m"]).to_numpy(float)),
            ):
                out[f"{prefix}_{name}_mean"], out[f"{prefix}_{name}_se"] = mean_se(values)
            # The claim |cos theta_t| ~ delta / m: the mean difference and the mean ratio, each with its interval.
            for name, values in (("diff", abs_cos - ratio), ("ratio", ratio / abs_cos)):
                mean, se, low, high, _ = interval(values)
                out.update({f"{prefix}_{name}_mean": mean, f"{prefix}_{name}_se": se})
                out.update({f"{prefix}_{name}_low": low, f"{prefix}_{name}_high": high})
            out[f"{prefix}_ratio_median"] = float(np.median(ratio / abs_cos)) if len(hit) else math.nan
    paper = PAPER_TABLE3.get(d)
    if paper:
        for k in range(ALPHAS):
            out[f"paper_table3_rho_{k}_mean"] = paper["mean"][k]
            out[f"paper_table3_rho_{k}_median"] = paper["median"][k]
    return out


PAIR_TEXT = {"train": "are training points", "fresh": "are held out of training"}
# Table 4's printed columns (summary prefixes), in order; "diff" is |cos theta_t| - delta/m.
TABLE4_COLUMNS = ("cos_theta_t", "delta", "m", "delta_over_m", "diff", "delta_over_opt")


def report(summary: pd.DataFrame, rows: pd.DataFrame, config: Config) -> str:
    cells = summary[summary["experiment"] == "relu"].sort_values("d")
    lines = [
        f"relu (section 6, Theorem 7): d -> {config.width} x{config.hidden_layers} -> 2 ReLU nets, "
        f"{config.optimizer} lr {config.lr:g}, {linear.epochs_text(config)} of batches of {config.batch_size}, "
        f"init {config.init}, bias {'on' if config.bias else 'off'}, columns 1..d-1 of A "
        f"x{config.scale_for('relu'):g}; b1, b2 {PAIR_TEXT[config.pair]}; accurate = training accuracy 1"
        f"{linear.attack_text(config)}"
    ]
    for _, c in cells.iterrows():
        d = int(c["d"])
        paper = PAPER_TABLE3.get(d)
        lines += [
            "",
            f"Table 3, d = {d}: rho over {int(c['accurate'])} accurate of {int(c['runs'])} networks "
            f"({c['accurate_fraction']:.2f}); median with its 95% order-statistic interval",
            f"{'alpha':>6}  {'mean ± se':>17}  {'median [95% CI]':>26}"
            + (f"  {'paper mean':>10}  {'paper median':>12}" if paper else ""),
        ]
        for k in range(ALPHAS):
            median = (
                f"{c[f'table3_rho_{k}_median']:.4f} "
                f"[{c[f'table3_rho_{k}_median_low']:.4f}, {c[f'table3_rho_{k}_median_high']:.4f}]"
            )
            mean = format_estimate(c[f"table3_rho_{k}_mean"], c[f"table3_rho_{k}_se"])
            line = f"{k / (ALPHAS - 1):>6.3f}  {mean:>17}  {median:>26}"
            if paper:
                line += f"  {paper['mean'][k]:>10.4f}  {paper['median'][k]:>12.4f}"
            lines.append(line)
        lines.append(
            f"uniformly random gradient direction: mean {c['rho_random_mean']:.4f}, median "
            f"{c['rho_random_median']:.4f}; phi = R_dd/||a_d|| of the same A (accurate nets): "
            f"{format_estimate(c['accurate_phi_mean'], c['accurate_phi_se'])}"
        )
        lines += [
            f"Table 4, d = {d}: means ± se over the accurate networks (rows 'all': every trial) whose attack "
            "flipped the label; delta/opt: delta over the optimal classifier's exact robustness at b",
            f"{'input':>6} {'flips':>6}  {'cos theta_t':>17}  {'delta':>17}  {'m':>17}  {'delta/m':>17}  "
            f"{'|cos|-delta/m [95% CI]':>34}  {'delta/opt':>17}",
        ]
        for group_name, label in (("table4", ""), ("table4_all", " all")):
            for b in INPUTS:
                p = f"{group_name}_{b}"
                columns = [format_estimate(c[f"{p}_{name}_mean"], c[f"{p}_{name}_se"]) for name in TABLE4_COLUMNS]
                diff = f"{columns.pop(4)} [{c[f'{p}_diff_low']:+.4f}, {c[f'{p}_diff_high']:+.4f}]"
                lines.append(
                    f"{b + label:>6} {c[f'{p}_flips']:>6.3f}  " + "  ".join(f"{v:>17}" for v in columns[:4])
                    + f"  {diff:>34}  {columns[4]:>17}"
                )  # fmt: skip
        for b in INPUTS:
            p = f"table4_{b}"
            lines.append(
                f"  {b}: (delta/m) / |cos theta_t| mean {format_estimate(c[f'{p}_ratio_mean'], c[f'{p}_ratio_se'])} "
                f"[{c[f'{p}_ratio_low']:.4f}, {c[f'{p}_ratio_high']:.4f}], median {c[f'{p}_ratio_median']:.4f}; "
                f"optimal robustness / m {format_estimate(c[f'{p}_opt_over_m_mean'], c[f'{p}_opt_over_m_se'])}"
            )
        if np.isfinite(c.get("accurate_gap_certified_mean", math.nan)):
            lines.append(
                f"  certified ({config.certify}): the gap delta/opt, accurate nets, lies in "
                f"[{format_estimate(c['accurate_gap_certified_mean'], c['accurate_gap_certified_se'])}, "
                f"{format_estimate(c['accurate_gap_mean'], c['accurate_gap_se'])}]; bracket attacked / certified "
                f"median {c['bracket_median']:.4f}, p90 {c['bracket_p90']:.4f}, max {c['bracket_max']:.4f}"
            )
    for d, paper in PAPER_TABLE4.items():
        lines.append(f"the paper's Table 4 (d = {d}, one network, averages over 10 inputs b1 and 10 inputs b2):")
        for b in INPUTS:
            v = paper[b]
            values = "  ".join(f"{v[name]:>17.4f}" for name in ("cos_theta_t", "delta", "m", "ratio"))
            lines.append(f"{b:>6} {'':>6}  {values}  {abs(v['cos_theta_t']) - v['ratio']:>+34.4f}")
    return "\n".join(lines)


def figures(figure_path, summary: pd.DataFrame, rows: pd.DataFrame, config: Config) -> None:
    cells = summary[summary["experiment"] == "relu"].sort_values("d")
    if len(cells):
        plots.table3_rho(cells, ALPHAS, PAPER_TABLE3, figure_path("table3_rho.png"))
        ok = rows[~rows["nonfinite"].astype(bool)]
        plots.table4_scatter(ok[accurate(ok)], INPUTS, PAPER_TABLE4, figure_path("table4_scatter.png"))


EXPERIMENT = Experiment(
    name="relu",
    paper="section 6 / Theorem 7, Tables 3-4",
    columns=COLUMNS,
    run_chunk=run_chunk,
    size=lambda d, config: d,
    theory=theory,
    theory_slope=lambda config: -0.5,
    gap_theory_kind="E[rho] for a uniformly random gradient direction (= E[phi])",
    bytes_per_trial=bytes_per_trial,
    host_columns=host_columns,
    cell_summary=cell_summary,
    report=report,
    figures=figures,
    ablation=ABLATION,
)
