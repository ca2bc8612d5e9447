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
CLOSING_BUDGET = certify.Budget(rounds=32, bisections=7)


@functools.cache
def radius_program(method: str, targeted: bool, dtype, with_upper: bool = False, budget=SOUNDNESS_BUDGET):
    del dtype  # part of the cache key: x64 must be on when a float64 program compiles

    def one(net, x, y, t, upper):
        target = t if targeted else None
        return certify.certified_radius(net, x, y, target, method=method, upper=upper, budget=budget)

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
