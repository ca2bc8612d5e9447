"""Certified lower bounds on the minimal L2 perturbation of one input, by linear bound propagation.

Contract: ONE network and ONE input; vmap at the call site. A network is a `Chain`, a tuple of
layers applied in order to a flat input: `Dense(weight, bias)`, `Conv(kernel, bias, shape)` (valid,
stride 1, on a flat (H, W, C) image), `Relu()` and `MaxPool(shape)` (2x2, right after a Relu);
`check` says in one line why a chain is not one of these. `chain` builds one from the weights and
biases of `models.linear.LinearNet`, `models.cnn.certify_chain` from the MNIST CNN's parameters. A
network may also be an ONNX graph (`models.onnx_bounds.GraphNetwork`: residual adds, strided and
depthwise convolutions, ReLU6), which brings its own `apply`, `gain` and `margin_bounds` and is
bounded here by ibp, crown and alpha (branch and bound: chains only).
`certified_radius` returns a radius r
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
* the bounds on every hidden layer's input come the same way, from the layers before it (`crown`;
  behind a stack of convolutions, each output's coefficients kept as a patch of the input), or
  from interval arithmetic (`ibp`: Gowal et al. 2018, cheaper and looser); a max-pool is bounded
  below by its window's input with the largest lower bound and above by that input or the
  window's largest upper bound;
* `alpha`: the lower line of every unstable ReLU has a free slope in [0, 1], one per margin and
  neuron, chosen by projected gradient ascent on the bound (optax's Adam) -- any slope is sound,
  so the optimiser can only tighten;
* `certified_radius` bisects eps between 0 and an upper bound (an attack's norm), or within a
  factor-2 bracket found by bisection on eps's exponent: the bounds loosen as eps grows, so the
  certified set of radii is an interval;
* `bab` (Wang et al. 2021, beta-CROWN; Bunel et al. 2020, branching): where alpha-CROWN stops,
  `branch_and_bound` splits the ball into domains by the signs of unstable neurons, bounds each by
  alpha-CROWN with the splits' constraints as optimised Lagrange multipliers, and closes a domain
  its bounds prove or that is empty; targeted, each domain's rows also mix convexly. A split of a
  first-layer neuron cuts the ball by a halfspace, over which that layer's bounds are recomputed
  exactly (`halfspace_bounds`). A point
  of the ball that reaches the goal, met on the way, ends the search: `Certificate.crossing`.
  The radius is bisected between alpha-CROWN's and the upper end within a `Budget`.
Hand-written: the maintained verifiers (auto_LiRPA, alpha-beta-CROWN) are PyTorch, one network at a
time, and do not install beside torch 2.13; this compiles and vmaps over networks and inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

BOUNDS = ("ibp", "crown", "alpha")  # the rungs of `margin_bounds`
METHODS = (*BOUNDS, "bab")  # and alpha-CROWN's radius tightened by branch and bound
BISECTIONS = 24  # the radius to 2^-24 of its bracket: below float32's resolution of the bounds
ALPHA_STEPS = 40
ALPHA_LR = 0.1


class Budget(NamedTuple):
    """Branch and bound's budget, per radius tried: at most `rounds` rounds, each splitting the `batch`
    open domains with the lowest bounds on one neuron each; `domains` open at once; every child's
    slopes and multipliers warm-started from its parent's and optimised for `steps` steps; and
    `bisections` of the radius between alpha-CROWN's and the upper end (resolution 2^-bisections of it)."""

    domains: int = 256
    batch: int = 16
    rounds: int = 32
    steps: int = 20
    bisections: int = 8


BAB_BUDGET = Budget()


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


