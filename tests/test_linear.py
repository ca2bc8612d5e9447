"""Section 6's trained linear networks: the network, its training, every metric against numpy, chunking."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import tolerance
from helpers import numpy_signs, run_cell, sweep
from jax import enable_x64
from scipy import stats

import jaxfrag
from jaxfrag import data, parallel
from jaxfrag.config import Config
from jaxfrag.experiments import linear
from jaxfrag.models import linear as linear_net

DTYPES = [jnp.float32, jnp.float64]
# Small but the real protocol: 64-wide nets, a few epochs.
SMALL = Config(trials=16, seed=7, width=64, epochs=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [3, 40])  # unrolled input-layer cotangent, and the dot beyond 32 columns
def test_narrow_product_gradient_matches_autodiff(d, dtype):
    with enable_x64(dtype == jnp.float64):
        rng = np.random.default_rng(d)
        m, h = (jnp.asarray(rng.standard_normal(s), dtype) for s in [(2, 50), (50, d)])
        probe = jnp.asarray(rng.standard_normal((2, d)), dtype)

        def loss(product):
            return lambda m, h: jnp.sum(jnp.sin(product(m, h) * probe))

        ours = jax.grad(loss(linear_net._narrow_product), argnums=(0, 1))(m, h)
        plain = jax.grad(loss(jnp.matmul), argnums=(0, 1))(m, h)
        for a, b in zip(ours, plain, strict=True):
            np.testing.assert_allclose(a, b, rtol=tolerance(dtype), atol=tolerance(dtype))


@pytest.mark.parametrize("network", ["linear", "relu"])
@pytest.mark.parametrize("bias,hidden_layers", [(False, 1), (True, 2), (False, 0)])
def test_training_in_the_wide_layout_matches_a_plain_loop(network, bias, hidden_layers):
    """`train` carries the first layer transposed and its own product; a plain optax loop in the stored layout."""
    import optax

    from jaxfrag.models import relu as relu_net

    d, config = 6, Config(width=20, epochs=2, batch_size=16, bias=bias, hidden_layers=hidden_layers)
    loss = relu_net.cross_entropy if network == "relu" else None
    with enable_x64(True):
        key_a, key_init, key_train = jax.random.split(jax.random.key(3), 3)
        a = data.mixing_matrix(key_a, d, 5.0)
        indices = data.index_words(jnp.arange(2**d))
        net = linear_net.init(key_init, d, config, jnp.float64)
        trained, diverged, _ = linear_net.train(key_train, net, a, indices, config, loss)

        def plain_loss(net, x, labels, weights):  # the network as written, autodiff through matmuls
            logits = jax.vmap(lambda x: (relu_net.apply if network == "relu" else linear_net.apply)(net, x))(x)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            return jnp.sum(losses * weights) / jnp.sum(weights)

        opt, state, reference = optax.adam(config.lr), None, net
        state = opt.init(reference)
        for epoch in range(config.epochs):
            positions, valid = linear_net.batch_plan(jax.random.fold_in(key_train, epoch), 2**d, 16)
            for p, v in zip(positions, valid, strict=True):
                x, labels = data.hypercube_batch(a, indices[p])
                grads = jax.grad(plain_loss)(reference, x, labels, v.astype(x.dtype))
                updates, state = opt.update(grads, state, reference)
                reference = optax.apply_updates(reference, updates)
        assert not diverged
        for ours, theirs in zip(jax.tree.leaves(trained), jax.tree.leaves(reference), strict=True):
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bias,hidden_layers", [(False, 1), (True, 1), (True, 2), (False, 0)])
def test_affine_map_is_the_network(bias, hidden_layers):
    d = 5
    config = Config(width=7, bias=bias, hidden_layers=hidden_layers)
    with enable_x64(True):
        net = linear_net.init(jax.random.key(1), d, config, jnp.float64)
        w, b = linear_net.affine_map(net)
        x = jnp.asarray(np.random.default_rng(0).standard_normal(d))
        np.testing.assert_allclose(linear_net.apply(net, x), w @ x + b, rtol=1e-12)
        assert len(net.weights) == hidden_layers + 1 and len(net.biases) == (hidden_layers + 1 if bias else 0)


def test_torch_init_is_uniform_with_bound_one_over_sqrt_fan_in():
    config = Config(width=3000, bias=True)
    net = linear_net.init(jax.random.key(2), 12, config)
    for values, fan_in in [(net.weights[0], 12), (net.weights[1], 3000), (net.biases[0], 12), (net.biases[1], 3000)]:
        bound = 1 / np.sqrt(fan_in)
        scaled = np.asarray(values, float).ravel() / bound
        assert np.all(np.abs(scaled) <= 1)
        if scaled.size > 1000:  # U(-1, 1): KS test against the exact law
            assert stats.kstest(scaled, stats.uniform(-1, 2).cdf).pvalue > 1e-3


def numpy_adam_training(a, indices, weights, config, key):
    """The training loop written out in numpy, float64: layered forward (x H1^T) H2^T, hand-derived
    cross-entropy gradients, torch.optim.Adam's update; the engine's shuffled order (batch_plan's
    positions), cut into batches here: full ones, then the rest, as PyTorch's DataLoader does."""
    h1, h2 = (np.asarray(w, float) for w in weights)
    signs = numpy_signs(a.shape[0])[data.words_to_int(indices)]
    x_all, y_all = signs @ np.asarray(a, float).T, (signs[:, -1] > 0).astype(int)
    params, m, v = [h1, h2], [np.zeros_like(h1), np.zeros_like(h2)], [np.zeros_like(h1), np.zeros_like(h2)]
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    batch = min(config.batch_size, len(indices))
    for epoch in range(config.epochs):
        positions, _ = linear_net.batch_plan(jax.random.fold_in(key, epoch), len(indices), batch)
        for step, pos in enumerate(np.asarray(positions)):
            count = min(batch, len(indices) - step * batch)
            x, y = x_all[pos[:count]], y_all[pos[:count]]
            hidden = x @ params[0].T
            logits = hidden @ params[1].T
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g_logits = (p - np.eye(2)[y]) / len(y)
            grads = [(g_logits @ params[1]).T @ x, g_logits.T @ hidden]
            t += 1
            for k in range(2):
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
                params[k] = params[k] - config.lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    return params


