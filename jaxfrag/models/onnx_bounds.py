"""An ONNX graph as a network `jaxfrag.certify` bounds: certified radii for the graphs `onnx_graph` runs.

Contract:
* `graph_network(model, input_shape=None, preprocessing=None, hidden="crown", dtype=None) -> GraphNetwork`:
  `model` an ONNX file or `onnx.ModelProto`. The network takes ONE flat input: the graph's
  input without its batch axis, flattened, or with `preprocessing` (`models.imagenet.Preprocessing`)
  flat (H, W, C) pixels normalised and laid out inside it, as `models.imagenet.classifier` does,
  so radii are in pixel units. `certify.certified_radius(network, x, label, target, method=...)`
  then works as for a chain, with ibp, crown or alpha (branch and bound: chains only).
  `OnnxError` (a ValueError, one line, naming the node) for a graph it cannot bound.
* What it bounds: every node computed from weights alone is evaluated once, when the network is
  built; of the nodes the input reaches, affine ones (`AFFINE`: Conv with any stride, padding and
  groups -- depthwise included --, Gemm and MatMul with a constant operand, BatchNormalization,
  Add and Sub -- residual adds --, Mul and Div by a constant, the shape ops, Pad, average pools,
  ReduceMean), Relu, Clip with constant ends (ReLU6), MaxPool without padding, and a Softmax as the
  last node, which is dropped: it keeps the logits' order, so no goal changes.
* `hidden`: how every nonlinearity's input is bounded. "crown": CROWN back to the input, one
  backward pass per neuron in blocks (`BLOCK`), intersected with interval arithmetic; the bounds
  a chain gets. "ibp": interval arithmetic only, for graphs with too many neurons for that (a
  mobile ImageNet network has about 10^6). The margins themselves are CROWN's (or alpha-CROWN's)
  either way; method "ibp" carries them back through the affine nodes after the last
  nonlinearities and takes those nonlinearities' boxes (Gowal et al.'s folding).

How: the graph's values keep their ONNX shapes (batch axis 1). An affine node's bound propagation
is the interpreter's own op: its transpose is `jax.vjp` at zero inputs and its offset the op at
zero, so every affine op the interpreter runs needs no code here but its interval rule
(`_affine_radius`). A Clip is a + relu(z - a) - relu(z - b), each relu relaxed as a chain's. The
interval rule keeps each value's exact L2 bounds while it is an affine map of the input whose
rows are orthogonal (the input, normalised, padded, reshaped) and meets its first mixing op:
that op's output rows have norms sqrt(W^2 r^2) (so a first convolution's bounds are exact, as a
chain's first layer's are); after that, boxes through |W|. Hand-written: the verifiers that read
ONNX (auto_LiRPA, alpha-beta-CROWN) are PyTorch and do not install beside torch 2.13.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from jaxfrag import certify
from jaxfrag.models import onnx_graph
from jaxfrag.models.onnx_graph import OPS, Node, OnnxError

SELECTION = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Pad", "Identity", "Dropout")
WEIGHTED = ("Conv", "Gemm", "MatMul", "BatchNormalization", "Mul", "Div")
AVERAGES = ("AveragePool", "GlobalAveragePool", "ReduceMean")
AFFINE = (*WEIGHTED, "Add", "Sub", *SELECTION, *AVERAGES)
NONLINEAR = ("Relu", "Clip", "MaxPool")
HIDDEN = ("crown", "ibp")
BLOCK = 1 << 23  # coefficients per block of CROWN's hidden-bound rows: (rows, largest value) <= 32 MB in float32
ROWS = 1 << 25  # and per block of margin rows: 128 MB per coefficient tensor, about 2 GB for a whole backward pass


class Step(NamedTuple):
    node: Node
    traced: tuple[bool, ...]  # per input: computed from the network's input (else a constant)
    ends: tuple = ()  # a Clip's (low, high), None where open
    windows: np.ndarray | None = None  # a MaxPool's (outputs, window) input indices


class _Plan:
    """The graph's static part: its steps and every value's shape. Hashed by identity, as jit's static data."""

    def __init__(self, steps, constants, input_name, output, shapes, input_shape, preprocessing, hidden):
        self.steps, self.constants, self.input_name, self.output = steps, constants, input_name, output
        self.shapes, self.input_shape, self.preprocessing, self.hidden = shapes, input_shape, preprocessing, hidden
        self.largest = max(math.prod(shape) for shape in shapes.values())