@functools.partial(jax.tree_util.register_dataclass, data_fields=["kernel", "bias"], meta_fields=["shape"])
@dataclasses.dataclass(frozen=True)
class Conv:
    """A VALID, stride-1 convolution of a flat (H, W, C) image (row-major NHWC), as the engine's CNN has.

    Its input and output are flat vectors like every layer's. `shape` (the input's (H, W, C)) is
    static, so a Conv passes through jit and vmap like Dense's arrays.
    """

    kernel: jax.Array  # (kh, kw, in channels, out channels), HWIO
    bias: jax.Array  # (out channels,)
    shape: tuple[int, int, int]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        (h, w, _), (kh, kw, _, c) = self.shape, self.kernel.shape
        return h - kh + 1, w - kw + 1, c

    def _linear(self, v: jax.Array, kernel: jax.Array | None = None) -> jax.Array:
        """The convolution without its bias, of (..., H*W*C) vectors."""
        lead = v.shape[:-1]
        image = v.reshape(-1, *self.shape)
        out = jax.lax.conv_general_dilated(
            image, self.kernel if kernel is None else kernel, (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST,
        )  # fmt: skip
        return out.reshape(*lead, -1)

    def _bias(self) -> jax.Array:
        return jnp.broadcast_to(self.bias, self.out_shape).reshape(-1)

    def forward(self, v: jax.Array) -> jax.Array:
        return self._linear(v) + self._bias()

    def magnitude(self, v: jax.Array) -> jax.Array:
        return self._linear(v, jnp.abs(self.kernel))

    def pull_back(self, coefficients: jax.Array) -> tuple[jax.Array, jax.Array]:
        zeros = jnp.zeros((coefficients.shape[0], math.prod(self.shape)), coefficients.dtype)
        (back,) = jax.linear_transpose(self._linear, zeros)(coefficients)
        return back, coefficients @ self._bias()

    def row_norms(self) -> jax.Array:
        ones = jnp.ones(math.prod(self.shape), self.kernel.dtype)
        return jnp.sqrt(self._linear(ones, self.kernel**2))


class Relu(NamedTuple):
    pass


@functools.partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=["shape"])
@dataclasses.dataclass(frozen=True)
class MaxPool:
    """A 2x2, stride-2 max-pool of a flat (H, W, C) image (even H and W) that follows a Relu.

    Its relaxation needs its input's bounds: those of the Relu before it, rectified. Below: the
    window's input with the largest lower bound (the max is at least any of them). Above: that
    input where its lower bound reaches every other input's upper bound (the max is it), else the
    window's largest upper bound, a constant.
    """

    shape: tuple[int, int, int]  # the input's (H, W, C)

    def windows(self, v: jax.Array) -> jax.Array:
        """(H/2 * W/2 * C, 4): each output's four inputs."""
        h, w, c = self.shape
        return v.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 4, 1, 3).reshape(-1, 4)

    def forward(self, v: jax.Array) -> jax.Array:
        return self.windows(v).max(axis=1)

    def relaxation(self, lower: jax.Array, upper: jax.Array):
        """Per output: the input index the lines pass through, whether the upper line is it too (else
        the constant), and that constant."""
        return pool_relaxation(self.windows(jnp.arange(math.prod(self.shape))), lower, upper)


def pool_relaxation(index: jax.Array, lower: jax.Array, upper: jax.Array):
    """A max-pool's lines, for windows `index` (outputs, window size) of inputs with bounds (lower,
    upper): per output, the input the lines pass through (the one with the largest lower bound),
    whether the upper line is it too (its lower bound reaches every other input's upper bound), and
    the window's largest upper bound, the upper line's constant otherwise."""
    low, high = lower[index], upper[index]
    pick = jnp.argmax(low, axis=1)
    chosen = jnp.take_along_axis(index, pick[:, None], 1)[:, 0]
    chosen_low = jnp.take_along_axis(low, pick[:, None], 1)[:, 0]
    others_high = jnp.where(jnp.arange(index.shape[1])[None, :] == pick[:, None], -jnp.inf, high).max(axis=1)
    return chosen, chosen_low >= others_high, high.max(axis=1)


Layer = Dense | Conv | Relu | MaxPool
Chain = tuple  # of Layers, starting and ending with an affine one (Dense or Conv)


def _width(layer) -> int:
    """How many outputs an affine layer has."""
    return math.prod(layer.out_shape) if isinstance(layer, Conv) else layer.bias.shape[0]


class Certificate(NamedTuple):
    radius: jax.Array  # (), no perturbation this short reaches the goal
    certified: jax.Array  # bool (), the radius is positive (the input is not already at the goal)
    # (), bab only: the shortest radius at which branch and bound met a point of the ball that
    # reaches the goal, an upper bound on the true minimum found without any attack (inf: none)
    crossing: jax.Array = jnp.inf


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
    """The network's logits at x (a chain's, or a graph's own `apply`)."""
    if not isinstance(network, tuple):
        return network.apply(x)
    for layer in network:
        x = jax.nn.relu(x) if isinstance(layer, Relu) else layer.forward(x)
    return x


def check(network: Chain) -> None:
    """ValueError (one line) for a chain `certify` cannot bound: a layer of another kind, an affine
    layer first or last missing, or a max-pool not right after a Relu."""
    for k, layer in enumerate(network):
        if not isinstance(layer, (Dense, Conv, Relu, MaxPool)):
            raise ValueError(f"certify bounds Dense, Conv, Relu and MaxPool layers, not {type(layer).__name__}")
        if isinstance(layer, MaxPool) and (k == 0 or not isinstance(network[k - 1], Relu)):
            raise ValueError("certify bounds a MaxPool only right after a Relu")
    if not network or not all(isinstance(network[k], (Dense, Conv)) for k in (0, -1)):
        raise ValueError("a certify chain starts and ends with an affine layer (Dense or Conv)")


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


