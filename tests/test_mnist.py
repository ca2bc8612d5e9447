"""The MNIST experiment: masking rules, A_1, every column recomputed independently, and the entry point."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, check_report_page, long_running_jit
from test_cnn import numpy_forward
from test_notebook import execute

from jaxfrag import attacks, certify, datasets
from jaxfrag import mnist as entry
from jaxfrag.experiments import mnist as experiment
from jaxfrag.models import cnn
from jaxfrag.reports import mnist as report

# The measurement program's plumbing is checked with the cheaper "walk" attack (one DeepFool lane and
# its walk, a program a fraction of the default's to compile); the attack's presets themselves are
# checked in test_attacks.py, and the default's quality in benchmarks/bench_attack_optimality.py.
PLUMBING_ATTACK = "walk"


@pytest.fixture(scope="module")
def data():
    return datasets.mnist()


@pytest.fixture(scope="module")
def sevens(data):
    return np.flatnonzero(data.y_test == 7)[:160]


def _drawn_seven(crossed: bool) -> np.ndarray:
    """A 7 drawn by hand: bar on rows 4-6 from column 6 to 20, a 3-pixel stem down to row 23."""
    image = np.zeros((28, 28), np.uint8)
    image[4:7, 6:21] = 255
    for row in range(7, 24):
        column = 18 - (row - 7) // 3  # slanting left as it goes down
        image[row, column : column + 3] = 255
    if crossed:
        image[14, 8:22] = 255
    return image


def test_the_stroke_rule_blocks_the_bar_left_of_the_stem_from_its_tip():
    image = _drawn_seven(crossed=False)
    orders = experiment.masking_orders(image)
    rows, columns = np.divmod(orders.stroke, 28)
    # The stem, extrapolated from the lower half to the bar, is about columns 19-21 there: the stroke
    # is all of the bar left of it (columns 6-16 at least) and none of the stem, from the left tip.
    assert set(rows) == {4, 5, 6} and columns.min() == 6 and columns.max() <= 18
    assert {(r, c) for r in range(4, 7) for c in range(6, 17)} <= set(zip(rows, columns, strict=True))
    assert np.all(np.diff(columns) >= 0)
    assert not orders.crossed and experiment.masking_orders(_drawn_seven(crossed=True)).crossed


def test_orders_are_ink_pixels_and_blocking_zeroes_exactly_a_prefix(data, sevens):
    crossed = 0
    for checked, index in enumerate(sevens):
        image = data.x_test[index]
        orders = experiment.masking_orders(image)
        ink = set(np.flatnonzero(image.ravel() > 0))
        crossed += orders.crossed
        assert len(set(orders.stroke)) == len(orders.stroke) and set(orders.stroke) <= ink
        # The bar rule starts with the stroke and goes on through the rest of the upper half's ink.
        assert np.array_equal(orders.bar[: len(orders.stroke)], orders.stroke)
        rows = np.flatnonzero((image > 0).any(axis=1))
        middle = rows[0] + (rows[-1] - rows[0] + 1) // 2
        assert sorted(orders.bar) == sorted(i for i in ink if i // 28 < middle)
        if checked >= 24:  # blocking compiles once per order length: a few images suffice
            continue
        count = len(orders.bar) // 2
        pixels = (image.ravel() / 255.0).astype(np.float32)
        blocked = np.asarray(experiment.block(jnp.asarray(pixels), jnp.asarray(orders.bar), count))
        changed = np.flatnonzero(blocked != pixels)
        assert set(changed) == set(orders.bar[:count]) and np.all(blocked[changed] == 0)
    assert 0 < crossed < 0.4 * len(sevens)  # crossed 7s are common in MNIST, but a minority


@pytest.mark.parametrize("length, pad", [(37, 48), (16, 16), (5, 160), (150, 160)])
def test_first_one_finds_the_shortest_prefix_in_any_block_and_never_past_the_order(length, pad):
    rng = np.random.default_rng(length)
    image = jnp.asarray(rng.uniform(0.1, 1, experiment.PIXELS), jnp.float32)  # no zeros but the blocked pixels
    order = jnp.asarray(experiment.padded([rng.permutation(experiment.PIXELS)[:length]], pad)[0])
    # Prefix counts a model calls 1 (it counts the zeroed pixels): in the first block, in later blocks,
    # only the whole order, only past it (unreachable: the padding blocks nothing more), or none.
    for ones in ({1}, {17, 33}, {length - 1, length}, {length}, {length + 1}, set()):
        counts = jnp.asarray(sorted(ones) or [-1])

        def f(x, counts=counts):
            is_one = jnp.any(jnp.sum(x == 0) == counts)
            return jnp.zeros(10).at[experiment.SOURCE].set(1.0).at[experiment.TARGET].set(jnp.where(is_one, 2.0, 0.0))

        reachable = [count for count in sorted(ones) if 1 <= count <= length]
        blocked, found = jax.jit(lambda image, order, f=f: experiment.first_one(f, image, order))(image, order)
        assert bool(found) == bool(reachable), ones
        assert int(blocked) == (reachable[0] if reachable else 0), ones


@pytest.fixture(scope="module")
def network(data):
    # Trained as the entry point's test below trains (one network, one epoch, 3200 images: the
    # training set's size and the learning-rate schedule's steps are part of the compiled program),
    # so the CLI's training program comes from the session's compilation cache.
    keys = jax.random.split(jax.random.key(1), 1)
    trained = cnn.train(keys, data.x_train[:3200], data.y_train[:3200], cnn.CNNConfig(epochs=1))
    return cnn.select(trained, 0)


@pytest.fixture(scope="module")
def measured(data, network, sevens):
    """The entry point's own measurement program on 8 correctly classified 7s, with their inputs."""
    all_sevens = np.flatnonzero(data.y_test == 7)
    pad = entry.order_pad([experiment.masking_orders(data.x_test[i]) for i in all_sevens])  # as the CLI pads
    # Every test 7 classified, as the CLI classifies them (the same blocks: the same programs).
    correct = sevens[cnn.predict(network, data.x_test[all_sevens])[: len(sevens)] == 7]
    # Five 7s that the bar rule turns into a 1 and three that it does not, so both cases are checked.
    bar_orders = experiment.padded([experiment.masking_orders(data.x_test[i]).bar for i in correct], pad)
    candidates = jnp.asarray(data.x_test[correct].reshape(len(correct), -1) / 255.0, jnp.float32)
    found = np.asarray(_first_ones(network, candidates, jnp.asarray(bar_orders))[1])
    assert found.sum() >= 5 and (~found).sum() >= 3
    chosen = np.concatenate([correct[found][:5], correct[~found][:3]])
    images = data.x_test[chosen].reshape(entry.CHUNK, -1).astype(np.float32) / 255
    chosen_orders = [experiment.masking_orders(data.x_test[i]) for i in chosen]
    rule_orders = np.stack(
        [experiment.padded([getattr(o, rule) for o in chosen_orders], pad) for rule in experiment.MASK_RULES], axis=1
    )
    out = entry.measure_program(11, 1.0, PLUMBING_ATTACK)(network, images, rule_orders)
    return chosen, images, chosen_orders, {k: np.asarray(v) for k, v in out.items()}


