"""Certified lower bounds on the minimal L2 perturbation of one input, by linear bound propagation.

Contract: ONE network and ONE input; vmap at the call site. A network is a `Chain`, a tuple of
layers applied in order to a flat input: `Dense(weight, bias)` and `Relu()` (`chain` builds one
from the weights and biases of `models.linear.LinearNet`). `certified_radius` returns a radius r
such that no perturbation with ||delta||_2 <= r reaches the goal -- another class than `label`
(untargeted) or `target` winning -- so the true minimal perturbation, and every attack's norm, is
at least r. Sound up to the floating-point rounding of the bounds themselves (about 1e-6
relative in float32, 1e-15 in float64; measured against exact minima in tests/test_certify.py).

How (Zhang et al. 2018, CROWN; Xu et al. 2021, alpha-CROWN):
* a goal is a set of margins c . f(x + delta) (rows of `specification`): untargeted, f_label - f_j
  for every j != label, all of which must stay positive; targeted, f_j - f_target for every
  j != target, one of which must (then the target never has the largest logit);
* `margin_bounds` bounds each margin from below over the ball ||delta|| <= eps: every ReLU is
  replaced by linear functions below and above it between its input's bounds, and the margin's
  coefficients are carried back through the layers to a linear function a . delta + b of the
  input, whose minimum over the ball is b - eps ||a||_2 (the ball's support function: this is
  where the L2 norm enters, and why the first layer's bounds are exact);
* the bounds on every hidden layer's input come the same way, from the layers before it (`crown`),
  or from interval arithmetic (`ibp`: Gowal et al. 2018, cheaper and looser);
* `alpha`: the lower line of every unstable ReLU has a free slope in [0, 1], one per margin and
  neuron, chosen by projected gradient ascent on the bound (optax's Adam) -- any slope is sound,
  so the optimiser can only tighten;
* `certified_radius` bisects eps between 0 and an upper bound (an attack's norm), or within a
  factor-2 bracket found by bisection on eps's exponent: the bounds loosen as eps grows, so the
  certified set of radii is an interval.
Hand-written: the maintained verifiers (auto_LiRPA, alpha-beta-CROWN) are PyTorch, one network at a
time, and do not install beside torch 2.13; this compiles and vmaps over networks and inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

METHODS = ("ibp", "crown", "alpha")
BISECTIONS = 24  # the radius to 2^-24 of its bracket: below float32's resolution of the bounds
ALPHA_STEPS = 40
ALPHA_LR = 0.1


class Dense(NamedTuple):
    weight: jax.Array  # (out, in)
    bias: jax.Array  # (out,)

    def forward(self, v: jax.Array) -> jax.Array:
        return self.weight @ v + self.bias

    def magnitude(self, v: jax.Array) -> jax.Array:
        """|W| v: how far the outputs can move when each input moves by v (interval arithmetic)."""
        return jnp.abs(self.weight) @ v

    def pull_back(self, coefficients: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Coefficients (m, out) on the outputs as coefficients (m, in) on the inputs, and the constant they add."""
        return coefficients @ self.weight, coefficients @ self.bias

    def row_norms(self) -> jax.Array:
        """||W_i||_2: output i moves by at most eps times this over an L2 ball of radius eps."""
        return jnp.linalg.norm(self.weight, axis=1)


class Relu(NamedTuple):
    pass


Chain = tuple  # of Dense and Relu, starting and ending with Dense


class Certificate(NamedTuple):
    radius: jax.Array  # (), no perturbation this short reaches the goal
    certified: jax.Array  # bool (), the radius is positive (the input is not already at the goal)


def chain(weights, biases=()) -> Chain:
    """The Chain of a dense net with ReLU between layers (`models.linear.LinearNet`'s fields; no biases: zeros)."""
    layers = []
    for k, weight in enumerate(weights):
        if k:
            layers.append(Relu())
        bias = biases[k] if biases else jnp.zeros(weight.shape[0], weight.dtype)
        layers.append(Dense(weight, bias))
    return tuple(layers)


def apply(network: Chain, x: jax.Array) -> jax.Array:
    """The chain's logits at x."""
    for layer in network:
        x = jax.nn.relu(x) if isinstance(layer, Relu) else layer.forward(x)
    return x


def specification(classes: int, label, target=None) -> tuple[jax.Array, bool]:
    """The margins' rows (classes - 1, classes) and whether all of them (True) or one (False) must stay positive.

    Untargeted: e_label - e_j for j != label, all positive. Targeted: e_j - e_target for
    j != target, one positive. The row of the excluded class itself is a copy of the first other row.
    """
    pivot = label if target is None else target
    others = jnp.arange(classes - 1)
    others = others + (others >= pivot)  # every class but the pivot
    rows = jax.nn.one_hot(others, classes)
    pivot_row = jax.nn.one_hot(pivot, classes)
    if target is None:
        return pivot_row - rows, True
    return rows - pivot_row, False