def _unsupported(node: Node, why: str = "") -> OnnxError:
    ops = ", ".join((*AFFINE, *NONLINEAR))
    return OnnxError(
        f"certify cannot bound {node.where()}{why}; it bounds {ops} (affine ops with constant weights, Clip with "
        "constant ends, MaxPool without padding) and a last Softmax"
    )


def _step(node: Node, traced: tuple[bool, ...], values: dict, shape: tuple[int, ...]) -> Step:
    """The node as a bound-propagation step, or OnnxError if it is not one `certify` can bound."""
    op, count = node.op, sum(traced)
    if op == "Relu":
        return Step(node, traced)
    if op == "Clip":
        if any(traced[1:]):
            raise _unsupported(node, " (its ends depend on the input)")
        if node.opset < 11:
            low, high = node.attrs.get("min"), node.attrs.get("max")
        else:
            ends = [node.inputs[k] if len(node.inputs) > k else "" for k in (1, 2)]
            low, high = (float(values[name]) if name else None for name in ends)
        return Step(node, traced, (low, high))
    if op == "MaxPool":
        pads, extra, window = onnx_graph._pool_windows(node, np.zeros(shape))
        if (
            len(shape) != 4
            or any(p for pair in pads for p in pair)
            or any(extra)
            or any(d != 1 for d in window["window_dilation"])
        ):
            raise _unsupported(node, " (not 2-D, or with padding or dilation)")
        if len(node.outputs) > 1 and node.outputs[1]:
            raise _unsupported(node, " (its Indices output)")
        return Step(node, traced, windows=_pool_windows(shape, window))
    if op == "Softmax":  # allowed as the last node only (`graph_network` drops it)
        return Step(node, traced)
    if op not in AFFINE:
        raise _unsupported(node)
    one_traced = {"Mul": count == 1, "MatMul": count == 1, "Gemm": count == 1 and not any(traced[2:])}
    if not one_traced.get(op, True) or (op in ("Div", "Conv", "BatchNormalization", "Pad") and any(traced[1:])):
        raise _unsupported(node, " (it multiplies the input by the input, or takes weights from it)")
    return Step(node, traced)


def _pool_windows(shape: tuple[int, ...], window: dict) -> np.ndarray:
    """(outputs, kh * kw): each output's window as flat input indices, outputs in NCHW order."""
    _, channels, height, width = shape
    (kh, kw), (sh, sw) = window["window_dimensions"][2:], window["window_strides"][2:]
    rows, columns = (height - kh) // sh + 1, (width - kw) // sw + 1
    index = np.arange(channels * height * width).reshape(channels, height, width)
    taps = [
        index[:, a : a + sh * (rows - 1) + 1 : sh, b : b + sw * (columns - 1) + 1 : sw]
        for a in range(kh)
        for b in range(kw)
    ]  # fmt: skip
    return np.stack(taps, axis=-1).reshape(-1, kh * kw)