# The network's own passes over many images, which run long, are compiled with long_running_jit.


@long_running_jit
def _first_ones(network, images, orders):
    # The network is an argument, not a closed-over constant: 1.2 M constants slow the compiler.
    f = lambda v: cnn.apply(network, v.reshape(28, 28))  # noqa: E731
    return jax.lax.map(lambda a: experiment.first_one(f, *a), (images, orders), batch_size=8)


@long_running_jit
def _labels(network, images):
    return jnp.argmax(cnn.apply(network, images), -1)


def _label(network, x):
    return int(_numpy_labels(network, np.asarray(x)[None])[0])


def _numpy_labels(network, xs):
    """The float64 numpy network's labels of the rows of xs (n, 784), in one batched pass."""
    return np.argmax(numpy_forward(network, np.asarray(xs, np.float64).reshape(-1, 28, 28)), axis=1)


def test_a1_is_the_shortest_prefix_the_network_calls_1(network, measured):
    chosen, images, orders, out = measured
    found_any = 0
    longest = max(len(getattr(o, rule)) for o in orders for rule in experiment.MASK_RULES)
    for rule in experiment.MASK_RULES:
        for i, image in enumerate(images):
            order = getattr(orders[i], rule)
            labels = np.asarray(_labels(network, _prefixes(image, order, longest)))[: len(order)]  # one at a time below
            ones = np.flatnonzero(labels == 1)
            assert out[f"{rule}/has_a1"][i] == (len(ones) > 0)
            if len(ones):
                found_any += 1
                assert out[f"{rule}/blocked"][i] == ones[0] + 1
                a1 = image.copy()
                a1[order[: ones[0] + 1]] = 0
                assert _label(network, a1) == 1 and out[f"{rule}/flips_a1"][i]
                assert np.all(a1[a1 != image] == 0)  # A_1 differs from I_7 only in zeroed stroke pixels
            else:
                assert np.isnan(out[f"{rule}/blocked"][i]) and np.isnan(out[f"{rule}/L"][i])
    assert found_any > 0