def relu_pull_back(coefficients, lower, upper, alpha=None) -> tuple[jax.Array, jax.Array]:
    """Coefficients (m, n) on relu(z) as coefficients on z, and the constant they add, for z in [lower,
    upper]: below a positive coefficient the lower line bounds from below, below a negative one the
    upper line (`_relaxation`; `alpha` the lower lines' slopes, CROWN's when None)."""
    relaxed = _relaxation(lower, upper, alpha, coefficients.shape[0])
    positive = coefficients >= 0
    slope = jnp.where(positive, relaxed.lower_slope, relaxed.upper_slope)
    constant = jnp.where(positive, 0.0, coefficients * relaxed.upper_intercept).sum(1)
    return coefficients * slope, constant


def _first_layer_bounds(layer: Dense, x, eps) -> tuple[jax.Array, jax.Array]:
    """Exact bounds of an affine layer over the L2 ball: W x + b -+ eps ||W_i||."""
    center, radius = layer.forward(x), eps * layer.row_norms()
    return center - radius, center + radius


def _split_bounds(lower, upper, split):
    """A Relu input's bounds inside a domain of branch and bound: split +1 (z >= 0) or -1 (z <= 0), or 0 (free)."""
    if split is None:
        return lower, upper
    return jnp.where(split > 0, jnp.maximum(lower, 0), lower), jnp.where(split < 0, jnp.minimum(upper, 0), upper)


def _backward(network: Chain, coefficients, bounds, alphas, x, eps, betas=None, splits=None):
    """Lower bounds (m,) over the ball on the margins `coefficients` (m, out) of the chain's output.

    `bounds` holds (lower, upper) of every Relu's input, `alphas` its lower slopes (m, n) or None.
    Branch and bound's domains add `splits` (n,) per Relu, each neuron's sign constraint s z >= 0
    (s = 0: none), and `betas` (m, n) >= 0, their Lagrange multipliers (beta-CROWN, Wang et al.
    2021): on the domain the margin is at least its bound minus sum beta s z, for any beta >= 0.
    Also returns every Relu's output coefficients (m, n), from which branching scores come, and the
    input's coefficients a (m, d): the ball's point x - eps a / ||a|| attains each row's bound.
    """
    constant = jnp.zeros(coefficients.shape[0], coefficients.dtype)
    relu = len(bounds)
    influence = [None] * relu
    for layer in reversed(network):
        if isinstance(layer, MaxPool):  # its inputs are the Relu's before it: its bounds, rectified
            before = _split_bounds(*bounds[relu - 1], None if splits is None else splits[relu - 1])
            coefficients, added = _pool_pull_back(layer, coefficients, *map(jax.nn.relu, before))
            constant = constant + added
        elif isinstance(layer, Relu):
            relu -= 1
            split = None if splits is None else splits[relu]
            lower, upper = _split_bounds(*bounds[relu], split)
            influence[relu] = coefficients
            coefficients, added = relu_pull_back(coefficients, lower, upper, alphas[relu])
            constant = constant + added
            if betas is not None:
                coefficients = coefficients - betas[relu] * split
        else:
            coefficients, added = layer.pull_back(coefficients)
            constant = constant + added
    # a . (x + delta) + b over ||delta|| <= eps: its minimum is a . x + b - eps ||a||. The norm's
    # gradient at a = 0 (a row a max-pool's constant cut off) is 0 this way, not NaN; the tiny term
    # only lowers the bound.
    norm = jnp.sqrt(jnp.sum(coefficients**2, axis=1) + jnp.finfo(coefficients.dtype).tiny)
    return coefficients @ x + constant - eps * norm, influence, coefficients


def _pool_pull_back(layer: MaxPool, coefficients, lower, upper) -> tuple[jax.Array, jax.Array]:
    """A max-pool's relaxation: coefficients (m, out) on its outputs as coefficients (m, in) on its
    inputs and the constant they add (`pool_pull_back`)."""
    return pool_pull_back(layer.relaxation(lower, upper), coefficients, lower.shape[0])


def pool_pull_back(relaxation, coefficients, inputs: int) -> tuple[jax.Array, jax.Array]:
    """Coefficients (m, out) on a max-pool's outputs as coefficients (m, inputs) on its inputs, and the
    constant they add, for its `pool_relaxation`: a positive coefficient takes the line below, a
    negative one the line above (the chosen input where it is exact, else the constant)."""
    chosen, exact, top = relaxation
    line = (coefficients >= 0) | exact[None, :]
    back = jnp.zeros((coefficients.shape[0], inputs), coefficients.dtype)
    back = back.at[:, chosen].add(jnp.where(line, coefficients, 0))  # overlapping windows add up
    return back, jnp.where(line, 0, coefficients * top).sum(1)


