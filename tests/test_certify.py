"""`certify.certified_radius` against the exact minimal perturbation of 2-D ReLU nets, affine models and attacks.

Soundness is what a certificate promises: on the exact oracle's nets (tests/exact_relu2d.py,
SEEDS seeds of NETS nets, untargeted and targeted) no certified radius exceeds the exact minimum
beyond the rounding of the bounds (BELOW), and no point branch and bound meets on its way reaches
the goal closer than it. The same tests with the ReLU's upper line dropped from the relaxation
fail (an unsound bound certifies past the exact minimum on many nets), and so do those of branch
and bound with one side of a split lost. Tightness: branch and bound closes the bracket to 1% of
the exact minimum on >= 95% of the nets.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_relu2d import problems
from helpers import long_running_jit

from jaxfrag import attacks, certify

SEEDS = 3
NETS = 40
WIDTH = 12
DTYPES = [jnp.float64, jnp.float32]
# The certified radius over the exact minimum: never above 1 beyond the bounds' rounding.
BELOW = {jnp.float64: 1e-9, jnp.float32: 1e-5}


@functools.cache
def oracle(classes: int, targeted: bool):
    """(nets, inputs, labels, targets or None, exact minima) of the family, every seed; targeted: both other classes."""
    return problems(700 + 10 * classes, SEEDS, NETS, WIDTH, classes, targeted)


def stacked(nets, dtype) -> certify.Chain:
    """The nets as one Chain with a leading net axis, rounded to dtype."""
    stack = lambda name: jnp.asarray(np.stack([getattr(net, name) for net in nets]), dtype)  # noqa: E731
    return certify.chain((stack("h1"), stack("h2")), (stack("c1"), stack("c2")))


# Branch and bound within a small budget: soundness holds at any budget, and these tests' time is
# that of the nets it cannot close, which run every round of every bisection.
SOUNDNESS_BUDGET = certify.Budget(rounds=12, bisections=5)
CLOSING_BUDGET = certify.BAB_BUDGET  # the default: its 2^-8 resolution of the bracket, under the 1% asked


@functools.cache
def radius_program(method: str, targeted: bool, dtype, with_upper: bool = False, budget=SOUNDNESS_BUDGET):
    del dtype  # part of the cache key: x64 must be on when a float64 program compiles

    def one(net, x, y, t, upper):
        target = t if targeted else None
        return certify.certified_radius(net, x, y, target, method=method, upper=upper, budget=budget)

    if method == "bab":
        # One problem at a time: vmapped, branch and bound's while loops would run every lane for as
        # many rounds as the slowest lane needs (about 6x the time here).
        return long_running_jit(lambda *problems: jax.lax.map(lambda problem: one(*problem), problems))
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0 if with_upper else None)))


def radii(method, classes, targeted, dtype, upper=None, budget=SOUNDNESS_BUDGET):
    """Certified radii, whether certified, and the exact minima; `upper`: the bisection's upper end per input."""
    nets, x, labels, targets, exact = oracle(classes, targeted)
    with jax.enable_x64(dtype == jnp.float64):
        targets = jnp.asarray(labels if targets is None else targets)
        upper = None if upper is None else jnp.asarray(upper, dtype)
        program = radius_program(method, targeted, dtype, upper is not None, budget)
        out = program(stacked(nets, dtype), jnp.asarray(x, dtype), jnp.asarray(labels), targets, upper)
        return np.asarray(out.radius, float), np.asarray(out.certified), exact, np.asarray(out.crossing, float)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", certify.METHODS)
@pytest.mark.parametrize(("classes", "targeted"), [(2, False), (3, False), (3, True)])
def test_no_certified_radius_exceeds_the_exact_minimum(classes, targeted, method, dtype):
    radius, certified, exact, crossing = radii(method, classes, targeted, dtype)
    reachable = np.isfinite(exact)
    assert reachable.sum() >= 0.8 * len(exact)
    ratio = radius[reachable] / exact[reachable]
    assert np.all(ratio <= 1 + BELOW[dtype]), f"certified past the exact minimum: max ratio {ratio.max()}"
    # Branch and bound's crossings are points that reach the goal: never below the exact minimum.
    assert np.all(crossing[reachable] >= exact[reachable] * (1 - BELOW[dtype]))
    # Not vacuous: the inputs are correctly classified, so almost every one gets a positive radius.
    assert certified.mean() > 0.95 and np.median(ratio) > 0.05