def _prefixes(image, order, rows):
    """Row p blocks order[: p + 1]; padded with copies of the image to one shape, so _labels compiles once."""
    out = np.repeat(image[None], rows, axis=0)
    for p in range(len(order)):
        out[p, order[: p + 1]] = 0
    return jnp.asarray(out.reshape(-1, 28, 28))


def _directional(network, x, u, h=1e-6):
    """d/dt (f_7 - f_1)(x + t u) by central differences of the numpy network (float64)."""
    logits = numpy_forward(network, np.stack([x + h * u, x - h * u]).reshape(2, 28, 28))
    g = logits[:, 7] - logits[:, 1]
    return (g[0] - g[1]) / (2 * h)


@long_running_jit
def _jacobian(network, x):
    return jax.jacfwd(lambda v: cnn.apply(network, v.reshape(28, 28)))(x)


def _gradient(network, x):
    """grad (f_7 - f_1)(x) by forward-mode differentiation (jax.jacfwd), not the reverse mode used."""
    jacobian = _jacobian(network, jnp.asarray(x, jnp.float32))
    return np.asarray(jacobian[7] - jacobian[1], np.float64)


@long_running_jit
def _minimal_l2_alone(network, x):
    f = lambda v: cnn.apply(network, v.reshape(28, 28))  # noqa: E731
    return attacks.minimal_l2(f, x, 7, 1, **attacks.PRESETS[PLUMBING_ATTACK])


