"""`models.onnx_bounds`: certified radii of ONNX graphs against exact minima, a search, a chain's bounds, attacks.

Soundness: on the exact oracle's 2-D ReLU nets written as ONNX graphs (Gemm, Relu, Gemm, a last
Softmax) no certified radius exceeds the exact minimum; on random 2-D graphs with a Clip of both
ends (ReLU6's shape), a residual Add, Sub, Mul, BatchNormalization and Relu, none exceeds the
shortest crossing a dense ray search finds with onnxruntime (a point that reaches the goal: an
upper bound on the true minimum, independent of jaxfrag); on a mobile-style image graph (strided,
depthwise and 1x1 convolutions with padding, ReLU6, a residual Add, ReduceMean, Reshape) none
exceeds the attack's verified norm. Agreement: a convolutional chain written as the graph PyTorch
would export (NCHW, Flatten, Gemm) gets the chain's interval bounds to rounding, and CROWN bounds at
least as tight (the graph intersects CROWN's hidden bounds with intervals, the chain does not).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime
import pytest
from exact_relu2d import problems
from helpers import long_running_jit
from onnx import helper
from onnx_models import chain_model, clip_residual_model, onnx_model, tiny_classifier
from test_certify import conv_net

from jaxfrag import attacks, certify
from jaxfrag.models import onnx_bounds
from jaxfrag.models.imagenet import Preprocessing
from jaxfrag.models.onnx_graph import OnnxError

BELOW = 1e-5  # float32: the certified radius over an upper bound on the minimum, never above 1 beyond this


def stacked(models, **options) -> onnx_bounds.GraphNetwork:
    """One GraphNetwork whose parameters have a leading axis over the models (same graph, other weights)."""
    networks = [onnx_bounds.graph_network(model, **options) for model in models]
    params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[n.params for n in networks])
    return onnx_bounds.GraphNetwork(params, networks[0].plan)


@functools.cache
def radius_program(method: str, targeted: bool, hidden_plan_id: int):
    del hidden_plan_id  # a program per graph structure

    def one(network, x, label, target):
        return certify.certified_radius(network, x, label, target if targeted else None, method=method).radius

    return jax.jit(jax.vmap(one))


def certified(network, x, labels, targets, method, targeted):
    program = radius_program(method, targeted, id(network.plan))
    return np.asarray(program(network, jnp.asarray(x, jnp.float32), jnp.asarray(labels), jnp.asarray(targets)))


def ort_logits(model, points: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": points.astype(np.float32)})[0]


def test_a_graph_network_has_the_graphs_logits(tmp_path):
    """The network's logits are onnxruntime's, for the three kinds of graph these tests bound."""
    tiny = tiny_classifier(tmp_path / "tiny.onnx", size=8, classes=5)
    chain = conv_net(jax.random.key(2), jnp.float32, pool=True)
    x = np.asarray(jax.random.uniform(jax.random.key(3), (8, 8, 2)))
    cases = [
        (tiny, {}, np.asarray(jax.random.uniform(jax.random.key(1), (3, 8, 8)))),
        (chain_model(chain), {"preprocessing": Preprocessing(8, (0.0, 0.0), (1.0, 1.0))}, x),
        (clip_residual_model(0), {}, np.asarray([0.3, -0.7])),
    ]
    for model, options, image in cases:
        network = onnx_bounds.graph_network(model, **options)
        graph_input = image.transpose(2, 0, 1) if options else image
        expected = ort_logits(model, graph_input[None])[0]
        np.testing.assert_allclose(network.apply(jnp.asarray(image.reshape(-1))), expected, rtol=1e-5, atol=1e-5)
    # The chain itself, in its own (H, W, C) layout, is the same network.
    chain_logits = ort_logits(cases[1][0], x.transpose(2, 0, 1)[None])[0]
    np.testing.assert_allclose(certify.apply(chain, jnp.asarray(x.reshape(-1))), chain_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", certify.BOUNDS)
@pytest.mark.parametrize("targeted", [False, True])
def test_no_certified_radius_of_a_graph_exceeds_the_exact_minimum(method, targeted):
    found = problems(900, 1, 40, 12, 3, targeted)
    models = [chain_model(certify.chain((n.h1, n.h2), (n.c1, n.c2)), softmax=True) for n in found.nets]
    network = stacked(models)
    targets = found.labels if found.targets is None else found.targets
    radius = certified(network, found.x, found.labels, targets, method, targeted)
    reachable = np.isfinite(found.exact)
    ratio = radius[reachable] / found.exact[reachable]
    assert reachable.mean() >= 0.8
    assert np.all(ratio <= 1 + BELOW), f"certified past the exact minimum: max ratio {ratio.max()}"
    assert np.median(ratio) > (0.05 if method == "ibp" else 0.3)  # not vacuous


def ray_minimum(model, x: np.ndarray, label: int, target: int | None, reach: float = 12.0) -> float:
    """The shortest crossing on 720 rays from x, each walked in steps of reach / 1200 (onnxruntime's logits):
    a point that reaches the goal, so an upper bound on the minimal perturbation; inf if none is met."""
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    lengths = np.linspace(reach / 1200, reach, 1200)
    directions = np.stack([np.cos(angles), np.sin(angles)], 1)
    points = x + lengths[:, None, None] * directions[None]
    logits = ort_logits(model, points.reshape(-1, 2)).reshape(len(lengths), len(angles), -1)
    winner = logits.argmax(-1)
    reached = winner != label if target is None else winner == target
    return float(lengths[np.argmax(reached.any(1))]) if reached.any() else np.inf


@pytest.mark.parametrize("hidden", onnx_bounds.HIDDEN)
@pytest.mark.parametrize("method", certify.BOUNDS)
def test_clip_residual_graphs_are_never_certified_past_a_crossing(method, hidden):
    models = [clip_residual_model(seed) for seed in range(30)]
    x = np.random.default_rng(5).normal(size=(30, 2)).astype(np.float32)
    labels = np.array([ort_logits(m, p[None])[0].argmax() for m, p in zip(models, x, strict=True)])
    targets = (labels + 1) % 3
    network = stacked(models, hidden=hidden)
    for targeted in (False, True):
        radius = certified(network, x, labels, targets, method, targeted)
        goal = [t if targeted else None for t in targets]
        crossing = np.array([ray_minimum(m, p, y, t) for m, p, y, t in zip(models, x, labels, goal, strict=True)])
        found = np.isfinite(crossing)
        ratio = radius[found] / crossing[found]
        assert found.sum() >= 18  # where the clipped net's label wins the whole plane, no crossing exists
        assert np.all(ratio <= 1 + BELOW), (targeted, ratio.max())
        assert np.median(ratio) > (0.02 if method == "ibp" else 0.2), np.median(ratio)  # not vacuous


def test_a_convolutional_chain_as_a_graph_gets_the_chains_bounds():
    """IBP to rounding; CROWN and alpha-CROWN at least as tight (intervals can only tighten CROWN's hidden bounds)."""
    count = 8
    keys = jax.random.split(jax.random.key(21), count)
    chains = [conv_net(key, jnp.float32, pool=True) for key in keys]
    models = [chain_model(chain) for chain in chains]
    network = stacked(models, preprocessing=Preprocessing(8, (0.0, 0.0), (1.0, 1.0)))
    chain = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *chains)
    x = jax.random.uniform(jax.random.key(22), (count, 128))
    labels = jax.vmap(lambda c, v: jnp.argmax(certify.apply(c, v)))(chain, x)
    rows = jax.vmap(lambda label: certify.specification(3, label)[0])(labels)
    for eps in (0.05, 0.2):
        for method in certify.BOUNDS:

            def bounds(net, v, r, method=method, eps=eps):
                return certify.margin_bounds(net, v, eps, r, method)[0]

            of_chain = np.asarray(jax.jit(jax.vmap(bounds))(chain, x, rows))
            of_graph = np.asarray(jax.jit(jax.vmap(bounds))(network, x, rows))
            scale = 1e-4 * (1 + np.abs(of_chain))
            if method == "ibp":
                np.testing.assert_allclose(of_graph, of_chain, atol=1e-4, rtol=1e-4)
            else:
                assert np.all(of_graph >= of_chain - scale), (method, eps, (of_graph - of_chain).min())
                assert np.all(of_graph <= of_chain + np.abs(of_chain) + 1), "implausibly tighter"


def test_a_mobile_style_graph_is_never_certified_past_the_attack(tmp_path):
    """Strided, depthwise and 1x1 convolutions with padding, ReLU6 (Clip), a residual Add, ReduceMean:
    every rung at both kinds of hidden bounds stays below the attack's verified norm, and is positive."""
    tiny_classifier(tmp_path / "tiny.onnx", size=8, classes=5, seed=3)
    count = 6
    x = jax.random.uniform(jax.random.key(31), (count, 8 * 8 * 3))
    norms = None
    for hidden in onnx_bounds.HIDDEN:
        network = onnx_bounds.graph_network(tmp_path / "tiny.onnx", hidden=hidden)
        labels = jax.vmap(lambda v, n=network: jnp.argmax(n.apply(v)))(x)
        if norms is None:

            def attack(v, label, n=network):
                return attacks.minimal_l2(n.apply, v, label, **attacks.PRESETS["walk"])

            found = jax.jit(jax.vmap(attack))(x, labels)
            flipped = jax.vmap(lambda v, d, n=network: jnp.argmax(n.apply(v + d)))(x, found.delta)
            assert np.all(found.success) and np.all(np.asarray(flipped) != np.asarray(labels))  # applied
            norms = np.asarray(found.norm)
        for method in certify.BOUNDS:
            # The radius to 2^-12 of its bracket (a run's is to 2^-24), at about half the time: an
            # unsound rung certifies past the attack by far more than that. Optimised: CROWN's and
            # alpha-CROWN's bisections over this graph take about half as long.
            one = lambda v, y, n=network, m=method: certify.certified_radius(n, v, y, method=m, bisections=12)  # noqa: E731
            program = long_running_jit(jax.vmap(one))
            radius = np.asarray(program(x, labels).radius)
            assert np.all(radius <= norms * (1 + BELOW)), (hidden, method, radius / norms)
            assert np.all(radius > 0), (hidden, method)


def _graph_with(node) -> onnx.ModelProto:
    """Gemm, `node` (from a to b), Gemm: a small graph around one node."""
    nodes = [helper.make_node("Gemm", ["x", "w"], ["a"], transB=1), node]
    nodes.append(helper.make_node("Gemm", ["b", "v"], ["y"], transB=1))
    return onnx_model(nodes, {"w": np.ones((4, 2), np.float32), "v": np.ones((3, 4), np.float32)}, (1, 2), 3, "one")


@pytest.mark.parametrize(
    ("node", "says"),
    [
        (("Sigmoid", ["a"], ["b"]), "Sigmoid"),
        (("Mul", ["a", "a"], ["b"]), "multiplies the input by the input"),
        (("Softmax", ["a"], ["b"]), "a Softmax before the last node"),
    ],
)
def test_a_graph_it_cannot_bound_gets_a_one_line_error(node, says):
    with pytest.raises(OnnxError, match=says) as error:
        onnx_bounds.graph_network(_graph_with(helper.make_node(*node)))
    assert "\n" not in str(error.value)


def test_branch_and_bound_and_unknown_hidden_bounds_are_refused():
    network = onnx_bounds.graph_network(clip_residual_model(1))
    with pytest.raises(ValueError, match="branch and bound bounds chains only"):
        certify.certified_radius(network, jnp.zeros(2), 0, method="bab")
    with pytest.raises(ValueError, match="hidden must be one of"):
        onnx_bounds.graph_network(clip_residual_model(1), hidden="exact")


@pytest.mark.parametrize("ends", [(0.0, 6.0), (0.0, None), (None, 1.0), (-1.0, 0.5)])
def test_the_clip_relaxation_lies_below_and_above_the_clip(ends):
    """On intervals that hold no kink, one or both (wide ones too), at any slopes in [0, 1], each line is
    on its side of the clip at 2001 points of the interval, ends included; at CROWN's slopes too."""
    rng = np.random.default_rng(7)
    lower = rng.normal(scale=8.0, size=400)
    upper = lower + np.abs(rng.normal(scale=8.0, size=400)) * rng.choice([1e-3, 1.0, 30.0], size=400)
    lower, upper = jnp.asarray(lower, jnp.float32), jnp.asarray(upper, jnp.float32)
    z = lower[None] + jnp.linspace(0, 1, 2001)[:, None] * (upper - lower)[None]
    clipped = jnp.clip(z, -jnp.inf if ends[0] is None else ends[0], jnp.inf if ends[1] is None else ends[1])
    slopes = [None, *[jnp.asarray(rng.uniform(size=(2, 400)), jnp.float32) for _ in range(3)]]
    slopes += [jnp.zeros((2, 400), jnp.float32), jnp.ones((2, 400), jnp.float32)]
    tolerance = 1e-5 * (1 + jnp.abs(z))
    for alpha in slopes:
        chosen = () if alpha is None else (alpha[0], alpha[1])
        (below, below_intercept), (above, above_intercept) = onnx_bounds._clip_lines(lower, upper, *ends, *chosen)
        assert np.all(below * z + below_intercept <= clipped + tolerance)
        assert np.all(above * z + above_intercept >= clipped - tolerance)
    # Where the interval holds no kink the lines are the clip itself.
    (below, below_intercept), (above, above_intercept) = onnx_bounds._clip_lines(lower, upper, *ends)
    a, b = (-np.inf if ends[0] is None else ends[0]), (np.inf if ends[1] is None else ends[1])
    no_kink = np.asarray(~(((lower < a) & (upper > a)) | ((lower < b) & (upper > b))))
    np.testing.assert_allclose(
        np.asarray(below * z + below_intercept)[:, no_kink], np.asarray(clipped)[:, no_kink], atol=1e-4, rtol=1e-5
    )