class _Relaxation(NamedTuple):
    lower_slope: jax.Array  # (m, n) per margin row: the lower line's slope (alpha for unstable neurons)
    upper_slope: jax.Array  # (n,)
    upper_intercept: jax.Array  # (n,)


def _relaxation(lower: jax.Array, upper: jax.Array, alpha: jax.Array | None, rows: int) -> _Relaxation:
    """Linear functions below and above relu(z) for z in [lower, upper], per neuron.

    Stable neurons are exact (slope 1 or 0). An unstable one lies under the chord from (l, 0) to
    (u, u) and over alpha z for any alpha in [0, 1]: CROWN's choice is 1 where u >= -l, else 0;
    alpha-CROWN's is optimised.
    """
    active, inactive = lower >= 0, upper <= 0
    unstable = ~active & ~inactive
    width = jnp.where(unstable, upper - lower, 1)
    upper_slope = jnp.where(active, 1.0, jnp.where(unstable, upper / width, 0.0)).astype(lower.dtype)
    upper_intercept = jnp.where(unstable, -upper * lower / width, 0.0).astype(lower.dtype)
    if alpha is None:
        alpha = _crown_slopes(lower, upper, rows)
    lower_slope = jnp.where(active, 1.0, jnp.where(unstable, jnp.clip(alpha, 0, 1), 0.0)).astype(lower.dtype)
    return _Relaxation(lower_slope, upper_slope, upper_intercept)


def _crown_slopes(lower: jax.Array, upper: jax.Array, rows: int) -> jax.Array:
    """CROWN's lower slopes (rows, n): 1 where u >= -l, else 0 (the line nearer relu on the wider side)."""
    return jnp.broadcast_to((upper >= -lower).astype(lower.dtype), (rows, lower.shape[0]))


def _first_layer_bounds(layer: Dense, x, eps) -> tuple[jax.Array, jax.Array]:
    """Exact bounds of an affine layer over the L2 ball: W x + b -+ eps ||W_i||."""
    center, radius = layer.forward(x), eps * layer.row_norms()
    return center - radius, center + radius


def _backward(network: Chain, coefficients, bounds, alphas, x, eps) -> jax.Array:
    """Lower bounds (m,) over the ball on the margins `coefficients` (m, out) of the chain's output.

    `bounds` holds (lower, upper) of every Relu's input, `alphas` its lower slopes (m, n) or None.
    """
    constant = jnp.zeros(coefficients.shape[0], coefficients.dtype)
    relu = len(bounds)
    for layer in reversed(network):
        if isinstance(layer, Relu):
            relu -= 1
            lower, upper = bounds[relu]
            relaxed = _relaxation(lower, upper, alphas[relu], coefficients.shape[0])
            positive = coefficients >= 0
            # Below a positive coefficient the lower line bounds from below, below a negative one the upper line.
            slope = jnp.where(positive, relaxed.lower_slope, relaxed.upper_slope)
            constant = constant + jnp.where(positive, 0.0, coefficients * relaxed.upper_intercept).sum(1)
            coefficients = coefficients * slope
        else:
            coefficients, added = layer.pull_back(coefficients)
            constant = constant + added
    # a . (x + delta) + b over ||delta|| <= eps: its minimum is a . x + b - eps ||a||.
    return coefficients @ x + constant - eps * jnp.linalg.norm(coefficients, axis=1)


def _interval(network: Chain, x, eps) -> tuple[jax.Array, jax.Array]:
    """Interval arithmetic: the output's (lower, upper) over the ball.

    The first layer's interval is exact over the L2 ball; later ones are boxes pushed through |W|.
    """
    lower, upper = _first_layer_bounds(network[0], x, eps)
    for layer in network[1:]:
        if isinstance(layer, Relu):
            lower, upper = jax.nn.relu(lower), jax.nn.relu(upper)
        else:
            center, radius = layer.forward((lower + upper) / 2), layer.magnitude((upper - lower) / 2)
            lower, upper = center - radius, center + radius
    return lower, upper


def _crown_bounds(network: Chain, x, eps) -> list[tuple[jax.Array, jax.Array]]:
    """(lower, upper) of every Relu's input, each by CROWN through the layers before it."""
    bounds = []
    for k, layer in enumerate(network):
        if not isinstance(layer, Relu):
            continue
        prefix = network[:k]
        if not bounds:  # one affine layer: exact
            bounds.append(_first_layer_bounds(prefix[0], x, eps))
            continue
        identity = jnp.eye(prefix[-1].bias.shape[0], dtype=x.dtype)
        slopes = [None] * len(bounds)
        lower = _backward(prefix, identity, bounds, slopes, x, eps)
        upper = -_backward(prefix, -identity, bounds, slopes, x, eps)
        bounds.append((lower, upper))
    return bounds