def test_path_columns_recomputed_independently(network, measured):
    chosen, images, orders, out = measured
    checked = 0
    for rule in experiment.MASK_RULES:
        for i, image in enumerate(images):
            if not out[f"{rule}/has_a1"][i] or checked >= 2:
                continue
            checked += 1
            x = image.astype(np.float64)
            a1 = x.copy()
            a1[getattr(orders[i], rule)[: int(out[f"{rule}/blocked"][i])]] = 0
            length = np.linalg.norm(a1 - x)
            u = (a1 - x) / length
            assert out[f"{rule}/L"][i] == pytest.approx(length, rel=1e-5)
            assert out[f"{rule}/ink_left"][i] == pytest.approx(np.sum(a1 > 0) / np.sum(x > 0), abs=1e-6)
            alphas = np.linspace(0, 1, 11)
            # At alpha = 1 the blocked pixels are exactly 0, so max-pool windows tie and the function
            # has a kink right there: its derivative is the tie rule's (forward mode, jax.jacfwd), not
            # the average of both sides that a central difference measures.
            slopes = np.array([_directional(network, x + a * (a1 - x), u) for a in alphas[:-1]] + [np.nan])
            # A full forward-mode gradient costs 784 passes: taken at the start, two inner points
            # and the end (where the kink is), which pins the alpha grid's indexing.
            norms = {}
            for k in (0, 3, 7, 10):
                gradient = _gradient(network, x + alphas[k] * (a1 - x))
                norms[k] = np.linalg.norm(gradient)
                if k == 10:
                    slopes[k] = gradient @ u
                assert out[f"{rule}/cos_theta_alpha_{k}"][i] == pytest.approx(slopes[k] / norms[k], abs=2e-3)
            assert out[f"{rule}/cos_theta_t"][i] == pytest.approx(slopes[0] / norms[0], abs=2e-3)
            # Eq. (8) as the paper sums it: sum_alpha ||grad|| cos L / (n - 1) / ||grad at I_7||.
            m = np.sum(slopes) * length / 10 / norms[0]
            assert out[f"{rule}/M"][i] == pytest.approx(m, abs=2e-3 * max(1, abs(m)))
            # alpha_flip: the label leaves 7 there and not on the grid before it.
            flip = float(out[f"{rule}/alpha_flip"][i])
            grid = np.linspace(0, 1, 11)
            before = grid[grid < flip - 1e-6]
            assert np.all(_numpy_labels(network, x + before[:, None] * (a1 - x)) == 7)
            assert _label(network, x + (flip + 1e-5) * (a1 - x)) != 7
            assert _label(network, x + (flip - 1e-5) * (a1 - x)) == 7
    assert checked > 0


@jax.jit
def _loss_gradient_towards_1(network, x):
    return jax.grad(lambda v: -jax.nn.log_softmax(cnn.apply(network, v.reshape(28, 28)))[1])(x)


def test_attack_columns_recomputed_by_applying_them(network, measured):
    chosen, images, orders, out = measured
    for i, image in enumerate(images):
        x = jnp.asarray(image)
        # FGSM towards 1: the smallest step on the scan's first bracket; applied in float64 numpy.
        direction = -np.sign(np.asarray(_loss_gradient_towards_1(network, x), np.float64))
        q = out["Q_fgsm"][i]
        if np.isfinite(q):
            eps = q / np.linalg.norm(direction)
            assert _label(network, image + eps * 1.0001 * direction) == 1 and out["flips_fgsm"][i]
            assert _label(network, image + eps * 0.999 * direction) != 1
            earlier = np.arange(1, 257) / 256
            steps = earlier[earlier < eps * 0.999]
            assert np.all(_numpy_labels(network, image + steps[:, None] * direction) != 1)
            outside = np.mean((image + eps * direction < 0) | (image + eps * direction > 1))
            assert out["box_fgsm"][i] == pytest.approx(outside, abs=2 / 784)
        else:
            steps = np.arange(1, 257) / 256
            assert np.all(_numpy_labels(network, image + steps[:, None] * direction) != 1)
        # Minimal L2 towards 1: the same attack alone gives the same norm, and applying it gives 1.
        # (Alone and in the entry point's batch of images the walk sees different roundings, so the
        # two runs may settle on the boundary a little differently: equal to 1%, not bitwise; see
        # benchmarks/attack_layouts.py for the measured spread.)
        result = _minimal_l2_alone(network, x)
        assert out["Q_l2"][i] == pytest.approx(float(result.norm), rel=1e-2)
        assert _label(network, image + np.asarray(result.delta, np.float64)) == 1 and out["flips_l2"][i]
        for rule in experiment.MASK_RULES:  # A_1 itself reaches 1 at distance L: the attack does better
            if out[f"{rule}/has_a1"][i]:
                assert out["Q_l2"][i] <= out[f"{rule}/L"][i]
        if np.isfinite(q):
            assert out["Q_l2"][i] <= q