@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_crown_is_never_looser_than_crown_and_closes_most_brackets(dtype):
    crown, _, exact, _ = radii("crown", 3, False, dtype)
    alpha, *_ = radii("alpha", 3, False, dtype)
    assert np.all(alpha >= crown)
    reachable = np.isfinite(exact)
    # On one hidden layer of 12 neurons most balls at the minimum cross few unstable neurons.
    assert np.median(alpha[reachable] / exact[reachable]) > np.median(crown[reachable] / exact[reachable])


@pytest.mark.parametrize(("classes", "targeted"), [(2, False), (3, False), (3, True)])
def test_branch_and_bound_closes_the_bracket_to_one_percent_on_most_nets(classes, targeted):
    """Up to an upper end at the exact minimum (an attack's norm plays that part in a run), branch and
    bound certifies within 1% of it on >= 95% of the nets (float32); alpha-CROWN alone on far fewer."""
    *_, exact = oracle(classes, targeted)
    reachable = np.isfinite(exact)
    upper = np.where(reachable, exact, 1.0)  # unreachable inputs: any end; they are left out below
    bab, *_ = radii("bab", classes, targeted, jnp.float32, upper, CLOSING_BUDGET)
    alpha, *_ = radii("alpha", classes, targeted, jnp.float32)
    bab, alpha, exact = bab[reachable], alpha[reachable], exact[reachable]
    assert np.all(bab <= exact * (1 + BELOW[jnp.float32]))
    assert np.mean(bab >= 0.99 * exact) >= 0.95, f"closed on {np.mean(bab >= 0.99 * exact):.3f} of the nets"
    assert np.mean(alpha >= 0.99 * exact) < 0.5
    assert np.all(bab >= alpha * (1 - BELOW[jnp.float32]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", certify.METHODS)
@pytest.mark.parametrize("d", [3, 17])
def test_an_affine_model_is_certified_to_its_exact_minimum(d, method, dtype):
    """No ReLU: the bound is the model itself, so the radius is the distance to the nearest facet."""
    with jax.enable_x64(dtype == jnp.float64):
        keys = jax.random.split(jax.random.key(d), 3)
        weight = jax.random.normal(keys[0], (5, d), dtype)
        bias = jax.random.normal(keys[1], (5,), dtype)
        x = jax.random.normal(keys[2], (d,), dtype)
        network = (certify.Dense(weight, bias),)
        label = int(jnp.argmax(weight @ x + bias))
        exact = attacks.linear_min_perturbation(lambda v: weight @ v + bias, x, label).norm
        radius = jax.jit(lambda x: certify.certified_radius(network, x, label, method=method).radius)(x)
        # Bisected to 2^-BISECTIONS of a bracket at most twice the radius, and rounded.
        slack = max(2.0 ** (1 - certify.BISECTIONS), BELOW[dtype])
        assert exact * (1 - slack) <= radius <= exact * (1 + BELOW[dtype])


def conv_net(key, dtype, pool: bool = False) -> certify.Chain:
    """A small random convolutional chain on 8x8x2 images: conv 3x3 -> 4, ReLU, conv 3x3 -> 6, ReLU,
    [2x2 max-pool,] dense 7, ReLU, dense 3 (the MNIST CNN's layers in small)."""
    keys = jax.random.split(key, 8)
    normal = lambda k, shape, scale: scale * jax.random.normal(k, shape, dtype)  # noqa: E731
    flat = 2 * 2 * 6 if pool else 4 * 4 * 6
    layers = [
        certify.Conv(normal(keys[0], (3, 3, 2, 4), 0.4), normal(keys[1], (4,), 0.1), (8, 8, 2)),
        certify.Relu(),
        certify.Conv(normal(keys[2], (3, 3, 4, 6), 0.3), normal(keys[3], (6,), 0.1), (6, 6, 4)),
        certify.Relu(),
        *([certify.MaxPool((4, 4, 6))] if pool else []),
        certify.Dense(normal(keys[4], (7, flat), 0.3), normal(keys[5], (7,), 0.1)),
        certify.Relu(),
        certify.Dense(normal(keys[6], (3, 7), 0.5), normal(keys[7], (3,), 0.1)),
    ]
    certify.check(tuple(layers))
    return tuple(layers)


def as_dense(network: certify.Chain, dtype) -> certify.Chain:
    """The same chain with each convolution written out as its matrix (its Jacobian) and bias."""
    out = []
    for layer in network:
        if isinstance(layer, certify.Conv):
            zero = jnp.zeros(int(np.prod(layer.shape)), dtype)
            out.append(certify.Dense(jax.jacobian(layer.forward)(zero), layer.forward(zero)))
        else:
            out.append(layer)
    return tuple(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", certify.BOUNDS)
def test_a_convolution_is_bounded_exactly_as_its_matrix(method, dtype):
    # The same net two ways: convolutions (their own forward, transpose and row norms, and CROWN's
    # hidden bounds as patches) and their matrices (every row carried back). The bounds agree.
    with jax.enable_x64(dtype == jnp.float64):
        for seed in range(4):
            key, key_x = jax.random.split(jax.random.key(seed))
            network = conv_net(key, dtype)
            x = jax.random.uniform(key_x, (128,), dtype)
            rows, _ = certify.specification(3, int(jnp.argmax(certify.apply(network, x))))
            dense = as_dense(network, dtype)
            np.testing.assert_allclose(certify.apply(network, x), certify.apply(dense, x), rtol=1e-5, atol=1e-5)
            bounds = jax.jit(
                lambda net, eps, x=x, rows=rows: certify.margin_bounds(net, x, eps, rows, method, steps=10)[0]
            )
            for eps in (0.05, 0.3, 1.0):
                got, want = bounds(network, eps), bounds(dense, eps)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def test_the_max_pool_relaxation_lies_below_and_above_the_max():
    # Random boxes (some with one input's interval above the others', where the upper line is that
    # input) and random points in them: line below <= max <= line above, at every window.
    pool = certify.MaxPool((4, 6, 3))
    for seed in range(20):
        keys = jax.random.split(jax.random.key(seed), 4)
        lower = jax.random.normal(keys[0], (72,)) + 3 * (jax.random.uniform(keys[1], (72,)) < 0.2)
        upper = lower + jax.random.exponential(keys[2], (72,)) * (seed % 4) / 2  # width 0 included
        chosen, exact, top = pool.relaxation(lower, upper)
        if seed % 4:
            assert exact.any() and not exact.all()
        points = lower + (upper - lower) * jax.random.uniform(keys[3], (500, 72))
        points = points.at[:2].set(jnp.stack([lower, upper]))  # the corners too
        maxima = jax.vmap(pool.forward)(points)
        line = points[:, chosen]
        assert np.all(line <= maxima)
        assert np.all(maxima <= jnp.where(exact, line, top))
        np.testing.assert_array_equal(pool.forward(lower), lower[chosen])  # the best lower bound


def test_a_convolutional_net_with_max_pool_is_never_certified_past_the_attack():
    # No exact minimum is known for these nets: the attack's verified norm is an upper bound on it,
    # so a certified radius above it is unsound. Each rung is at least as tight as the one before.
    # (The walk preset: on these nets its norms are the full attack's to 1%, at a tenth of the time.)
    count = 12
    nets = jax.vmap(lambda key: conv_net(key, jnp.float32, pool=True))(jax.random.split(jax.random.key(11), count))
    inputs = jax.random.uniform(jax.random.key(12), (count, 128))
    labels = jax.vmap(lambda net, x: jnp.argmax(certify.apply(net, x)))(nets, inputs)

    def attack(net, x, label):
        return attacks.minimal_l2(functools.partial(certify.apply, net), x, label, **attacks.PRESETS["walk"])

    attacked = jax.jit(jax.vmap(attack))(nets, inputs, labels)
    flipped = jax.vmap(lambda net, x, d: jnp.argmax(certify.apply(net, x + d)))(nets, inputs, attacked.delta)
    assert np.all(attacked.success) and np.all(np.asarray(flipped) != np.asarray(labels))  # verified by applying it
    budget = certify.Budget(domains=32, batch=8, rounds=4, bisections=4)
    ratios = {}
    for method in certify.METHODS:

        def one(net, x, label, upper, method=method):
            upper = upper if method == "bab" else None
            return certify.certified_radius(net, x, label, method=method, upper=upper, budget=budget).radius

        compiled = long_running_jit if method in ("alpha", "bab") else jax.jit
        ratios[method] = np.asarray(compiled(jax.vmap(one))(nets, inputs, labels, attacked.norm) / attacked.norm)
        assert np.all(ratios[method] <= 1 + 1e-5), (method, ratios[method].max())
    for looser, tighter in zip(certify.METHODS, certify.METHODS[1:], strict=False):
        assert np.all(ratios[tighter] >= ratios[looser] * (1 - 1e-5)), (looser, tighter)
    # Not vacuous: alpha-CROWN proves about a third of the attack's norm on these nets (IBP a twentieth).
    assert np.median(ratios["alpha"]) > 0.2 and np.median(ratios["ibp"]) < np.median(ratios["crown"]), ratios


def test_unstable_neurons_of_the_first_layer_are_those_the_ball_crosses():
    # The first layer's bounds are exact over the L2 ball: a neuron is unstable when its distance to
    # zero, |w.x + b|, is below eps ||w||; counted here from the conv's matrix in numpy.
    network = conv_net(jax.random.key(3), jnp.float32, pool=True)
    x = jax.random.uniform(jax.random.key(4), (128,))
    matrix = np.asarray(jax.jacobian(network[0].forward)(jnp.zeros(128)), float)
    pre = matrix @ np.asarray(x, float) + np.asarray(network[0].forward(jnp.zeros(128)), float)
    for eps in (0.01, 0.1, 0.5):
        counts = certify.unstable_neurons(network, x, eps)
        assert len(counts) == 3 and all(0 <= int(c) for c in counts)
        assert int(counts[0]) == np.sum(np.abs(pre) < eps * np.linalg.norm(matrix, axis=1))
    widths = [certify.unstable_neurons(network, x, eps) for eps in (0.01, 0.5)]
    assert all(int(a) <= int(b) for a, b in zip(*widths, strict=True))  # a larger ball crosses more


def exact_cap_minimum(weight, x, bias, eps, normal, offset):
    """min over ||delta|| <= eps, normal . delta >= offset of W (x + delta) + b, from the primal in numpy
    (float64): the ball's own minimiser where it lies in the cap, else the minimum over the disk
    where the cap's plane cuts the ball; None where the cap misses the ball."""
    squared = normal @ normal
    if offset > eps * np.sqrt(squared):
        return None
    centre = weight @ x + bias
    norms = np.linalg.norm(weight, axis=1)
    inside = normal @ (-eps * weight.T / norms) >= offset  # the ball's minimiser is in the cap
    # A cap that holds the whole ball has no disk (radius 0 here): its rows take the ball's minimiser.
    disk_centre, disk_radius = offset * normal / squared, np.sqrt(max(eps**2 - offset**2 / squared, 0))
    across = weight - np.outer(weight @ normal / squared, normal)
    on_plane = weight @ disk_centre - disk_radius * np.linalg.norm(across, axis=1)
    return centre + np.where(inside, -eps * norms, on_plane)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [2, 8, 17])
def test_halfspace_bounds_are_the_exact_extremes_over_the_cap(d, dtype):
    """Both sides of `halfspace_bounds` against the primal minimum and maximum over ball and halfspace,
    for caps that miss the ball, cut it anywhere, or contain it."""
    rng = np.random.default_rng(d)
    scale = {jnp.float64: 1e-9, jnp.float32: 2e-5}[dtype]
    empty = 0
    with jax.enable_x64(dtype == jnp.float64):
        for _ in range(40):
            weight, bias, x, normal = (
                rng.normal(size=(60, d)),
                rng.normal(size=60),
                rng.normal(size=d),
                rng.normal(size=d),
            )
            eps = rng.uniform(0.1, 3)
            offset = rng.uniform(-1.3, 1.3) * eps * np.linalg.norm(normal)
            layer = certify.Dense(jnp.asarray(weight, dtype), jnp.asarray(bias, dtype))
            infinite = jnp.full(60, jnp.inf, dtype)
            low, high = certify.halfspace_bounds(
                layer, jnp.asarray(x, dtype), eps, -infinite, infinite, jnp.asarray(normal, dtype), offset
            )
            low, high = np.asarray(low, float), np.asarray(high, float)
            lowest = exact_cap_minimum(weight, x, bias, eps, normal, offset)
            if lowest is None:
                empty += 1
                assert np.all(low > high)
                continue
            highest = -exact_cap_minimum(-weight, x, -bias, eps, normal, offset)
            size = np.abs(weight @ x + bias) + eps * np.linalg.norm(weight, axis=1)
            assert np.all(np.abs(low - lowest) <= scale * size), np.abs(low - lowest).max()
            assert np.all(np.abs(high - highest) <= scale * size), np.abs(high - highest).max()
            assert np.all(low <= high)
    assert 0 < empty < 20  # some caps miss the ball, most do not


def test_halfspace_cuts_close_the_brackets_of_wide_one_hidden_layer_nets():
    """On one hidden layer of 100 ReLUs over R^4, where the ball crosses most of them, branch and bound
    with each split's halfspace cutting the first layer's bounds certifies within 1% of the attack's
    norm on half the inputs and within 10% on nine in ten; splitting alone, the bounds of the layer
    over the whole ball, gets neither (median 1.03, p90 1.32). Never past the attack."""
    rng = np.random.default_rng(5)
    nets, width, d = 32, 100, 4
    network = certify.chain(
        (
            jnp.asarray(rng.normal(size=(nets, width, d)), jnp.float32),
            jnp.asarray(rng.normal(size=(nets, 2, width)) / np.sqrt(width), jnp.float32),
        ),
        (jnp.asarray(rng.normal(size=(nets, width)), jnp.float32), jnp.zeros((nets, 2), jnp.float32)),
    )
    x = jnp.asarray(rng.normal(size=(nets, d)), jnp.float32)
    labels = jax.vmap(lambda n, x: jnp.argmax(certify.apply(n, x)))(network, x)

    def attack(net, x, label):
        attacked = attacks.minimal_l2(functools.partial(certify.apply, net), x, label)
        return attacked.norm, jnp.argmax(certify.apply(net, x + attacked.delta)) != label

    def certified(problem):
        net, x, label, norm = problem
        return certify.certified_radius(net, x, label, method="bab", upper=norm, budget=certify.Budget(rounds=16))

    norm, landed = jax.jit(jax.vmap(attack))(network, x, labels)
    # One net at a time (see radius_program): vmapped, every net would run the slowest one's rounds.
    radius = long_running_jit(lambda *problem: jax.lax.map(certified, problem))(network, x, labels, norm).radius
    norm, radius, landed = np.asarray(norm), np.asarray(radius), np.asarray(landed)
    assert landed.all()
    bracket = norm / radius
    assert np.all(bracket >= 1 - 1e-5)
    assert np.median(bracket) <= 1.01 and np.percentile(bracket, 90) <= 1.10, np.percentile(bracket, [50, 90])
