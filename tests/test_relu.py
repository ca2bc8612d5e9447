"""Section 6's ReLU networks (Theorem 7, Tables 3-4): the network, every metric against numpy, chunking."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import tolerance
from helpers import numpy_signs, run_cell
from scipy import stats

from jaxfrag import attacks, data, parallel, rmt
from jaxfrag.config import ATTACKS, PAIRS, Config
from jaxfrag.experiments import linear, relu
from jaxfrag.models import linear as linear_net
from jaxfrag.models import relu as relu_net
from jaxfrag.stats import median_ci, nonfinite_rows

DTYPES = [jnp.float32, jnp.float64]
SMALL = Config(trials=8, seed=3, width=48, epochs=3)
# How far minimal_l2's norm for one input moves between two compiled programs (alone, vmapped, in
# blocks inside a larger program): XLA rounds the logits' last bits differently, and the lanes and
# the walk can then settle in another, equally verified, local minimum. `python
# benchmarks/attack_layouts.py` measured over 1200 inputs of nets shaped as these (relative
# differences of the norm between layouts; benchmarks/results/attack_layouts-*.json): median 1e-7,
# 99th percentile 1.0e-4 to 1.7e-4, maximum 1.3e-2 (one input of 400 at d = 13); two machines (with
# and without AVX-512) have given 1.7e-3. So nearly every input agrees to LAYOUT_RTOL, a few may not
# (at most LAYOUT_TAIL of them: with a 2% share above it, 3 or more of 16 happen with probability
# 6e-4), and none by more than LAYOUT_MAX.
LAYOUT_RTOL = 2e-4
LAYOUT_TAIL = 1 / 8
LAYOUT_MAX = 0.03


class NumpyRelu:
    """The ReLU network and its gradient of f_0 - f_1 in float64 numpy, from the weights."""

    def __init__(self, weights, biases):
        self.layers = [np.asarray(w, float) for w in weights]
        self.offsets = [np.asarray(b, float) for b in biases] or [np.zeros(len(w)) for w in self.layers]

    def __call__(self, x):
        for k, (h, c) in enumerate(zip(self.layers, self.offsets, strict=True)):
            x = h @ x + c
            if k < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return x

    def grad_g(self, x, flip=()):
        """grad (f_0 - f_1) by the chain rule: layer by layer, masks where the pre-activation is positive.

        `flip` lists (layer, unit) whose mask is inverted: the gradient of a neighbouring linear piece.
        """
        masks = []
        for k, (h, c) in enumerate(zip(self.layers[:-1], self.offsets[:-1], strict=True)):
            pre = h @ x + c
            mask = pre > 0
            for layer, unit in flip:
                if layer == k:
                    mask[unit] = ~mask[unit]
            masks.append(mask)
            x = np.maximum(pre, 0)
        back = self.layers[-1][0] - self.layers[-1][1]
        for h, mask in zip(self.layers[-2::-1], masks[::-1], strict=True):
            back = h.T @ (back * mask)
        return back

    def grad_logit(self, x, k):
        """grad f_k by the chain rule."""
        masks = []
        for h, c in zip(self.layers[:-1], self.offsets[:-1], strict=True):
            pre = h @ x + c
            masks.append(pre > 0)
            x = np.maximum(pre, 0)
        back = self.layers[-1][k]
        for h, mask in zip(self.layers[-2::-1], masks[::-1], strict=True):
            back = h.T @ (back * mask)
        return back

    def kinks(self, x, rel=1e-3):
        """(layer, unit) whose pre-activation at x is within rel (of its scale) of zero: there the gradient jumps.

        1e-3: two float32 runs of the refined attack (vmapped in the sweep, alone here) end 1e-4 apart.
        """
        near = []
        for k, (h, c) in enumerate(zip(self.layers[:-1], self.offsets[:-1], strict=True)):
            pre = h @ x + c
            scale = np.abs(h) @ np.abs(x) + np.abs(c)
            near += [(k, int(u)) for u in np.flatnonzero(np.abs(pre) <= rel * scale)]
            x = np.maximum(pre, 0)
        return near


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias,hidden_layers", [(False, 1), (True, 2)])
def test_network_loss_and_accuracy_match_numpy(bias, hidden_layers, dtype):
    d = 5
    config = Config(width=7, bias=bias, hidden_layers=hidden_layers)
    with jax.enable_x64(dtype == jnp.float64):
        a = jax.random.normal(jax.random.key(0), (d, d), dtype)
        net = linear_net.init(jax.random.key(1), d, config, dtype)
        reference = NumpyRelu(net.weights, net.biases)
        signs = numpy_signs(d)
        x = signs @ np.asarray(a, float).T
        labels = (signs[:, -1] > 0).astype(int)
        logits = np.stack([reference(p) for p in x])
        np.testing.assert_allclose(relu_net.batch_logits(net, jnp.asarray(x, dtype)), logits, rtol=tolerance(dtype))
        np.testing.assert_allclose(relu_net.apply(net, jnp.asarray(x[3], dtype)), logits[3], rtol=tolerance(dtype))
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        accuracy, loss = relu_net.evaluate(net, a, data.index_words(jnp.arange(2**d, dtype=jnp.int32)))
        assert accuracy == np.mean(logits.argmax(1) == labels)
        np.testing.assert_allclose(loss, -np.mean(log_p[np.arange(2**d), labels]), rtol=tolerance(dtype))
        np.testing.assert_allclose(
            jax.grad(lambda p: relu_net.apply(net, p)[0] - relu_net.apply(net, p)[1])(jnp.asarray(x[5], dtype)),
            reference.grad_g(x[5]),
            rtol=tolerance(dtype),
            atol=tolerance(dtype),
        )


def numpy_relu_metrics(a, indices, net, pair: int) -> dict:
    """The relu experiment's per-trial metrics (all but the attack's) in float64 numpy."""
    a = np.asarray(a, float)
    d = a.shape[0]
    network = NumpyRelu(net.weights, net.biases)
    signs = numpy_signs(d)
    indices = data.words_to_int(indices)
    x_all = signs[indices] @ a.T
    labels = (signs[indices, -1] > 0).astype(int)
    logits = np.stack([network(x) for x in x_all])
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    z_minus, z_plus = signs[pair], signs[pair + 2 ** (d - 1)]
    assert z_plus[-1] == 1 and z_minus[-1] == -1 and np.array_equal(z_plus[:-1], z_minus[:-1])
    b1, b2 = a @ z_plus, a @ z_minus
    a_d = a[:, -1]

    def abs_cos(u, v):
        return abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))

    def opt(z):  # brute force over every opposite-class point
        opposite = signs[signs[:, -1] != z[-1]] @ a.T
        return 0.5 * np.min(np.linalg.norm(opposite - a @ z, axis=1))

    expected = {
        "train_acc": np.mean(logits.argmax(1) == labels),
        "train_loss": -np.mean(log_p[np.arange(len(labels)), labels]),
        "m": np.linalg.norm(a_d),
        "phi": abs(np.linalg.qr(a, mode="r")[-1, -1]) / np.linalg.norm(a_d),
        "opt_robustness_b1": opt(z_plus),
        "opt_robustness_b2": opt(z_minus),
        "correct_b1": network(b1).argmax() == 1,
        "correct_b2": network(b2).argmax() == 0,
    }
    for k in range(relu.ALPHAS):
        x = (k / 9) * b1 + (1 - k / 9) * b2
        # the paper's x1 - x2 = (b1 - x) - (b2 - x), written out
        expected[f"rho_alpha_{k}"] = abs_cos(network.grad_g(x), (b1 - x) - (b2 - x))
    return expected


@pytest.mark.parametrize("d", [6, 13])  # brute-force optimum; sphere decoder beyond d = 12
def test_every_metric_matches_numpy(d):
    config = SMALL._replace(epochs=2 if d > 10 else 3, width=32 if d > 10 else 48)
    rows = run_cell("relu", d, config).columns
    key = parallel.cell_key(config.seed, "relu", d)
    train = jax.jit(lambda k: linear.train_trial(k, d, config, "relu", relu_net))
    attack_of = jax.jit(lambda net, b, label: attacks.minimal_l2(functools.partial(relu_net.apply, net), b, label))
    moved = []
    for trial in range(config.trials):
        key_train, _ = jax.random.split(parallel.trial_keys(key, jnp.asarray([trial]))[0])
        a, indices, net, *_ = train(key_train)
        pair = int(rows["pair_index"][trial])
        assert 0 <= pair < 2 ** (d - 1)
        for name, value in numpy_relu_metrics(a, indices, net, pair).items():
            got = rows[name][trial]
            if name.startswith("correct"):
                assert got == value, (name, trial)
            else:  # float32 trained weights, float32 against float64 numpy
                np.testing.assert_allclose(got, value, rtol=1e-3, atol=1e-5, err_msg=f"{name}, trial {trial}")
        # The attack, redone: its perturbation flips the numpy network, and cos theta_t at b + delta.
        network = NumpyRelu(net.weights, net.biases)
        signs = numpy_signs(d)
        for name, index in (("b1", pair + 2 ** (d - 1)), ("b2", pair)):
            b = np.asarray(a, float) @ signs[index]
            label = int(np.argmax(network(b)))
            attack = attack_of(net, jnp.asarray(b, jnp.float32), label)
            delta = np.asarray(attack.delta, float)
            assert rows[f"flips_{name}"][trial] and np.argmax(network(b + delta)) != label
            # It stopped at the boundary: past it by the lead the attack searches for, 32 roundings
            # of the logits at b (eps (max |f| + ||b|| max_k ||grad f_k||), attacks.Goal), and not
            # by more than the bracket's and float32's slack on top.
            rounding = np.finfo(np.float32).eps * (
                np.abs(network(b)).max()
                + np.linalg.norm(b) * max(np.linalg.norm(network.grad_logit(b, k)) for k in (0, 1))
            )
            lead = network(b + delta)[1 - label] - network(b + delta)[label]
            assert 0 < lead <= 40 * rounding + 1e-5 * np.linalg.norm(network.grad_g(b + delta)) * np.linalg.norm(delta)
            # The row comes from the sweep's program, the redone attack from one of its own: the
            # same attack compiled two ways, whose norms agree to the layout tolerance (below).
            moved.append(abs(rows[f"delta_{name}"][trial] / np.linalg.norm(delta) - 1))
            # The refined attack often ends on a ReLU kink, where the gradient jumps and rounding picks
            # the side: the row's cos must be that of one of the linear pieces that meet there.
            a_d = np.asarray(a, float)[:, -1]
            kinks = network.kinks(b + delta)
            assert len(kinks) <= 4, kinks
            pieces = [
                network.grad_g(b + delta, [kink for bit, kink in enumerate(kinks) if subset >> bit & 1])
                for subset in range(2 ** len(kinks))
            ]
            cosines = np.array([grad @ a_d / (np.linalg.norm(grad) * np.linalg.norm(a_d)) for grad in pieces])
            got = rows[f"cos_theta_t_{name}"][trial]
            assert np.min(np.abs(cosines - got)) <= 1e-3 * abs(got) + 1e-5, (name, trial, got, cosines)
        assert rows["opt_exact"][trial]
        gap = 0.5 * sum(rows[f"delta_{b}"][trial] / rows[f"opt_robustness_{b}"][trial] for b in ("b1", "b2"))
        np.testing.assert_allclose(rows["gap"][trial], gap, rtol=1e-6)
    moved = np.asarray(moved)
    assert moved.max() <= LAYOUT_MAX, moved
    assert np.sum(moved > LAYOUT_RTOL) <= LAYOUT_TAIL * len(moved), moved


def test_rows_do_not_depend_on_chunk_size_or_device_count(devices):
    config = SMALL._replace(trials=16, width=32, epochs=2)
    reference = run_cell("relu", 7, config, num_devices=1, chunk=16).columns
    for num_devices, chunk in [(2, 8)]:
        other = run_cell("relu", 7, config, num_devices=num_devices, chunk=chunk).columns
        for column, values in reference.items():
            np.testing.assert_array_equal(other[column], values, err_msg=f"{column}: {num_devices} devices, {chunk}")


def test_b1_and_b2_are_training_points_or_held_out_as_asked():
    # d = 7 trained on 48 of the 128 points: a pair drawn apart from the training set is in it with
    # probability about 0.14, so only the pair option puts it there (or keeps it out).
    d = 7
    fitting = dict(lr=1e-2, batch_size=8, scale_columns=1.0, protocol="until-fit", max_epochs=60)
    config = SMALL._replace(trials=16, width=32, epochs=2, max_points=48, **fitting)
    rows = {pair: run_cell("relu", d, config._replace(pair=pair), num_devices=1).columns for pair in PAIRS}
    key = parallel.cell_key(config.seed, "relu", d)
    for pair, columns in rows.items():
        np.testing.assert_array_equal(columns["pair_index"], rows["train"]["pair_index"])  # the same pair
        assert np.all(columns["n_points"] == 48) and columns["points_sampled"].all()
        assert np.all(columns["pair_trained"] == (pair == "train"))
        # The trial's training set as train_trial builds it (compiled once: only its indices are kept).
        asked = config._replace(pair=pair)
        training_set = jax.jit(lambda k, both, c=asked: linear.train_trial(k, d, c, "relu", relu_net, both).indices)
        for trial in range(config.trials):
            # The training set, rebuilt from the trial's key, checked in numpy.
            key_train, _ = jax.random.split(parallel.trial_keys(key, jnp.asarray([trial]))[0])
            z_minus = int(columns["pair_index"][trial])
            both = relu.pair_indices(data.index_words(jnp.asarray([z_minus], jnp.int32))[0], d)
            points = data.words_to_int(np.asarray(training_set(key_train, both)))
            assert np.isin([z_minus + 2 ** (d - 1), z_minus], points).tolist() == [pair == "train"] * 2
    # A net that fits its training set classifies b1 and b2 correctly when they are in it.
    train = rows["train"]
    fit = train["train_acc"] == 1
    assert fit.sum() >= 8, train["train_acc"]
    assert train["correct_b1"][fit].all() and train["correct_b2"][fit].all()


def test_the_quick_attack_changes_only_the_attack_columns_and_is_never_shorter():
    # The chunking test's reference cell, whose program the session's compilation cache holds.
    config = SMALL._replace(trials=16, width=32, epochs=2)
    full = run_cell("relu", 7, config, num_devices=1, chunk=16).columns
    quick = run_cell("relu", 7, config._replace(attack="quick"), num_devices=1, chunk=16).columns
    assert set(attacks.PRESETS) == set(ATTACKS)  # every --attack choice names a preset
    attacked = {f"{column}_{b}" for column in ("delta", "flips", "cos_theta_t") for b in relu.INPUTS} | {"gap"}
    for column, values in full.items():
        if column not in attacked:  # the nets, the pairs and the optimum do not depend on the attack
            np.testing.assert_array_equal(quick[column], values, err_msg=column)
    for b in relu.INPUTS:
        assert quick[f"flips_{b}"].all() and full[f"flips_{b}"].all()
        # Both are verified crossings; the full attack's lanes, projections and walk only shorten lane 0.
        ratio = quick[f"delta_{b}"] / full[f"delta_{b}"]
        assert ratio.min() >= 1 - LAYOUT_MAX, ratio
        # DeepFool's first crossing, brought back to the boundary, is not a local minimum on most nets.
        assert np.mean(ratio > 1 + LAYOUT_RTOL) >= 0.5, ratio


@pytest.mark.parametrize("method", ["alpha"])
def test_certify_adds_a_sound_lower_bound_and_changes_no_other_column(method):
    # The chunking test's reference cell, whose program the session's compilation cache holds.
    config = SMALL._replace(trials=16, width=32, epochs=2)
    plain = run_cell("relu", 7, config, num_devices=1, chunk=16).columns
    certified = run_cell("relu", 7, config._replace(certify=method), num_devices=1, chunk=16).columns
    # Off, its columns are absent (a NaN would leave the trial out of every mean as non-finite).
    assert set(certified) - set(plain) == set(relu.CERTIFIED_COLUMNS)
    assert not nonfinite_rows(plain).any() and not nonfinite_rows(certified).any()
    for column, values in plain.items():
        np.testing.assert_array_equal(certified[column], values, err_msg=column)
    for b in relu.INPUTS:
        radius, attacked = certified[f"robustness_certified_{b}"], plain[f"delta_{b}"]
        assert plain[f"flips_{b}"].all()
        # Found without the attack: the net's robustness is at least the one and at most the other.
        assert np.all(radius > 0) and np.all(radius <= attacked * (1 + 1e-5)), radius / attacked
        # Not vacuous: on these small nets (width 32) the bracket is narrow on most inputs.
        assert np.median(attacked / radius) < 1.5, attacked / radius
    assert np.all(certified["gap_certified"] <= plain["gap"] * (1 + 1e-5))


def test_the_report_header_names_an_attack_other_than_the_full_one():
    assert linear.attack_text(Config()) == ""  # the full attack, what the docs report
    for name in ("quick", "walk"):
        assert linear.attack_text(Config(attack=name)) == f"; the {name} minimal-L2 attack (a looser upper bound)"
    strong = linear.attack_text(Config(attack="strong"))
    assert "ALMA" in strong and "looser" not in strong  # strong adds lanes to the full attack


def test_random_direction_law_of_rho():
    # rho for a uniformly random gradient direction: |cos| with a fixed vector, mean Gamma(d/2) /
    # (sqrt(pi) Gamma((d+1)/2)) and median from Beta(1/2, (d-1)/2). Monte Carlo, 4 sigma.
    rng = np.random.default_rng(5)
    for d in (3, 12, 40):
        g = rng.normal(size=(200_000, d))
        cos = np.abs(g[:, 0]) / np.linalg.norm(g, axis=1)
        mean, se = cos.mean(), cos.std(ddof=1) / np.sqrt(len(cos))
        assert abs(mean - rmt.phi_mean(d)) < 4 * se, d
        below = np.mean(cos < rmt.random_cos_median(d))
        assert abs(below - 0.5) < 4 * np.sqrt(0.25 / len(cos)), d


def test_median_interval_covers_the_median_at_its_level():
    rng = np.random.default_rng(2)
    trials, n = 4000, 30
    samples = rng.exponential(size=(trials, n))
    intervals = np.array([median_ci(s) for s in samples])
    covered = np.mean((intervals[:, 0] <= np.log(2)) & (np.log(2) <= intervals[:, 1]))
    j = int(stats.binom.ppf(0.025, n, 0.5))
    exact = 1 - 2 * stats.binom.cdf(j - 1, n, 0.5)  # the order-statistic interval's exact coverage
    assert exact >= 0.95
    assert abs(covered - exact) < 4 * np.sqrt(exact * (1 - exact) / trials)
    assert np.isnan(median_ci(np.arange(5.0))).all()  # too few values for a 95% interval


def test_table_statistics_follow_their_definition():
    rng = np.random.default_rng(0)
    n = 30
    rows = pd.DataFrame(
        {
            "train_acc": np.where(np.arange(n) % 3 == 0, 0.9, 1.0),
            "diverged": np.zeros(n, bool),
            "nonfinite": np.zeros(n, bool),
            "m": rng.uniform(2, 4, n),
            "phi": rng.uniform(0, 1, n),
            **{f"rho_alpha_{k}": rng.uniform(0, 1, n) for k in range(relu.ALPHAS)},
            **{f"{c}_{b}": rng.uniform(0.1, 1, n) for c in ("delta", "opt_robustness") for b in relu.INPUTS},
            **{f"cos_theta_t_{b}": rng.uniform(-1, 1, n) for b in relu.INPUTS},
            "flips_b1": np.arange(n) % 5 != 1,
            "flips_b2": np.ones(n, bool),
            "gap": rng.uniform(0, 1, n),
        }
    )
    out = relu.cell_summary(rows, 12, Config())
    good = rows[rows["train_acc"] == 1]
    assert out["accurate"] == len(good) == 20
    rho = good["rho_alpha_4"]
    assert out["table3_rho_4_mean"] == pytest.approx(rho.mean())
    assert out["table3_rho_4_se"] == pytest.approx(rho.std(ddof=1) / np.sqrt(20))
    assert out["table3_rho_4_median"] == pytest.approx(rho.median())
    assert out["paper_table3_rho_4_mean"] == 0.3272
    hit = good[good["flips_b1"]]
    diff = hit["cos_theta_t_b1"].abs() - hit["delta_b1"] / hit["m"]
    assert out["table4_b1_n"] == len(hit) < 20
    assert out["table4_b1_diff_mean"] == pytest.approx(diff.mean())
    t95 = stats.t.ppf(0.975, len(hit) - 1)  # the t-interval every report uses
    assert out["table4_b1_diff_low"] == pytest.approx(diff.mean() - t95 * diff.std(ddof=1) / np.sqrt(len(hit)))
    assert out["table4_all_b2_n"] == n
    assert out["table4_b2_delta_over_opt_mean"] == pytest.approx((good["delta_b2"] / good["opt_robustness_b2"]).mean())
    assert out["accurate_gap_mean"] == pytest.approx(good["gap"].mean())
    # Per net, both inputs pooled over those whose attack flipped (b2 always does here).
    flipped_b1 = good["flips_b1"].to_numpy()
    pooled = np.where(flipped_b1, (good["delta_b1"] + good["delta_b2"]) / 2, good["delta_b2"]) / good["m"]
    assert out["accurate_delta_over_m_mean"] == pytest.approx(pooled.mean())