def _clip_lines(lower, upper, low, high, lower_alpha=None, upper_alpha=None):
    """Lines below and above clip(z, low, high) for z in [lower, upper], per neuron: (slope, intercept) twice.

    Where the interval holds no kink the clip is exact (a constant or z). Where it holds the lower
    kink only, the clip is convex there: the chord lies above, and below any line through (low, low)
    of slope in [0, 1]. Where it holds the upper kink only, concave: the chord below, and above any
    line through (high, high) of slope in [0, 1]. Where it holds both, those two tangent lines' slopes
    are capped so that they stay inside [low, high] on the whole interval: at most
    (high - low) / (upper - low) below and (high - low) / (high - lower) above. The alphas (in [0, 1])
    scale those ranges (alpha-CROWN optimises them); CROWN's are `_clip_crown`. Unlike
    low + relu(z - low) - relu(z - high) relaxed term by term, these never leave [low, high]: the
    terms' chords add slack that grows with the interval's width, which intervals in a deep network make huge.
    """
    a = -jnp.inf if low is None else jnp.asarray(low, lower.dtype)
    b = jnp.inf if high is None else jnp.asarray(high, lower.dtype)
    at_low, at_high = jnp.clip(lower, a, b), jnp.clip(upper, a, b)
    width = jnp.where(upper > lower, upper - lower, 1)
    chord = (at_high - at_low) / width
    chord_intercept = at_low - chord * lower
    lower_kink, upper_kink = (lower < a) & (upper > a), (lower < b) & (upper > b)
    span = jnp.where(jnp.isfinite(b - a), b - a, jnp.inf)
    lower_cap = jnp.minimum(1, span / jnp.where(lower_kink, upper - jnp.where(lower_kink, a, 0), 1))
    upper_cap = jnp.minimum(1, span / jnp.where(upper_kink, jnp.where(upper_kink, b, 0) - lower, 1))
    lower_alpha, upper_alpha = (
        _clip_crown(lower, upper, low, high) if lower_alpha is None else (lower_alpha, upper_alpha)
    )
    # No kink inside: the chord is the clip itself (a constant, or z).
    below = jnp.where(lower_kink, jnp.clip(lower_alpha, 0, 1) * lower_cap, chord)
    below_intercept = jnp.where(lower_kink, jnp.where(lower_kink, a, 0) * (1 - below), chord_intercept)
    above = jnp.where(upper_kink, jnp.clip(upper_alpha, 0, 1) * upper_cap, chord)
    above_intercept = jnp.where(upper_kink, jnp.where(upper_kink, b, 0) * (1 - above), chord_intercept)
    return (below, below_intercept), (above, above_intercept)


def _clip_crown(lower, upper, low, high):
    """CROWN's choice for a Clip's two free slopes (as for a ReLU): the full slope where the interval's part
    past the kink is the wider one, else 0."""
    a = -jnp.inf if low is None else low
    b = jnp.inf if high is None else high
    return (
        (jnp.minimum(upper, b) - a >= a - lower).astype(lower.dtype),
        (b - jnp.maximum(lower, a) >= upper - b).astype(lower.dtype),
    )


def _clip_pull_back(coefficients, lower, upper, low, high, lower_alpha=None, upper_alpha=None):
    """Coefficients (m, n) on clip(z) as coefficients on z, and the constant they add: a positive
    coefficient takes the line below, a negative one the line above (`_clip_lines`)."""
    (below, below_intercept), (above, above_intercept) = _clip_lines(lower, upper, low, high, lower_alpha, upper_alpha)
    positive = coefficients >= 0
    slope = jnp.where(positive, below, above)
    intercept = jnp.where(positive, below_intercept, above_intercept)
    return coefficients * slope, (coefficients * intercept).sum(1)


def _zeroed(value):
    """A constant operand as it enters an op's linear part: floats zero, integers (shapes, axes) kept."""
    return jnp.zeros_like(value) if np.issubdtype(np.asarray(value).dtype, np.floating) else value