@pytest.mark.parametrize("d,max_points", [(5, 65536), (7, 50)])  # all points (2 batches / epoch); a sample
def test_training_matches_a_numpy_adam_loop(d, max_points):
    config = Config(width=9, epochs=3, batch_size=16, lr=1e-2, max_points=max_points)
    with enable_x64(True):
        key_a, key_points, key_init, key_train = jax.random.split(jax.random.key(d), 4)
        a = data.mixing_matrix(key_a, d, 5.0)
        indices = data.hypercube_indices(key_points, d, max_points)
        net = linear_net.init(key_init, d, config, jnp.float64)
        trained, diverged, _ = jax.jit(lambda n: linear_net.train(key_train, n, a, indices, config))(net)
        expected = numpy_adam_training(a, indices, net.weights, config, key_train)
    assert not diverged
    for ours, theirs in zip(trained.weights, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d", [4, 6])
def test_training_reaches_accuracy_one_on_an_easy_instance(d):
    # A = I: the classes are z_d = +-1, separated by a margin of 2 at every point.
    config = Config(width=8, epochs=20, batch_size=16, lr=1e-2)
    a = jnp.eye(d)
    indices = data.hypercube_indices(jax.random.key(0), d, config.max_points)
    net = linear_net.init(jax.random.key(1), d, config)
    trained, diverged, _ = jax.jit(lambda n: linear_net.train(jax.random.key(2), n, a, indices, config))(net)
    w, b = linear_net.affine_map(trained)
    x, labels = data.hypercube_batch(a, indices)
    assert not diverged
    assert np.mean(np.argmax(x @ w.T + b, axis=1) == labels) == 1.0


def numpy_accuracy(a, indices, net, relu: bool) -> float:
    """Training accuracy of the net on the points A z(indices), in float64 numpy (label: z_d > 0)."""
    z = numpy_signs(a.shape[0])[data.words_to_int(np.asarray(indices))]
    x = z @ np.asarray(a, float).T
    weights = [np.asarray(w, float) for w in net.weights]
    for k, w in enumerate(weights):
        x = x @ w.T
        if relu and k < len(weights) - 1:
            x = np.maximum(x, 0)
    return float(np.mean(np.argmax(x, axis=1) == (z[:, -1] > 0)))


@pytest.mark.parametrize("network", ["linear", "relu"])
def test_until_fit_stops_at_the_first_epoch_that_fits_or_at_the_cap(network):
    """until-fit: the fixed protocol's `epochs` epochs, then on to the first epoch after which every
    training point is right (numpy's accuracy), or the cap; the net is the one a fixed run of that many
    epochs trains, and a net's result does not depend on the nets vmapped beside it."""
    from jaxfrag.models import relu as relu_net

    module = relu_net if network == "relu" else linear_net
    d, trials = 6, 6
    # relu nets here fit after 13 to 22 epochs and linear ones after 6 to 10: some stop at the cap
    config = Config(width=16, epochs=2, max_epochs=16, batch_size=16, lr=1e-2, protocol="until-fit")
    a = data.mixing_matrix(jax.random.key(0), d, 5.0)
    indices = data.hypercube_indices(jax.random.key(1), d, config.max_points)

    def trained(key, config):
        net = linear_net.init(jax.random.fold_in(key, 1), d, config)
        fit = lambda n: module.fits(n, a, indices)  # noqa: E731
        return linear_net.train(key, net, a, indices, config, module.cross_entropy, fit=fit)

    keys = jax.random.split(jax.random.key(2), 2 * trials)
    batched = jax.jit(jax.vmap(lambda k: trained(k, config)))
    together = batched(keys[:trials])
    # The first net beside other companions, which train for other numbers of epochs: the same bits.
    beside_others = batched(jnp.concatenate([keys[:1], keys[trials + 1 :]]))
    for ours, theirs in zip(jax.tree.leaves(together), jax.tree.leaves(beside_others), strict=True):
        assert np.array_equal(ours[0], theirs[0])

    epochs = np.asarray(together.epochs)
    assert np.all((epochs >= config.epochs) & (epochs <= config.max_epochs))
    stopped_early = (epochs > config.epochs) & (epochs < config.max_epochs)
    assert stopped_early.sum() >= 2, epochs  # the case the protocol exists for, so the test has teeth

    @functools.cache
    def fixed(epochs: int):  # the fixed protocol, `epochs` epochs
        return jax.jit(lambda key: trained(key, config._replace(protocol="epochs", epochs=epochs)))

    replayed = set(np.flatnonzero(stopped_early)[:1]) | set(np.flatnonzero(epochs == config.max_epochs)[:1])
    for t in range(trials):
        net = jax.tree.map(lambda leaf, t=t: leaf[t], together.net)
        accuracy = numpy_accuracy(a, indices, net, network == "relu")
        assert (accuracy == 1) or epochs[t] == config.max_epochs, (t, epochs[t], accuracy)
        if t not in replayed:  # each replay compiles fixed runs of its own length: one that stopped, one capped
            continue
        same = fixed(int(epochs[t]))(keys[t]).net
        for ours, theirs in zip(net.weights, same.weights, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        if epochs[t] == config.max_epochs:
            continue
        one_fewer = fixed(int(epochs[t]) - 1)(keys[t]).net
        assert numpy_accuracy(a, indices, one_fewer, network == "relu") < 1, (t, epochs[t])


def numpy_metrics(a, indices, weights, biases) -> dict:
    """Every per-trial metric of the linear experiment, from the trained weights, in float64 numpy.

    The optimum by brute force over all 2^d points while that is small; beyond, its bracket: the
    last-bit flip is an opposite point (opt <= ||a_d||), and every opposite point is at least 2 R_dd
    away (the d-th coordinate of R (z' - z) is +-2 R_dd), so opt >= R_dd: the pair (low, high).
    """
    a = np.asarray(a, float)
    d = a.shape[0]
    layers = [np.asarray(w, float) for w in weights]
    offsets = [np.asarray(b, float) for b in biases] or [np.zeros(len(w)) for w in layers]

    def network(x):
        for h, c in zip(layers, offsets, strict=True):
            x = h @ x + c
        return x

    indices = data.words_to_int(indices)
    points = 2.0 * ((indices[:, None] >> np.arange(d, dtype=np.uint64)) & np.uint64(1)) - 1  # z, row per point
    x_all = points @ a.T
    labels = (points[:, -1] > 0).astype(int)
    logits = np.stack([network(x) for x in x_all])
    predicted = logits.argmax(1)
    w = np.linalg.multi_dot(layers[::-1]) if len(layers) > 1 else layers[0]
    u = w[1] - w[0]
    c = (logits[:, 1] - logits[:, 0]) - x_all @ u  # the bias part of the margin
    distance = np.abs(x_all @ u + c) / np.linalg.norm(u)
    worst = int(np.argmin(distance))
    x_star, label = x_all[worst], predicted[worst]
    delta = -(x_star @ u + c[worst]) * u / (u @ u)

    def label_after(scale):
        return network(x_star + scale * delta).argmax()

    a_d = a[:, -1]
    last_row = np.linalg.inv(a)[-1]
    r = np.linalg.qr(a, mode="r")
    if d <= 16:
        signs = numpy_signs(d)
        opposite = signs[signs[:, -1] != points[worst, -1]] @ a.T
        opt = 0.5 * np.min(np.linalg.norm(opposite - x_star, axis=1))
    else:
        opt = (abs(r[-1, -1]), np.linalg.norm(a[:, -1]))
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    return {
        "train_acc": np.mean(predicted == labels),
        "train_loss": -np.mean(log_p[np.arange(len(labels)), labels]),
        "cos_theta1": (w[0] - w[1]) @ a_d / (np.linalg.norm(w[0] - w[1]) * np.linalg.norm(a_d)),
        "cos_theta2": w[0] @ last_row / (np.linalg.norm(w[0]) * np.linalg.norm(last_row)),
        "phi": abs(r[-1, -1]) / np.linalg.norm(a_d),
        "robustness_exact": distance[worst],
        "robustness_ratio": distance[worst] / np.linalg.norm(a_d),
        "opt_robustness": opt,
        **({"gap": distance[worst] / opt} if d <= 16 else {}),
        "attack_flips": label_after(1 + 1e-4) != label and label_after(1 - 1e-4) == label,
        "worst_point": int(indices[worst]),
        "n_points": len(np.unique(indices)),
    }


@pytest.mark.parametrize("d", [6])  # all points, brute-force optimum (d = 40, sampled points and the decoder: below)
def test_every_metric_matches_numpy(d):
    config = SMALL._replace(trials=8, epochs=3)
    rows = run_cell("linear", d, config).columns
    key = parallel.cell_key(config.seed, "linear", d)
    train = jax.jit(lambda k: linear.train_trial(k, d, config))
    for trial in range(config.trials):
        a, indices, net, diverged, _ = train(parallel.trial_keys(key, jnp.asarray([trial]))[0])
        expected = numpy_metrics(a, np.asarray(indices), net.weights, net.biases)
        assert not rows["diverged"][trial]
        for name, value in expected.items():
            got = rows[name][trial]
            if name in ("worst_point", "attack_flips", "n_points"):
                assert got == value, (name, trial)
            else:  # float32 training output against float64 numpy on the same weights
                np.testing.assert_allclose(got, value, rtol=1e-3, atol=1e-5, err_msg=f"{name}, trial {trial}")
        assert rows["n_points"][trial] == 2**d and not rows["points_sampled"][trial]
        assert rows["opt_exact"][trial]


# 100 of the 512 points at d = 9: one cell for both tests below (run_cell caches it).
SAMPLED = SMALL._replace(max_points=100)


def test_minimal_attack_flips_on_every_trained_network():
    rows = run_cell("linear", 9, SAMPLED).columns
    assert rows["attack_flips"].all()
    assert rows["robustness_attack_success"].all()


def test_gradient_attack_meets_the_exactness_bounds(tmp_path):
    # The gradient attack, blind to the closed form, against the exact answer: median ratio <= 1.01,
    # max <= 1.05. These small, briefly trained nets have worst-point margins ~1e-5 ||x||, below what
    # float32 resolves, so this runs in float64 (the full protocol's margins are resolved in float32).
    sweep(
        "--experiment",
        "linear",
        "--d",
        "9",
        "--trials",
        "16",
        "--width",
        "64",
        "--epochs",
        "3",
        "--x64",
        "--seed",
        "7",
        "--out",
        tmp_path / "run",
    )
    rows = jaxfrag.load(tmp_path / "run")
    ratio = rows["robustness_attack"] / rows["robustness_exact"]
    assert rows["robustness_attack_success"].all() and rows["attack_flips"].all()
    assert np.median(ratio) <= 1.01 and ratio.max() <= 1.05 and ratio.min() >= 1 - 1e-9
    np.testing.assert_allclose(rows["gap"], rows["robustness_exact"] / rows["opt_robustness"], rtol=1e-6)


def test_sampled_points_are_recorded():
    rows = run_cell("linear", 9, SAMPLED).columns  # repeats among the draws are common at this d
    assert rows["points_sampled"].all() and (rows["n_points"] == 100).all()


@pytest.mark.parametrize("d", [40])  # both index words in use
def test_beyond_d_24_every_metric_matches_numpy_over_the_sample(d):
    # 512 points sampled from 2^d without a permutation; the network's exact robustness is the
    # minimum over them, recomputed in numpy from the sampled indices; the optimum at the worst
    # point lies in its bracket [R_dd, ||a_d||] and the sphere decoder finished.
    config = SMALL._replace(trials=8, width=16, epochs=1, max_points=512)
    rows = run_cell("linear", d, config).columns
    key = parallel.cell_key(config.seed, "linear", d)
    train = jax.jit(lambda k: linear.train_trial(k, d, config))
    for trial in range(config.trials):
        a, indices, net, _, _ = train(parallel.trial_keys(key, jnp.asarray([trial]))[0])
        expected = numpy_metrics(a, np.asarray(indices), net.weights, net.biases)
        low, high = expected.pop("opt_robustness")
        for name, value in expected.items():
            got = rows[name][trial]
            if name in ("worst_point", "attack_flips", "n_points"):
                assert got == value, (name, trial, got, value)
            else:
                np.testing.assert_allclose(got, value, rtol=1e-3, atol=1e-5, err_msg=f"{name}, trial {trial}")
        assert rows["n_points"][trial] == 512 and rows["points_sampled"][trial] and rows["opt_exact"][trial]
        assert low * (1 - 1e-5) <= rows["opt_robustness"][trial] <= high * (1 + 1e-5)
        np.testing.assert_allclose(rows["gap"][trial], rows["robustness_exact"][trial] / rows["opt_robustness"][trial])


def test_rows_do_not_depend_on_chunk_size_or_device_count(devices):
    # The quick attack: the full one's independence of the layout is the relu test's, on the same code.
    config = SMALL._replace(trials=20, attack="quick")
    reference = run_cell("linear", 7, config, num_devices=1, chunk=20).columns
    for num_devices, chunk in [(2, 16)]:  # another device count and another chunk size (24 -> 16)
        other = run_cell("linear", 7, config, num_devices=num_devices, chunk=chunk).columns
        for column, values in reference.items():
            np.testing.assert_array_equal(other[column], values, err_msg=f"{column}: {num_devices} devices, {chunk}")


def test_table2_statistics_follow_their_definition():
    rng = np.random.default_rng(0)
    n = 40
    rows = pd.DataFrame(
        {
            "train_acc": rng.choice([1.0, 0.97], n),
            "diverged": rng.random(n) < 0.1,
            "cos_theta1": rng.uniform(-1, 1, n),
            "cos_theta2": rng.uniform(-1, 1, n),
            "phi": rng.uniform(0, 1, n),
            "robustness_ratio": rng.uniform(0, 1, n),
            "gap": rng.uniform(0, 1, n),
            "nonfinite": False,
        }
    )
    summary = linear.cell_summary(rows, 12, Config())
    for prefix, keep in [
        ("table2", (rows.train_acc == 1) & ~rows.diverged & (rows.cos_theta2.abs() > 0.9)),
        ("success", (rows.train_acc == 1) & ~rows.diverged),
        ("all", np.ones(n, bool)),
    ]:
        kept = rows[keep]
        diff = np.abs(kept.cos_theta1.abs() - kept.phi)
        assert summary[f"{prefix}_n"] == keep.sum()
        for name, values in [("abs_cos_theta1", kept.cos_theta1.abs()), ("phi", kept.phi), ("abs_diff", diff)]:
            assert summary[f"{prefix}_{name}_mean"] == pytest.approx(values.mean())
            assert summary[f"{prefix}_{name}_se"] == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)))
    success = rows[(rows.train_acc == 1) & ~rows.diverged]
    assert summary["success_gap_mean"] == pytest.approx(success.gap.mean())
    assert summary["success_fraction"] == pytest.approx(((rows.train_acc == 1) & ~rows.diverged).mean())
    assert summary["paper_table2_abs_cos_theta1"] == 0.3645 and "paper_table2_phi" not in linear.cell_summary(
        rows, 11, Config()
    )


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("init", ["glorot", "lecun"])
def test_every_optimizer_and_init_trains(optimizer, init):
    d = 5
    lr = 0.1 if optimizer == "sgd" else 1e-2
    config = Config(width=8, epochs=5, batch_size=8, lr=lr, optimizer=optimizer, init=init)
    a, indices = jnp.eye(d), data.index_words(jnp.arange(2**d))
    net = linear_net.init(jax.random.key(3), d, config)
    x, labels = data.hypercube_batch(a, indices)
    before = linear_net.cross_entropy(net, x, labels)
    trained, diverged, _ = jax.jit(lambda n: linear_net.train(jax.random.key(4), n, a, indices, config))(net)
    assert not diverged and linear_net.cross_entropy(trained, x, labels) < 0.5 * before