def _patches(image: jax.Array, size: tuple[int, int], grid: tuple[int, int]) -> jax.Array:
    """(grid_h * grid_w, h, w, C): the (h, w) patch of an (H, W, C) image at every position of the grid."""
    (h, w), (rows, columns) = size, grid
    shifted = [[image[i : i + rows, j : j + columns] for j in range(w)] for i in range(h)]
    return jnp.asarray(shifted).transpose(2, 3, 0, 1, 4).reshape(rows * columns, h, w, image.shape[-1])


def _patch_bounds(prefix: Chain, bounds, x, eps) -> tuple[jax.Array, jax.Array]:
    """CROWN's (lower, upper) of the last Conv's outputs, when every layer before it is a Conv or a Relu.

    The same bounds as carrying an identity back through the layers, but each output's coefficients
    are kept as a patch of the input, the only part they touch (auto_LiRPA's patches, Xu et al.
    2020): for a valid stride-1 stack every patch starts where its output sits and grows by each
    kernel's size less one. An identity over all outputs would be a matrix of their number squared.
    """
    last = prefix[-1]
    rows, columns, channels = last.out_shape
    positions = rows * columns
    kernel = jnp.moveaxis(last.kernel, 3, 0)  # (out, kh, kw, in): each output channel's patch
    patch = jnp.broadcast_to(jnp.concatenate([kernel, -kernel])[None], (positions, 2 * channels, *kernel.shape[1:]))
    constant = jnp.broadcast_to(jnp.concatenate([last.bias, -last.bias]), (positions, 2 * channels))
    relu = len(bounds)
    for layer in reversed(prefix[:-1]):
        size = patch.shape[2:4]
        if isinstance(layer, Relu):
            relu -= 1
            lower, upper = bounds[relu]
            relaxed = _relaxation(lower, upper, None, 1)
            shape = (size[0] + rows - 1, size[1] + columns - 1, patch.shape[-1])

            def around(values, shape=shape, size=size):
                return _patches(values.reshape(shape), size, (rows, columns))[:, None]

            positive = patch >= 0
            slope = jnp.where(positive, around(relaxed.lower_slope[0]), around(relaxed.upper_slope))
            constant = constant + jnp.where(positive, 0, patch * around(relaxed.upper_intercept)).sum((2, 3, 4))
            patch = patch * slope
        else:  # a Conv: each patch grows by the kernel, onto the layer's input channels
            kh, kw, _, _ = layer.kernel.shape
            constant = constant + patch.sum((2, 3)) @ layer.bias
            grown = jnp.zeros((*patch.shape[:2], size[0] + kh - 1, size[1] + kw - 1, layer.kernel.shape[2]), x.dtype)
            for i in range(kh):
                for j in range(kw):
                    moved = jnp.einsum("prhwc,kc->prhwk", patch, layer.kernel[i, j], precision="highest")
                    grown = grown.at[:, :, i : i + size[0], j : j + size[1]].add(moved)
            patch = grown
    inputs = _patches(x.reshape(prefix[0].shape), patch.shape[2:4], (rows, columns))[:, None]
    value = (patch * inputs).sum((2, 3, 4)) + constant - eps * jnp.sqrt((patch**2).sum((2, 3, 4)))
    return value[:, :channels].reshape(-1), -value[:, channels:].reshape(-1)


def _interval(network: Chain, x, eps) -> tuple[jax.Array, jax.Array]:
    """Interval arithmetic: the output's (lower, upper) over the ball.

    The first layer's interval is exact over the L2 ball; later ones are boxes pushed through |W|.
    """
    lower, upper = _first_layer_bounds(network[0], x, eps)
    for layer in network[1:]:
        if isinstance(layer, Relu):
            lower, upper = jax.nn.relu(lower), jax.nn.relu(upper)
        elif isinstance(layer, MaxPool):  # monotone in each input
            lower, upper = layer.forward(lower), layer.forward(upper)
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
        if all(isinstance(before, (Conv, Relu)) for before in prefix):
            bounds.append(_patch_bounds(prefix, bounds, x, eps))
            continue
        identity = jnp.eye(_width(prefix[-1]), dtype=x.dtype)
        slopes = [None] * len(bounds)
        lower = _backward(prefix, identity, bounds, slopes, x, eps)[0]
        upper = -_backward(prefix, -identity, bounds, slopes, x, eps)[0]
        bounds.append((lower, upper))
    return bounds


def unstable_neurons(network: Chain, x, eps) -> list[jax.Array]:
    """Per Relu, how many of its neurons CROWN's bounds over the ball leave unstable (lower < 0 < upper):
    the ones the relaxation loosens and branch and bound would have to split."""
    return [jnp.sum((lower < 0) & (upper > 0)) for lower, upper in _crown_bounds(network, x, eps)]