def graph_network(
    model: str | os.PathLike | onnx.ModelProto,
    input_shape: tuple[int, ...] | None = None,
    preprocessing=None,
    hidden: str = "crown",
    dtype=None,
) -> GraphNetwork:
    """The graph as a `GraphNetwork` (see the module docstring)."""
    if hidden not in HIDDEN:
        raise ValueError(f"hidden must be one of {', '.join(HIDDEN)}, got {hidden!r}")
    if not isinstance(model, onnx.ModelProto):
        model = onnx_graph.read_model(model)
    nodes, params, constants = onnx_graph.parse(model, dtype)
    if preprocessing is not None:
        input_shape = preprocessing.layout
    name, shape, float_dtype = onnx_graph.input_signature(model, params, input_shape, dtype)
    values = {**constants, **params}
    shapes = {name: (1, *shape)}
    probes = {name: jax.ShapeDtypeStruct((1, *shape), float_dtype)}
    steps, traced_names = [], {name}
    for node in nodes:
        traced = tuple(bool(n) and n in traced_names for n in node.inputs)
        if not any(traced):  # weights only: evaluated once, here
            values.update(zip(node.outputs, onnx_graph.run_node(node, values), strict=False))
            continue
        step = _step(node, traced, values, shapes[node.inputs[0]] if traced[0] else ())
        given = {n: probes[n] for n, t in zip(node.inputs, traced, strict=True) if t}
        out = jax.eval_shape(lambda given, node=node: onnx_graph.run_node(node, {**values, **given})[0], given)
        steps.append(step)
        traced_names.add(node.outputs[0])
        shapes[node.outputs[0]], probes[node.outputs[0]] = out.shape, out
    output = model.graph.output[0].name
    if output not in traced_names:
        raise OnnxError(f"the graph's output {output!r} does not depend on its input")
    while steps and steps[-1].node.op == "Softmax" and steps[-1].node.outputs[0] == output:
        output = steps.pop().node.inputs[0]  # order-preserving: the same classes win
    for step in steps:
        if step.node.op == "Softmax":
            raise _unsupported(step.node, " (a Softmax before the last node)")
    # Float constants the steps read become the network's parameters (vmapped over networks);
    # integer ones (shapes, axes) stay static.
    used = {n for step in steps for n, t in zip(step.node.inputs, step.traced, strict=True) if n and not t}
    floats = {n: values[n] for n in used if not isinstance(values[n], np.ndarray | np.generic)}
    static = {n: values[n] for n in used if n not in floats}
    plan = _Plan(tuple(steps), static, name, output, shapes, (1, *shape), preprocessing, hidden)
    return GraphNetwork({n: jnp.asarray(v, float_dtype) for n, v in floats.items()}, plan)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["params"], meta_fields=["plan"])