def torch_default_step(name, lr, param, grad, state, t):
    """One step of torch.optim's `name` at its default hyperparameters, from PyTorch's documented
    algorithms, in numpy: Adam and AdamW (betas 0.9, 0.999, eps 1e-8 outside the root; AdamW's
    decoupled weight decay 0.01), SGD (no momentum), RMSprop (alpha 0.99, eps 1e-8 outside the root).
    Checked once against torch 2.13.0's optimisers on this test's steps: equal to 4e-16."""
    if name == "sgd":
        return param - lr * grad
    if name == "rmsprop":
        state["v"] = 0.99 * state.get("v", 0) + 0.01 * grad**2
        return param - lr * grad / (np.sqrt(state["v"]) + 1e-8)
    if name == "adamw":
        param = param - lr * 0.01 * param
    state["m"] = 0.9 * state.get("m", 0) + 0.1 * grad
    state["v"] = 0.999 * state.get("v", 0) + 0.001 * grad**2
    m_hat, v_hat = state["m"] / (1 - 0.9**t), state["v"] / (1 - 0.999**t)
    return param - lr * m_hat / (np.sqrt(v_hat) + 1e-8)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_optimizers_follow_torch_defaults(name):
    # Five steps on random parameters and gradients, optax against PyTorch's update rules.
    rng = np.random.default_rng(4)
    param = rng.standard_normal((3, 4))
    grads = rng.standard_normal((5, 3, 4))
    with enable_x64(True):
        opt = linear_net.optimizer(Config(optimizer=name, lr=3e-3))
        ours, opt_state = jnp.asarray(param), opt.init(jnp.asarray(param))
        for grad in grads:
            updates, opt_state = opt.update(jnp.asarray(grad), opt_state, ours)
            ours = ours + updates
    theirs, state = param, {}
    for t, grad in enumerate(grads, start=1):
        theirs = torch_default_step(name, 3e-3, theirs, grad, state, t)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_glorot_and_lecun_inits_take_fan_in_from_the_input_axis():
    # Weights are stored (out, in). Glorot: U(+-sqrt(6 / (in + out))) (torch.nn.init.xavier_uniform_);
    # LeCun: variance 1 / fan_in with fan_in the INPUT width (12 for H1, 3000 for H2): swapping the
    # axes would give H1 a variance 250x too small.
    d, width = 12, 3000
    glorot = linear_net.init(jax.random.key(5), d, Config(width=width, init="glorot"))
    lecun = linear_net.init(jax.random.key(6), d, Config(width=width, init="lecun"))
    for h, fan_in, fan_out in [(glorot.weights[0], d, width), (glorot.weights[1], width, 2)]:
        assert h.shape == (fan_out, fan_in)
        scaled = np.asarray(h, float).ravel() / np.sqrt(6 / (fan_in + fan_out))
        assert np.all(np.abs(scaled) <= 1) and stats.kstest(scaled, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    for h, fan_in in [(lecun.weights[0], d), (lecun.weights[1], width)]:
        values = np.asarray(h, float).ravel() * np.sqrt(fan_in)  # variance 1 if fan_in is right
        # The variance of n values of a unit-variance law with kurtosis < 3: SE below sqrt(2 / n).
        assert abs(np.var(values) - 1) < 4 * np.sqrt(2 / values.size), (fan_in, np.var(values))
        assert np.all(np.abs(values) <= 2 / 0.87962566103423978 + 1e-6)  # truncated at two standard normals


@pytest.mark.parametrize("num,batch_size", [(32, 8), (50, 16), (5, 16), (1, 1)])
def test_batch_plan_visits_every_point_once_and_masks_only_the_padding(num, batch_size):
    steps = -(-num // batch_size)
    positions, valid = (np.asarray(v) for v in linear_net.batch_plan(jax.random.key(num), num, batch_size))
    assert positions.shape == valid.shape == (steps, batch_size)
    # Full batches, then the rest: exactly the last steps * batch_size - num slots are padding.
    np.testing.assert_array_equal(valid.ravel(), np.arange(steps * batch_size) < num)
    np.testing.assert_array_equal(np.sort(positions[valid]), np.arange(num))


def test_batch_plan_shuffles_uniformly_and_anew_each_epoch():
    num, draws = 10, 4000
    firsts = np.array([int(linear_net.batch_plan(jax.random.key(k), num, 4)[0][0, 0]) for k in range(draws)])
    assert stats.chisquare(np.bincount(firsts, minlength=num)).pvalue > 1e-3
    a, b = (np.asarray(linear_net.batch_plan(jax.random.fold_in(jax.random.key(0), e), num, 4)[0]) for e in (0, 1))
    assert not np.array_equal(a, b)