def test_certified_q_is_the_certifiers_own_and_below_every_perturbation_that_reaches_1(
    data, network, measured, monkeypatch
):
    # Six bisections, not the study's twelve: soundness and the plumbing hold at any resolution, and
    # each bisection is a CROWN pass over the CNN's 21 632 first-layer ReLUs per 7.
    monkeypatch.setattr(entry, "CERTIFY_BISECTIONS", 6)
    chosen, images, chosen_orders, out = measured
    rows = entry._rows(0, chosen, dict(zip(chosen.tolist(), chosen_orders, strict=True)), out)
    certified = entry.certify_rows("crown", network, data, rows)
    assert list(certified.columns) == entry._ordered(certified.columns)
    pd.testing.assert_frame_equal(certified[rows.columns], rows)  # the measured columns untouched
    # Only the 7s with an A_1 under either rule are certified, once for both rules' rows.
    with_a1 = certified.groupby("image")["has_a1"].transform("any").to_numpy(bool)
    assert with_a1.any() and (~with_a1).any()
    assert certified.loc[~with_a1, ["Q_certified", "Q_certified_ratio", "Q_bracket"]].isna().all().all()
    got = certified[with_a1]
    assert (got["Q_certified"] > 0).all()
    assert (got.groupby("image")["Q_certified"].nunique() == 1).all()
    # Sound: every perturbation the run found that reaches 1 is at least as long (FGSM's step, the
    # minimal-L2 attack's, and A_1 - I_7 itself where the row has an A_1).
    for column in ("Q_fgsm", "Q_l2", "L"):
        reached = got[got[column].notna()]
        assert (reached["Q_certified"] <= reached[column]).all(), column
    np.testing.assert_allclose(got["Q_certified_ratio"], got["Q_certified"] / (0.5 * got["L"]), rtol=1e-12)
    np.testing.assert_allclose(got["Q_bracket"], got["Q_l2"] / got["Q_certified"], rtol=1e-12)
    # Its own: I_7 certified against 1 directly (the same program, so to the bisection's last step).
    first = got.iloc[0]
    x = jnp.asarray(images[list(chosen).index(first["image"])])
    direct = long_running_jit(
        lambda network, x, upper: (
            certify.certified_radius(
                network, x, 7, 1, method="crown", upper=upper, bisections=entry.CERTIFY_BISECTIONS
            ).radius
        )
    )(cnn.certify_chain(network), x, first["Q_l2"])
    step = float(first["Q_l2"]) / 2**entry.CERTIFY_BISECTIONS
    assert float(direct) == pytest.approx(first["Q_certified"], abs=2 * step)
    # The report's claims at Q = Q_certified, the bracket's lower end, recomputed from the rows.
    table = report.claims(certified)
    for rule in experiment.MASK_RULES:
        block = certified[(certified.mask_rule == rule) & ~certified.crossed & certified.has_a1]
        for claim, column in (("cos", "cos_theta_t"), ("M/", "M_ratio")):
            (line,) = table[
                (table.network == "all") & (table.mask_rule == rule) & (table.Q == "certified")
                & table.claim.str.contains(claim, regex=False)
            ].itertuples()  # fmt: skip
            difference = (block[column].abs() - block["Q_certified_ratio"]).dropna()
            assert line.n == len(difference)
            if len(difference):
                assert line.diff_mean == pytest.approx(difference.mean())
    text = report.format_report(certified, report.summarise(certified), table, [1.0], {})
    bracket = got[got.mask_rule == experiment.MASK_RULES[0]]["Q_bracket"]
    assert f"Certified: on the {bracket.notna().sum()} (network, 7) pairs" in text
    assert f"median {bracket.median():.2f}" in text