def margin_bounds(network: Chain, x, eps, rows, method: str = "alpha", steps: int = ALPHA_STEPS, alphas=None):
    """Lower bounds (m,) on the margins rows . f(x + delta) over ||delta||_2 <= eps, and the slopes used.

    `alphas` (one (m, n) array per Relu) start alpha-CROWN's optimisation (CROWN's slopes when None).
    """
    if method not in BOUNDS:
        raise ValueError(f"method must be one of {', '.join(BOUNDS)}, got {method!r}")
    if not isinstance(network, tuple):  # a graph (`models.onnx_bounds`) bounds itself
        return network.margin_bounds(x, eps, rows, method, steps, alphas)
    if method == "ibp":
        # The margins folded into the last layer (as Gowal et al. do): one interval per margin, not per logit.
        last = network[-1]
        lower, _ = _interval((*network[:-1], Dense(rows @ last.weight, rows @ last.bias)), x, eps)
        return lower, alphas
    bounds = _crown_bounds(network, x, eps)
    crown = [_crown_slopes(lower, upper, rows.shape[0]) for lower, upper in bounds]

    def bound(slopes):
        return _backward(network, rows, bounds, slopes, x, eps)[0]

    return optimised_bounds(bound, crown, method, steps, alphas)


def optimised_bounds(bound, crown: list, method: str, steps: int = ALPHA_STEPS, alphas=None):
    """`bound(slopes)` at CROWN's slopes `crown` (method "crown"), or ascended by alpha-CROWN from
    `alphas` (CROWN's when None); and the slopes. Slopes carried over from another radius may start
    below CROWN's own at this one: the better of the two is kept per row."""
    if method == "crown" or not crown:
        return bound(crown if alphas is None else alphas), alphas
    if alphas is None:
        return _ascend(bound, crown, steps)
    values, alphas = _ascend(bound, alphas, steps)
    plain = bound(crown)
    better = plain > values
    return jnp.maximum(values, plain), [jnp.where(better[:, None], c, a) for c, a in zip(crown, alphas, strict=True)]


def _simplex(v: jax.Array) -> jax.Array:
    """Each row of v projected onto the probability simplex (Duchi et al. 2008: sort, threshold)."""
    u = -jnp.sort(-v, axis=-1)
    excess = jnp.cumsum(u, axis=-1) - 1
    count = jnp.sum(u - excess / jnp.arange(1, v.shape[-1] + 1) > 0, axis=-1, keepdims=True)
    return jnp.maximum(v - jnp.take_along_axis(excess, count - 1, axis=-1) / count, 0)


def _ascend(bound, parameters, steps: int):
    """Projected Adam ascent of every row of bound(parameters) (m,), and the best bounds and parameters seen.

    `parameters` is a list of (m, n) arrays, each row's own: relaxation slopes, kept in [0, 1], or
    a tuple (slopes, multipliers), the multipliers kept >= 0, and optionally each row's mixture of
    the specification's rows, kept on the simplex. Any such parameters give a sound bound, so the
    optimiser can only tighten.
    """
    optimiser = optax.adam(ALPHA_LR)

    def project(parameters):
        if isinstance(parameters, tuple):  # (slopes, multipliers[, mixtures])
            alphas, betas, *mixtures = parameters
            return project(alphas), jax.tree_util.tree_map(lambda b: jnp.maximum(b, 0), betas), *map(_simplex, mixtures)
        return jax.tree_util.tree_map(lambda a: jnp.clip(a, 0, 1), parameters)

    def kept(better, new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(better[:, None], a, b), new, old)

    def step(carry, _):
        parameters, state, best, best_parameters = carry
        value, pullback = jax.vjp(bound, parameters)
        value = jnp.where(jnp.isnan(value), -jnp.inf, value)  # a NaN bound proves nothing
        improved = value > best
        best, best_parameters = jnp.maximum(value, best), kept(improved, parameters, best_parameters)
        # Ascent on every row's bound at once: the rows share no parameter, so their sum's gradient is each one's.
        (grads,) = pullback(-jnp.ones_like(value))
        grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0), grads)
        updates, state = optimiser.update(grads, state, parameters)
        return (project(optax.apply_updates(parameters, updates)), state, best, best_parameters), None

    leaf = jax.tree_util.tree_leaves(parameters)[0]
    start = jnp.full(leaf.shape[0], -jnp.inf, leaf.dtype)
    carry = (parameters, optimiser.init(parameters), start, parameters)
    (parameters, _, best, best_parameters), _ = jax.lax.scan(step, carry, None, length=steps)
    final = bound(parameters)
    final = jnp.where(jnp.isnan(final), -jnp.inf, final)
    return jnp.maximum(best, final), kept(final > best, parameters, best_parameters)


class Verdict(NamedTuple):
    verified: jax.Array  # bool (): every domain of the ball was proved to keep the goal unreachable
    falsified: jax.Array  # bool (): a point of the ball reaches the goal (the true minimum is at most eps)
    domains: jax.Array  # int (): domains bounded, the root included
    open: jax.Array  # int (): domains left unproved when it stopped (0 when verified)