def margin_bounds(network: Chain, x, eps, rows, method: str = "alpha", steps: int = ALPHA_STEPS, alphas=None):
    """Lower bounds (m,) on the margins rows . f(x + delta) over ||delta||_2 <= eps, and the slopes used.

    `alphas` (one (m, n) array per Relu) start alpha-CROWN's optimisation (CROWN's slopes when None).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "ibp":
        # The margins folded into the last layer (as Gowal et al. do): one interval per margin, not per logit.
        last = network[-1]
        lower, _ = _interval((*network[:-1], Dense(rows @ last.weight, rows @ last.bias)), x, eps)
        return lower, alphas
    bounds = _crown_bounds(network, x, eps)
    if alphas is None:
        alphas = [_crown_slopes(lower, upper, rows.shape[0]) for lower, upper in bounds]
    if method == "crown" or not bounds:
        return _backward(network, rows, bounds, alphas, x, eps), alphas

    def bound(alphas):
        return _backward(network, rows, bounds, alphas, x, eps)

    optimiser = optax.adam(ALPHA_LR)

    def kept(better, new, old):
        return [jnp.where(better[:, None], a, b) for a, b in zip(new, old, strict=True)]

    def step(carry, _):
        alphas, state, best, best_alphas = carry
        value, pullback = jax.vjp(bound, alphas)
        improved = value > best
        best, best_alphas = jnp.maximum(value, best), kept(improved, alphas, best_alphas)
        # Ascent on every row's bound at once: the rows share no slope, so their sum's gradient is each one's.
        (grads,) = pullback(-jnp.ones_like(value))
        updates, state = optimiser.update(grads, state, alphas)
        alphas = [jnp.clip(a, 0, 1) for a in optax.apply_updates(alphas, updates)]
        return (alphas, state, best, best_alphas), None

    start = jnp.full(rows.shape[0], -jnp.inf, x.dtype)
    carry = (alphas, optimiser.init(alphas), start, alphas)
    (alphas, _, best, best_alphas), _ = jax.lax.scan(step, carry, None, length=steps)
    final = bound(alphas)
    return jnp.maximum(best, final), kept(final > best, alphas, best_alphas)


def certified_radius(
    network: Chain,
    x: jax.Array,
    label,
    target=None,
    *,
    method: str = "alpha",
    upper: jax.Array | float | None = None,
    bisections: int = BISECTIONS,
    steps: int = ALPHA_STEPS,
) -> Certificate:
    """The largest radius (to 2^-bisections of the bracket) at which `margin_bounds` proves the goal unreachable.

    `upper`: a radius known not to be certified (an attack's verified norm: the true minimum is
    at most that), the bracket then [0, upper]; without it, a factor-2 bracket is found first by
    bisection on the exponent. alpha-CROWN's slopes carry over from one radius to the next.
    """
    classes = apply(network, x).shape[0]
    rows, every = specification(classes, label, target)

    def holds(eps, alphas):
        values, alphas = margin_bounds(network, x, eps, rows, method, steps, alphas)
        positive = values > 0
        return (jnp.all(positive) if every else jnp.any(positive)), alphas

    ok_at_zero, alphas = holds(jnp.zeros((), x.dtype), None)
    if upper is None:
        # A factor-2 bracket first: bisection on the exponent k of scale 2^k, k in [-64, 64], from
        # a scale of the input's logits over the first layer's largest gain.
        scale = jnp.abs(apply(network, x)).max() / network[0].row_norms().max()
        scale = jnp.where(scale > 0, scale, 1).astype(x.dtype)

        def exponent(carry, _):
            low, high, alphas = carry  # 2^low certified (or low = -64), 2^high not (or high = 64)
            middle = jnp.floor((low + high) / 2)
            good, new = holds(scale * 2.0**middle, alphas)
            alphas = jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, alphas)
            return (jnp.where(good, middle, low), jnp.where(good, high, middle), alphas), None

        start = (jnp.asarray(-64.0, x.dtype), jnp.asarray(64.0, x.dtype), alphas)
        (low_k, _, alphas), _ = jax.lax.scan(exponent, start, None, length=7)
        low = jnp.where(low_k > -64, scale * 2.0**low_k, 0)  # -64: nothing certified down there
        high = scale * 2.0 ** (low_k + 1)
    else:
        low, high = jnp.zeros((), x.dtype), jnp.asarray(upper, x.dtype)

    def bisect(carry, _):
        low, high, alphas = carry
        middle = (low + high) / 2
        good, new = holds(middle, alphas)
        alphas = jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, alphas)
        return (jnp.where(good, middle, low), jnp.where(good, high, middle), alphas), None

    (low, _, _), _ = jax.lax.scan(bisect, (low, high, alphas), None, length=bisections)
    return Certificate(jnp.where(ok_at_zero, low, 0.0), ok_at_zero)