# Last in this file, after the fixtures above compiled the same measurement program (11 alphas, FGSM's
# eps_max 1, the CLI's order padding): the entry point reads it from the session's compilation cache.
def test_mnist_entry_point_resumes_and_its_notebook_executes(tmp_path):
    run = tmp_path / "run"
    # One network trained on 50 batches: the fixture's training block, also read from the compilation cache.
    command = [sys.executable, "-m", "jaxfrag.mnist", "--out", str(run), "--no-progress", "--networks", "1"]
    command += ["--epochs", "1", "--train-images", "3200", "--images", "8", "--n-alpha", "11"]
    command += ["--attack", PLUMBING_ATTACK, "--certify", "ibp"]  # ibp: the cheapest rung, the same plumbing
    # As many CPU devices as this worker has (conftest): the device count is part of a program's key
    # in the compilation cache, and the entry point's programs run on one device either way.
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(jax.device_count())}
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
    assert first.returncode == 0, first.stderr
    assert "Table 5" in first.stdout and "Table 6" in first.stdout and "The paper's claims" in first.stdout
    assert "-0.2255" in first.stdout  # the paper's numbers beside ours
    for name in ("results.parquet", "summary.csv", "claims.csv", "meta.json", "networks.npz"):
        assert (run / name).exists()
    for name in ("gallery_stroke.png", "gallery_bar.png", "claims.png", "cos_alpha.png"):
        assert (run / "figures" / name).exists()
    rows = pd.read_parquet(run / "results.parquet")
    assert len(rows) == 8 * 2 and set(rows.mask_rule) == {"stroke", "bar"}
    with_a1 = rows.groupby("image")["has_a1"].transform("any").to_numpy(bool)
    assert rows["Q_certified"].notna().to_numpy().tolist() == with_a1.tolist()
    assert "Q=certified" in first.stdout  # the claims at the bracket's lower end (none of these 7s has an A_1)
    check_report_page(run, min_verdict_rows=3)  # Table 5's two relations and Table 6
    # Without --resume the folder is refused.
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    text, images = execute(ROOT / "notebooks" / "mnist.ipynb", run)
    assert "8 (network, 7) pairs from 1 networks" in text and "paper 1" in text and "rule bar" in text
    assert len(images) == 1

    # More 7s on --resume, twice (8 -> 11 -> 14: the new 7s sit in other places of the compiled chunks),
    # results.parquet removed first: nothing is retrained, the first 8 7s' rows come back unchanged from
    # their cell, and the rows equal those of the network measured with 14 from the start.
    (run / "results.parquet").unlink()
    trained = (run / "networks.npz").stat().st_mtime_ns
    (accuracy,) = [line for line in first.stderr.splitlines() if line.startswith("network 0: test accuracy")]
    with_images = lambda n, out: [w if w not in ("8", str(run)) else {"8": str(n)}.get(w, str(out)) for w in command]
    for images in (11, 14):
        grown = subprocess.run(with_images(images, run) + ["--resume"], capture_output=True, text=True, cwd=ROOT,
                               timeout=300, env=env)  # fmt: skip
        assert grown.returncode == 0, grown.stderr
        assert accuracy in grown.stderr.splitlines()  # as measured when it was trained
    assert (run / "networks.npz").stat().st_mtime_ns == trained
    shrunk = subprocess.run(with_images(9, run) + ["--resume"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert shrunk.returncode == 2 and "not shrink" in shrunk.stderr and shrunk.stderr.count("\n") == 1
    extended = pd.read_parquet(run / "results.parquet")
    assert len(extended) == 14 * 2
    pd.testing.assert_frame_equal(extended.head(len(rows)), rows)  # the first 8 unchanged
    scratch = tmp_path / "scratch"  # the same trained network, its 14 7s measured at once
    scratch.mkdir()
    shutil.copy(run / "networks.npz", scratch / "networks.npz")
    shutil.copy(run / "meta.json", scratch / "meta.json")
    at_once = subprocess.run(with_images(14, scratch) + ["--resume"], capture_output=True, text=True, cwd=ROOT,
                             timeout=300, env=env)  # fmt: skip
    assert at_once.returncode == 0, at_once.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(scratch / "results.parquet"), extended, check_exact=True)