def halfspace_bounds(layer: Dense, x, eps, lower, upper, normal, offset):
    """Bounds on the affine layer's outputs W (x + delta) + b over the ball ||delta|| <= eps cut by one
    halfspace normal . delta >= offset, intersected with `lower`, `upper` (bounds over a larger set).

    Each side is the Lagrange dual of a linear function over that cap: for any mu >= 0,
    min w . delta >= mu offset - eps ||w - mu normal||, maximised over mu in closed form (the
    stationary point of a concave function of one variable, clipped at 0). Any mu gives a sound
    bound, so the closed form's rounding only loosens. A cap that misses the ball (offset >
    eps ||normal||) is empty: its bounds cross (lower > upper).
    """
    squared = normal @ normal
    inside = jnp.maximum(eps**2 - offset**2 / squared, 0)  # the cap's plane cuts the ball: > 0
    centre = layer.forward(x)

    def lowest(weight):  # (out, d) rows: min over the cap of weight . delta
        along = weight @ normal / squared
        # Norms of differences taken as such, not expanded: w and mu n nearly cancel near the optimum.
        across = jnp.linalg.norm(weight - along[:, None] * normal, axis=1)  # w's part in the cap's plane
        # Stationarity eps (mu - along) |n|^2 = offset ||w - mu n||, solved for mu.
        shift = offset * across / jnp.sqrt(jnp.maximum(inside, jnp.finfo(x.dtype).tiny)) / squared
        mu = jnp.where(inside > 0, jnp.maximum(along + shift, 0), 0)
        return mu * offset - eps * jnp.linalg.norm(weight - mu[:, None] * normal, axis=1)

    empty = offset > eps * jnp.sqrt(squared)
    low = jnp.where(empty, jnp.inf, centre + lowest(layer.weight))
    high = jnp.where(empty, -jnp.inf, centre - lowest(-layer.weight))
    return jnp.maximum(lower, low), jnp.minimum(upper, high)


class _Domains(NamedTuple):
    """Branch and bound's slots: a domain is the ball with some neurons' signs fixed."""

    split: jax.Array  # (D, N) int8 over every Relu's neurons: +1 z >= 0, -1 z <= 0, 0 free
    lower: jax.Array  # (D, N) the Relu inputs' bounds over the domain (the first Relu's: cut by its splits)
    upper: jax.Array  # (D, N)
    alphas: jax.Array  # (D, m, N) its slopes
    betas: jax.Array  # (D, m, N) its multipliers
    score: jax.Array  # (D, N) branching scores: > 0 for a free unstable neuron
    worst: jax.Array  # (D,) its rows' bounds, as one number: below 0 while unproved
    open: jax.Array  # (D,) bool, the slot holds an unproved domain


def _write(slots: _Domains, where, children: _Domains, keep) -> _Domains:
    """Slots `where` (distinct) replaced by `children` where `keep`."""

    def one(old, new):
        return old.at[where].set(jnp.where(keep.reshape(-1, *[1] * (new.ndim - 1)), new, old[where]))

    return jax.tree_util.tree_map(one, slots, children)