@dataclasses.dataclass(frozen=True)
class GraphNetwork:
    """An ONNX graph's traced part with its parameters: what `certify.certified_radius` needs of a network."""

    params: dict
    plan: _Plan

    # --- the input, through the preprocessing ---------------------------------------------------

    def _graph_input(self, x: jax.Array) -> jax.Array:
        """The flat input as the graph's (1, ...) input: normalised and laid out when there is preprocessing."""
        if self.plan.preprocessing is None:
            return x.reshape(self.plan.input_shape)
        return self.plan.preprocessing.normalise(x)[None]

    def _values(self) -> dict:
        return {**self.plan.constants, **self.params}

    def _args(self, step: Step, values: dict, traced: dict) -> list:
        return [
            (traced[n] if t else values[n]) if n else None for n, t in zip(step.node.inputs, step.traced, strict=True)
        ]

    def apply(self, x: jax.Array) -> jax.Array:
        """The logits (flat) at one flat input x."""
        values, traced = self._values(), {self.plan.input_name: self._graph_input(x)}
        for step in self.plan.steps:
            traced[step.node.outputs[0]] = onnx_graph.run_node(step.node, {**values, **traced})[0]
        return traced[self.plan.output].reshape(-1)

    def gain(self, x: jax.Array) -> jax.Array:
        """The gradient norm of the largest logit at x: a scale for the radius (any positive one will do)."""
        norm = jnp.linalg.norm(jax.grad(lambda v: self.apply(v).max())(x))
        return jnp.where(norm > 0, norm, 1)

    # --- interval arithmetic ---------------------------------------------------------------------

    def _affine_radius(self, step: Step, values, radii: dict, orthogonal: dict):
        """(radius, orthogonal) of an affine step's output: its center moves by at most `radius` per element.

        `radii` holds each traced value's radius; while a value is an affine map of the input with
        orthogonal rows, its radius is eps times its rows' norms, exactly.
        """
        node, op = step.node, step.node.op
        names = [n for n, t in zip(node.inputs, step.traced, strict=True) if t]
        exact = all(orthogonal[n] for n in names)
        out_size = math.prod(self.plan.shapes[node.outputs[0]])
        same_size = len(names) == 1 and math.prod(self.plan.shapes[names[0]]) == out_size
        if op in WEIGHTED:
            # Orthogonal rows in: each output row's norm is sqrt(sum_j W_ij^2 r_j^2). Otherwise the
            # triangle inequality: |W| r, interval arithmetic's rule.
            power = 2 if exact else 1
            mapped = self._weighted(step, values, radii[names[0]] ** power, power)
            radius = jnp.sqrt(mapped) if exact else mapped
            return radius, exact and op in ("BatchNormalization", "Mul", "Div") and same_size
        shape = self.plan.shapes[node.outputs[0]]
        if op in ("Add", "Sub"):
            radius = sum(jnp.broadcast_to(radii[n], shape) for n in names)
            return radius, exact and same_size
        args = [
            (radii[n] if t else _zeroed(values[n])) if n else None
            for n, t in zip(node.inputs, step.traced, strict=True)
        ]
        radius = OPS[op](node, *args)  # selections and averages: nonnegative weights
        radius = radius[0] if isinstance(radius, tuple) else radius
        constant_pad = op == "Pad" and onnx_graph._string(node.attrs.get("mode", "constant")) == "constant"
        return radius, exact and op in SELECTION and (same_size or constant_pad)

    def _weighted(self, step: Step, values, r, power: int):
        """A weighted affine op's linear part, every weight raised to `power` in absolute value, on r."""
        node, op = step.node, step.node.op
        args = [values.get(n) if n else None for n in node.inputs]

        def f(w):
            return jnp.abs(w) ** power

        if op == "Conv":
            return OPS["Conv"](node, r, f(args[1]))
        if op in ("Gemm", "MatMul"):
            alpha = node.attrs.get("alpha", 1.0) if op == "Gemm" else 1.0
            plain = node._replace(op="MatMul")
            a, b = (r, f(args[1])) if step.traced[0] else (f(args[0]), r)
            if op == "Gemm":
                a = a.T if node.attrs.get("transA", 0) else a
                b = b.T if node.attrs.get("transB", 0) else b
            return abs(alpha) ** power * OPS["MatMul"](plain, a, b)
        if op == "Mul":
            return r * f(args[1] if step.traced[0] else args[0])
        if op == "Div":
            return r * f(1 / args[1])
        scale, _, _, var = args[1:5]  # BatchNormalization
        inverse = scale / jnp.sqrt(var + node.attrs.get("epsilon", 1e-5))
        return r * f(inverse).reshape(-1, *([1] * (r.ndim - 2)))

    def _intervals(self, x, eps, hidden: str):
        """Every nonlinear step's input bounds and output box, flat: {index: (lower, upper)} twice."""
        values = self._values()
        start = self._graph_input(x)
        # The input map is each graph input one pixel times a scale: its rows' norms are those scales.
        scales = jnp.abs(self._graph_input(jnp.ones_like(x)) - self._graph_input(jnp.zeros_like(x)))
        centers, radii, orthogonal = {self.plan.input_name: start}, {self.plan.input_name: eps * scales}, {}
        orthogonal[self.plan.input_name] = True
        bounds, boxes = {}, {}
        for i, step in enumerate(self.plan.steps):
            node, out = step.node, step.node.outputs[0]
            args = self._args(step, values, centers)
            if node.op in AFFINE:
                centers[out] = onnx_graph.run_node(node, {**values, **centers})[0]
                radii[out], orthogonal[out] = self._affine_radius(step, values, radii, orthogonal)
                continue
            z = node.inputs[0]
            lower, upper = centers[z] - radii[z], centers[z] + radii[z]
            if hidden == "crown":
                crown_lower, crown_upper = self._crown_hidden(x, eps, i, z, bounds)
                lower = jnp.maximum(lower, crown_lower.reshape(lower.shape))
                upper = jnp.minimum(upper, crown_upper.reshape(upper.shape))
            bounds[i] = lower.reshape(-1), upper.reshape(-1)
            # Relu, Clip and MaxPool are nondecreasing in every input: the box's ends map to the output's.
            low = OPS[node.op](node, lower, *args[1:])
            high = OPS[node.op](node, upper, *args[1:])
            centers[out], radii[out], orthogonal[out] = (low + high) / 2, (high - low) / 2, False
            boxes[i] = low.reshape(-1), high.reshape(-1)
        return bounds, boxes

    # --- linear bound propagation ----------------------------------------------------------------

    def _parameters(self, step: Step) -> int:
        """How many (rows, n) slope arrays a nonlinear step's relaxation takes: a Relu's lower line, a
        Clip's lower and upper lines, none for a MaxPool."""
        return {"Relu": 1, "Clip": 2}.get(step.node.op, 0)

    def slopes(self, bounds: dict, rows: int) -> list[jax.Array]:
        """CROWN's slopes, the arrays of every nonlinear step in order (`_parameters`)."""
        slopes = []
        for i, step in enumerate(self.plan.steps):
            if i not in bounds or not self._parameters(step):
                continue
            lower, upper = bounds[i]
            if step.node.op == "Relu":
                slopes.append(certify._crown_slopes(lower, upper, rows))
            else:
                slopes += [jnp.broadcast_to(s, (rows, lower.shape[0])) for s in _clip_crown(lower, upper, *step.ends)]
        return slopes

    def _backward(self, x, eps, start: str, coefficients, upto: int, bounds: dict, alphas=None, boxes=None):
        """Lower bounds (m,) over the ball on coefficients (m, *shape) . value `start`, through steps[:upto].

        At a nonlinear step: its relaxation from `bounds` (slopes `alphas`, CROWN's when None), or with
        `boxes` its output's box, where the coefficients stop.
        """
        values, m = self._values(), coefficients.shape[0]
        pending, constant = {start: coefficients}, jnp.zeros(m, coefficients.dtype)
        parameters = [self._parameters(step) if k in bounds else 0 for k, step in enumerate(self.plan.steps)]
        for i in reversed(range(upto)):
            step = self.plan.steps[i]
            node, out = step.node, step.node.outputs[0]
            if out not in pending:
                continue  # this value does not reach the coefficients
            c = pending.pop(out)
            flat = c.reshape(m, -1)
            if node.op in AFFINE:
                names = [n for n, t in zip(node.inputs, step.traced, strict=True) if t]

                def affine(*inputs, node=node, step=step):
                    given = iter(inputs)  # the traced inputs, in the node's order
                    args = [(next(given) if t else values[n]) if n else None
                            for n, t in zip(node.inputs, step.traced, strict=True)]  # fmt: skip
                    result = OPS[node.op](node, *args)
                    return result[0] if isinstance(result, tuple) else result

                zeros = [jnp.zeros(self.plan.shapes[n], c.dtype) for n in names]
                offset, pullback = jax.vjp(affine, *zeros)  # affine: f(v) = f(0) + L v, and L's transpose
                constant = constant + flat @ offset.reshape(-1)
                for name, back in zip(names, jax.vmap(pullback)(c), strict=True):
                    pending[name] = pending[name] + back if name in pending else back
                continue
            z = node.inputs[0]
            if boxes is not None:  # the output's box: c . y >= c . center - |c| . radius
                low, high = boxes[i]
                constant = constant + flat @ ((low + high) / 2) - jnp.abs(flat) @ ((high - low) / 2)
                continue
            lower, upper = bounds[i]
            if node.op == "MaxPool":
                relaxation = certify.pool_relaxation(jnp.asarray(step.windows), lower, upper)
                back, added = certify.pool_pull_back(relaxation, flat, lower.shape[0])
            else:
                first = sum(parameters[:i])
                given = [None] * parameters[i] if alphas is None else alphas[first : first + parameters[i]]
                if node.op == "Relu":
                    back, added = certify.relu_pull_back(flat, lower, upper, given[0])
                else:
                    back, added = _clip_pull_back(flat, lower, upper, *step.ends, *given)
            constant = constant + added
            back = back.reshape(m, *self.plan.shapes[z])
            pending[z] = pending[z] + back if z in pending else back
        # The graph's input, back through the preprocessing (an affine map) to the flat input.
        graph_coefficients = pending.get(self.plan.input_name)
        if graph_coefficients is None:
            graph_coefficients = jnp.zeros((m, *self.plan.input_shape), coefficients.dtype)
        offset, pullback = jax.vjp(self._graph_input, jnp.zeros_like(x))
        constant = constant + graph_coefficients.reshape(m, -1) @ offset.reshape(-1)
        (a,) = jax.vmap(pullback)(graph_coefficients)
        # As a chain's: a . x + b - eps ||a|| over the ball, the norm safe at a = 0.
        norm = jnp.sqrt(jnp.sum(a**2, axis=1) + jnp.finfo(a.dtype).tiny)
        return a @ x + constant - eps * norm

    def _crown_hidden(self, x, eps, upto: int, value: str, bounds: dict):
        """CROWN's (lower, upper) of a value, every element's by its own backward pass, in blocks of rows."""
        shape = self.plan.shapes[value]
        n = math.prod(shape)
        block = max(1, min(n, BLOCK // self.plan.largest))

        def one(k):
            index = jnp.minimum(k * block + jnp.arange(block), n - 1)  # the last block repeats the last row
            rows = jax.nn.one_hot(index, n, dtype=x.dtype).reshape(block, *shape)
            values = self._backward(x, eps, value, jnp.concatenate([rows, -rows]), upto, bounds)
            return values[:block], -values[block:]

        lower, upper = jax.lax.map(one, jnp.arange(-(-n // block)))
        return lower.reshape(-1)[:n], upper.reshape(-1)[:n]

    def margin_bounds(self, x, eps, rows, method: str, steps: int = certify.ALPHA_STEPS, alphas=None):
        """Lower bounds (m,) on rows . logits over ||delta||_2 <= eps, and the slopes: `certify.margin_bounds`.

        The rows are bounded in blocks of at most `ROWS` coefficients on the graph's largest value (a
        1000-class network's 999 margins at once would need tens of GB); every row's bound and slopes
        are its own, so the blocks change nothing but the memory.
        """
        bounds, boxes = self._intervals(x, eps, "ibp" if method == "ibp" else self.plan.hidden)  # IBP: intervals only
        m = rows.shape[0]
        block = max(1, min(m, ROWS // self.plan.largest))
        if block == m:
            return self._margin_block(x, eps, rows, method, steps, alphas, bounds, boxes)
        count = -(-m // block)
        index = jnp.minimum(jnp.arange(count * block), m - 1)  # the last block repeats the last row

        def blocks(a):
            return a[index].reshape(count, block, *a.shape[1:])

        def one(part):
            part_rows, part_alphas = part
            return self._margin_block(x, eps, part_rows, method, steps, part_alphas, bounds, boxes)

        parts = (blocks(rows), None if alphas is None else [blocks(a) for a in alphas])
        values, slopes = jax.lax.map(one, parts)
        slopes = None if slopes is None else [a.reshape(count * block, *a.shape[2:])[:m] for a in slopes]
        return values.reshape(-1)[:m], slopes

    def _margin_block(self, x, eps, rows, method, steps, alphas, bounds, boxes):
        coefficients = rows.reshape(rows.shape[0], *self.plan.shapes[self.plan.output]).astype(x.dtype)
        end = len(self.plan.steps)
        if method == "ibp":
            return self._backward(x, eps, self.plan.output, coefficients, end, bounds, boxes=boxes), alphas

        def bound(slopes):
            return self._backward(x, eps, self.plan.output, coefficients, end, bounds, slopes)

        return certify.optimised_bounds(bound, self.slopes(bounds, rows.shape[0]), method, steps, alphas)