def branch_and_bound(network: Chain, x, eps, rows, every: bool = True, budget: Budget = BAB_BUDGET) -> Verdict:
    """Whether the margins `rows` stay positive (all if `every`, else one) over ||delta||_2 <= eps, by branch and bound.

    Each round splits the `budget.batch` open domains with the lowest bounds, each on the free
    unstable neuron with the largest score -- the margins' negative coefficients on it times its
    upper line's height u (-l) / (u - l), what the chord gives away (BaBSR's intercept score, Bunel
    et al. 2020) -- into z >= 0 and z <= 0, and bounds both children by alpha-beta-CROWN: split
    neurons are exact, and their constraints enter through optimised multipliers. A split of a
    first-layer neuron is a halfspace of the input, so the child's first-layer bounds are
    recomputed over the ball cut by it (`halfspace_bounds`), and neurons that the cut keeps off
    their kink become stable: in the relu experiment's nets that closes brackets that splitting
    alone does not. A child whose bounds prove the goal
    unreachable, or whose constraints contradict its bounds (an empty domain), is closed. Sound
    whenever it says verified; it says not verified when a domain cannot be split further, the
    slots run out, or the rounds do.
    """
    bounds = _crown_bounds(network, x, eps)
    if not bounds:
        values, _ = margin_bounds(network, x, eps, rows, "crown")
        verified = jnp.all(values > 0) if every else jnp.any(values > 0)
        return Verdict(verified, jnp.asarray(False), jnp.asarray(1), (~verified).astype(int))
    domains, batch, rounds, steps, _ = budget
    sizes = [lower.shape[0] for lower, _ in bounds]
    offsets = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    lower, upper = (jnp.concatenate(side) for side in zip(*bounds, strict=True))
    m, total, first = rows.shape[0], offsets[-1], sizes[0]
    # A first Relu right after a dense layer on the input: its splits are halfspaces of the input.
    cuts = isinstance(network[0], Dense) and isinstance(network[1], Relu)

    def per_layer(flat):
        return [flat[..., offsets[k] : offsets[k + 1]] for k in range(len(sizes))]

    def bound(split, low, high, parameters):
        alphas, betas, *mixture = parameters
        # Targeted, one positive row suffices, and so does any convex mixture of the rows (it is at
        # most their largest): a domain split between the rows' regions needs one.
        mixed = mixture[0] @ rows if mixture else rows
        domain = list(zip(per_layer(low), per_layer(high), strict=True))
        return _backward(network, mixed, domain, per_layer(alphas), x, eps, per_layer(betas), per_layer(split))

    def child(split, low, high, neuron, side):
        """A domain's child with `neuron` fixed to `side`: its split and bounds."""
        split = split.at[neuron].set(side)
        if cuts:
            layer = network[0]
            row = jnp.minimum(neuron, first - 1)  # any first-layer row where the split is deeper: unused
            normal = side * layer.weight[row]
            offset = -side * (layer.weight[row] @ x + layer.bias[row])
            cut_low, cut_high = halfspace_bounds(layer, x, eps, low[:first], high[:first], normal, offset)
            in_first = neuron < first
            low = low.at[:first].set(jnp.where(in_first, cut_low, low[:first]))
            high = high.at[:first].set(jnp.where(in_first, cut_high, high[:first]))
        return split, low, high

    @functools.partial(jax.vmap, in_axes=(0, 0, 0, None))
    def child_or_parent(parent: _Domains, neuron, splittable, side):
        """A picked domain's child (split, lower, upper) on `neuron`'s `side`, or the domain where not splittable."""
        new = child(parent.split, parent.lower, parent.upper, neuron, jnp.int8(side))
        return jax.tree_util.tree_map(
            lambda a, b: jnp.where(splittable, a, b), new, (parent.split, parent.lower, parent.upper)
        )

    def reaches(logits):
        margins = rows @ logits
        return jnp.any(margins < 0) if every else jnp.all(margins < 0)

    def evaluate(split, low, high, alphas, betas, steps):
        """One domain: (worst, open, alphas, betas, branching scores, whether a point of it reaches the goal)."""
        mixture = () if every else (jnp.eye(m, dtype=x.dtype),)
        values, (alphas, betas, *mixture) = _ascend(
            lambda p: bound(split, low, high, p)[0], (alphas, betas, *mixture), steps
        )
        _, influence, slopes = bound(split, low, high, (alphas, betas, *mixture))
        # Each row's bound is attained at x - eps a / ||a|| of the relaxed net: try those on the net.
        norms = jnp.linalg.norm(slopes, axis=1, keepdims=True)
        points = x - eps * slopes / jnp.where(norms > 0, norms, 1)
        falsified = jnp.any(jax.vmap(lambda p: reaches(apply(network, p)))(points))
        cut_low, cut_high = _split_bounds(low, high, split)
        # The rows' bounds as one number; a domain whose constraints contradict its bounds is empty.
        worst = jnp.where(jnp.any(cut_low > cut_high), jnp.inf, values.min() if every else values.max())
        proved = worst > 0
        worst = jnp.where(proved, jnp.inf, worst)
        free = (split == 0) & (cut_low < 0) & (cut_high > 0)
        height = jnp.where(free, cut_high * -cut_low / jnp.where(free, cut_high - cut_low, 1), 0)
        # Below a negative coefficient the chord gives away up to that much; below a positive one the
        # optimised lower line little (a small share keeps such neurons splittable once alone).
        coefficient = jnp.concatenate(influence, axis=1)
        weight = jnp.maximum(-coefficient, 0).sum(0) + 1e-3 * jnp.abs(coefficient).sum(0)
        score = jnp.where(free, weight * height + 1e-30, 0)
        return worst, ~proved, alphas, betas, score, falsified

    zeros = jnp.zeros((m, total), x.dtype)
    root_split = jnp.zeros(total, jnp.int8)
    root = evaluate(root_split, lower, upper, _crown_slopes(lower, upper, m), zeros, ALPHA_STEPS)
    slots = _Domains(
        jnp.zeros((domains, total), jnp.int8).at[0].set(root_split),
        jnp.zeros((domains, total), x.dtype).at[0].set(lower),
        jnp.zeros((domains, total), x.dtype).at[0].set(upper),
        jnp.zeros((domains, m, total), x.dtype).at[0].set(root[2]),
        jnp.zeros((domains, m, total), x.dtype),
        jnp.zeros((domains, total), x.dtype).at[0].set(root[4]),
        jnp.full(domains, jnp.inf, x.dtype).at[0].set(root[0]),
        jnp.zeros(domains, bool).at[0].set(root[1]),
    )
    children = jax.vmap(evaluate, in_axes=(0, 0, 0, 0, 0, None))

    def more(state):
        slots, done_rounds, _, stopped, falsified = state
        return (done_rounds < rounds) & jnp.any(slots.open) & ~stopped & ~falsified

    def split_round(state):
        slots, done_rounds, count, _, falsified = state
        _, pick = jax.lax.top_k(-jnp.where(slots.open, slots.worst, jnp.inf), batch)
        splittable = slots.score[pick].max(1) > 0
        # Ties in top_k go to the lower index, so the free slots are the first `batch` closed ones.
        _, free = jax.lax.top_k((~slots.open).astype(jnp.int8), batch)
        stopped = (~slots.open).sum() < batch
        valid = slots.open[pick] & ~stopped
        parent = jax.tree_util.tree_map(lambda a: a[pick], slots)
        neuron = jnp.argmax(parent.score, axis=1)
        # A domain with every unstable neuron fixed is a polytope on which the net is affine: its
        # bound is exact once the multipliers converge, so it is optimised further, not split.
        both = [child_or_parent(parent, neuron, splittable, side) for side in (1, -1)]
        split, low, high = (jnp.concatenate(side) for side in zip(*both, strict=True))
        parents = lambda a: jnp.concatenate([a, a])  # noqa: E731
        worst, open_, alphas, betas, score, found = children(
            split, low, high, parents(parent.alphas), parents(parent.betas), steps
        )
        new = _Domains(split, low, high, alphas, betas, score, worst, open_)
        written = (valid, valid & splittable)
        for side, where in ((0, pick), (1, free)):
            slots = _write(
                slots,
                where,
                jax.tree_util.tree_map(lambda a, s=side: a[s * batch : (s + 1) * batch], new),
                written[side],
            )
        found = falsified | jnp.any(found & jnp.concatenate(written))
        return slots, done_rounds + 1, count + valid.sum() + written[1].sum(), stopped, found

    state = (slots, jnp.asarray(0), jnp.asarray(1), jnp.asarray(False), root[5])
    slots, _, count, _, falsified = jax.lax.while_loop(more, split_round, state)
    still_open = slots.open.sum()
    return Verdict(still_open == 0, falsified, count, still_open)


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
    budget: Budget = BAB_BUDGET,
) -> Certificate:
    """The largest radius (to 2^-bisections of the bracket) at which `margin_bounds` proves the goal unreachable.

    `upper`: a radius known not to be certified (an attack's verified norm: the true minimum is
    at most that), the bracket then [0, upper]; without it, a factor-2 bracket is found first by
    bisection on the exponent. alpha-CROWN's slopes carry over from one radius to the next.
    `bab`: alpha-CROWN's radius r first (found without `upper`), then `budget.bisections` of
    [r, upper] by `branch_and_bound` ([r, 2r] where `upper` is None or not finite).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "bab" and not isinstance(network, tuple):
        raise ValueError("branch and bound bounds chains only; a graph's radius comes from ibp, crown or alpha")
    classes = apply(network, x).shape[0]
    rows, every = specification(classes, label, target)
    bound_method = "alpha" if method == "bab" else method

    def holds(eps, alphas):
        values, alphas = margin_bounds(network, x, eps, rows, bound_method, steps, alphas)
        positive = values > 0
        return (jnp.all(positive) if every else jnp.any(positive)), alphas

    ok_at_zero, alphas = holds(jnp.zeros((), x.dtype), None)
    if upper is None or method == "bab":
        # A factor-2 bracket first: bisection on the exponent k of scale 2^k, k in [-64, 64], from
        # a scale of the input's logits over the first layer's largest gain.
        gain = network[0].row_norms().max() if isinstance(network, tuple) else network.gain(x)
        scale = jnp.abs(apply(network, x)).max() / gain
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
    if method == "bab":
        upper = jnp.asarray(jnp.inf if upper is None else upper, x.dtype)
        high = jnp.where(jnp.isfinite(upper), jnp.maximum(upper, low), 2 * low)

        def branch(carry, _):
            low, high, crossing = carry
            middle = (low + high) / 2
            verdict = branch_and_bound(network, x, middle, rows, every, budget)
            good = verdict.verified
            crossing = jnp.where(verdict.falsified, jnp.minimum(crossing, middle), crossing)
            return (jnp.where(good, middle, low), jnp.where(good, high, middle), crossing), None

        start = (low, high, jnp.asarray(jnp.inf, x.dtype))
        (low, _, crossing), _ = jax.lax.scan(branch, start, None, length=budget.bisections)
        return Certificate(jnp.where(ok_at_zero, low, 0.0), ok_at_zero, crossing)
    return Certificate(jnp.where(ok_at_zero, low, 0.0), ok_at_zero, jnp.asarray(jnp.inf, x.dtype))
