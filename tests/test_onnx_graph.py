"""The ONNX interpreter against ONNX Runtime, op by op, on small graphs built with onnx.helper.

Each case is one node (or a few) with random inputs; the reference is onnxruntime's CPU
provider, an independent implementation of the same spec. Cases cover shapes, strides,
padding modes, opset-dependent signatures and both float dtypes where ONNX Runtime
implements them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from jaxfrag.models import onnx_graph

ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
TOLERANCE = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


def make_model(nodes, inputs: dict, weights: dict | None = None, outputs=("y",), opset: int = 20):
    """A model of `nodes` whose graph inputs are `inputs` (name -> array) and initializers `weights`."""
    graph = helper.make_graph(
        nodes,
        "case",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in inputs.items()
        ],
        [
            helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(next(iter(inputs.values())).dtype), None)
            for o in outputs
        ],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in (weights or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)  # the outputs' types, as an exporter writes them


def reference(model, inputs: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def as_float32(model):
    """The same graph with float64 weights and inputs made float32 (for ops ONNX Runtime has only in float32)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.DOUBLE:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    for value in [*model.graph.input, *model.graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.DOUBLE:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    del model.graph.value_info[:]
    return model


def ours(model, inputs: dict) -> list[np.ndarray]:
    with jax.enable_x64(True):
        run, params = onnx_graph.graph_function(model)
        out = jax.jit(run)(params, {k: jnp.asarray(v) for k, v in inputs.items()})
        return [np.asarray(o) for o in out]


def check(model, inputs: dict, dtype=np.float32) -> None:
    """Our outputs equal ONNX Runtime's; in float64, where ONNX Runtime implements the op only in float32 (Conv,
    GlobalAveragePool), ours in float64 against its float32 at float32's tolerance."""
    got = ours(model, inputs)
    try:
        expected = reference(model, inputs)
    except ort.capi.onnxruntime_pybind11_state.NotImplemented:
        assert np.dtype(dtype) == np.float64
        dtype = np.float32
        expected = reference(as_float32(model), {k: v.astype(np.float32) for k, v in inputs.items()})
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape, (g.shape, e.shape)
        scale = max(float(np.max(np.abs(e))), 1.0) if e.size else 1.0
        np.testing.assert_allclose(g, e, rtol=0, atol=TOLERANCE[np.dtype(dtype)] * scale * 8)


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


BOTH = [np.float32, np.float64]


# --- convolution ----------------------------------------------------------------------------------

CONV_CASES = [
    # (input shape, weight shape, attributes)
    ((1, 3, 9, 11), (4, 3, 3, 3), {}),
    ((1, 3, 9, 11), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 9, 11), (4, 3, 5, 3), {"strides": [2, 1], "pads": [2, 0, 1, 1]}),
    ((1, 3, 9, 11), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 10, 10), (4, 3, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [3, 3]}),
    ((1, 3, 9, 11), (4, 3, 3, 3), {"auto_pad": "VALID"}),
    ((1, 3, 12, 12), (4, 3, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((1, 6, 9, 9), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),  # depthwise
    ((1, 6, 10, 9), (6, 1, 5, 5), {"group": 6, "pads": [2, 1, 2, 3], "dilations": [2, 1]}),
    ((1, 6, 9, 9), (4, 3, 1, 1), {"group": 2}),
    ((1, 5, 9, 8), (7, 5, 1, 1), {}),  # 1x1: a matmul
    ((1, 5, 9, 8), (7, 5, 1, 1), {"strides": [2, 3], "pads": [1, 0, 0, 1]}),
    ((1, 4, 13), (5, 4, 3), {"strides": [2], "pads": [1, 2]}),  # 1-D
]


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("bias", [True, False])
def test_conv(case, bias, dtype):
    shape, weight_shape, attrs = CONV_CASES[case]
    weights = {"w": rand(*weight_shape, dtype=dtype, seed=1)}
    if bias:
        weights["b"] = rand(weight_shape[0], dtype=dtype, seed=2)
    node = helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["y"], **attrs)
    x = rand(*shape, dtype=dtype)
    check(make_model([node], {"x": x}, weights), {"x": x}, dtype)


# --- pooling --------------------------------------------------------------------------------------

POOL_CASES = [
    {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "strides": [2, 2]},
    {"kernel_shape": [3, 3], "auto_pad": "VALID", "strides": [2, 2]},
]


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_pool(case, dtype):
    x = rand(1, 3, 9, 10, dtype=dtype)
    node = helper.make_node("MaxPool", ["x"], ["y"], **POOL_CASES[case])
    check(make_model([node], {"x": x}), {"x": x}, dtype)


def test_max_pool_dilated():
    x = rand(1, 2, 11, 11)
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2])
    check(make_model([node], {"x": x}), {"x": x})


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_average_pool(case, count_include_pad):
    x = rand(1, 3, 9, 10)
    node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=count_include_pad, **POOL_CASES[case])
    check(make_model([node], {"x": x}), {"x": x})


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 4, 6)])
def test_global_average_pool(shape, dtype):
    x = rand(*shape, dtype=dtype)
    check(make_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], {"x": x}), {"x": x}, dtype)


@pytest.mark.parametrize("dtype", BOTH)
def test_batch_normalization(dtype):
    x = rand(2, 4, 5, 3, dtype=dtype)
    rng = np.random.default_rng(3)
    weights = {
        "scale": rng.normal(size=4).astype(dtype),
        "bias": rng.normal(size=4).astype(dtype),
        "mean": rng.normal(size=4).astype(dtype),
        "var": rng.uniform(0.5, 2, size=4).astype(dtype),
    }
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-3)
    check(make_model([node], {"x": x}, weights), {"x": x}, dtype)


# --- linear algebra -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize(
    "trans_a, trans_b, alpha, beta, c_shape",
    [(0, 0, 1.0, 1.0, (5,)), (1, 0, 0.5, 2.0, (3, 5)), (0, 1, 1.0, 1.0, None), (1, 1, 2.0, 0.5, (1, 5))],
)
def test_gemm(trans_a, trans_b, alpha, beta, c_shape, dtype):
    a = rand(*((4, 3) if trans_a else (3, 4)), dtype=dtype)
    weights = {"b": rand(*((5, 4) if trans_b else (4, 5)), dtype=dtype, seed=1)}
    if c_shape:
        weights["c"] = rand(*c_shape, dtype=dtype, seed=2)
    node = helper.make_node(
        "Gemm",
        ["a", "b", "c"] if c_shape else ["a", "b"],
        ["y"],
        transA=trans_a,
        transB=trans_b,
        alpha=alpha,
        beta=beta,
    )
    check(make_model([node], {"a": a}, weights), {"a": a}, dtype)


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 2)), ((4,), (4, 3))])
def test_matmul(shapes, dtype):
    a, b = rand(*shapes[0], dtype=dtype), rand(*shapes[1], dtype=dtype, seed=1)
    check(make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}), {"a": a, "b": b}, dtype)


# --- element-wise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1))])
def test_binary(op, shapes, dtype):
    a, b = rand(*shapes[0], dtype=dtype), rand(*shapes[1], dtype=dtype, seed=1)
    check(make_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}), {"a": a, "b": b}, dtype)


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Identity"])
def test_unary(op, dtype):
    x = rand(3, 4, 5, dtype=dtype)
    check(make_model([helper.make_node(op, ["x"], ["y"])], {"x": x}), {"x": x}, dtype)


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("bounds", [(0.0, 6.0), (-0.5, None), (None, 0.3), (None, None)])
def test_clip(bounds, dtype):
    x = 4 * rand(3, 20, dtype=dtype)
    weights, names = {}, ["x"]
    for name, value in zip(("low", "high"), bounds, strict=True):
        if value is not None:
            weights[name] = np.asarray(value, dtype)
        names.append(name if value is not None else "")
    node = helper.make_node("Clip", names, ["y"])
    check(make_model([node], {"x": x}, weights), {"x": x}, dtype)


def test_clip_opset6_attributes():
    x = 4 * rand(3, 20)
    node = helper.make_node("Clip", ["x"], ["y"], min=-1.0, max=2.0)
    check(make_model([node], {"x": x}, opset=6), {"x": x})


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("axis, opset", [(-1, 13), (1, 13), (0, 13), (1, 11), (2, 11)])
def test_softmax(axis, opset, dtype):
    x = rand(2, 3, 4, dtype=dtype)
    check(make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], {"x": x}, opset=opset), {"x": x}, dtype)


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("axes, keepdims", [([2, 3], 1), ([1], 0), ([-1], 1), (None, 0)])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean(axes, keepdims, opset, dtype):
    x = rand(2, 3, 4, 5, dtype=dtype)
    weights, inputs, attrs = {}, ["x"], {"keepdims": keepdims}
    if axes is not None and opset >= 18:
        weights["axes"] = np.asarray(axes, np.int64)
        inputs.append("axes")
    elif axes is not None:
        attrs["axes"] = axes
    node = helper.make_node("ReduceMean", inputs, ["y"], **attrs)
    check(make_model([node], {"x": x}, weights, opset=opset), {"x": x}, dtype)


# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[0, -1], [2, 12], [-1], [1, 2, 3, 4], [0, 0, 4]])
def test_reshape(shape):
    x = rand(2, 3, 4)
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    check(make_model([node], {"x": x}, {"shape": np.asarray(shape, np.int64)}), {"x": x})


def test_reshape_shape_computed_from_the_input_shape():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (what dynamic-batch exports emit) resolves statically."""
    x = rand(2, 3, 4)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    weights = {
        "zero": np.asarray(0, np.int64),
        "axes": np.asarray([0], np.int64),
        "minus_one": np.asarray([-1], np.int64),
    }
    check(make_model(nodes, {"x": x}, weights), {"x": x})


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_flatten(axis, dtype):
    x = rand(2, 3, 4, dtype=dtype)
    check(make_model([helper.make_node("Flatten", ["x"], ["y"], axis=axis)], {"x": x}), {"x": x}, dtype)


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
def test_transpose(perm):
    x = rand(2, 3, 4)
    attrs = {} if perm is None else {"perm": perm}
    check(make_model([helper.make_node("Transpose", ["x"], ["y"], **attrs)], {"x": x}), {"x": x})


@pytest.mark.parametrize("axis", [1, -1])
def test_concat(axis):
    a, b = rand(2, 3, 4), rand(2, 3, 4, seed=1)
    check(
        make_model([helper.make_node("Concat", ["a", "b", "a"], ["y"], axis=axis)], {"a": a, "b": b}), {"a": a, "b": b}
    )


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[1], [1, 3], None])
def test_squeeze_and_unsqueeze(axes, opset):
    x = rand(2, 1, 4, 1)
    weights, squeeze_inputs, attrs = {}, ["x"], {}
    if axes is not None and opset >= 13:
        weights["axes"] = np.asarray(axes, np.int64)
        squeeze_inputs.append("axes")
    elif axes is not None:
        attrs["axes"] = axes
    nodes = [helper.make_node("Squeeze", squeeze_inputs, ["s"], **attrs)]
    if opset >= 13:
        weights["where"] = np.asarray([0, -1], np.int64)
        nodes.append(helper.make_node("Unsqueeze", ["s", "where"], ["y"]))
    else:
        nodes.append(helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0, 3]))
    check(make_model(nodes, {"x": x}, weights, opset=opset), {"x": x})


@pytest.mark.parametrize("dtype", BOTH)
@pytest.mark.parametrize(
    "mode, pads, value",
    [
        ("constant", [0, 0, 1, 2, 0, 0, 2, 1], None),
        ("constant", [0, 1, 1, 0, 0, 0, 2, 1], 1.5),
        ("constant", [0, 0, -1, 2, 0, 0, 1, -2], 0.0),
        ("reflect", [0, 0, 2, 1, 0, 0, 1, 2], None),
        ("edge", [0, 0, 2, 1, 0, 0, 1, 3], None),
    ],
)
def test_pad(mode, pads, value, dtype):
    x = rand(1, 2, 5, 6, dtype=dtype)
    weights, inputs = {"pads": np.asarray(pads, np.int64)}, ["x", "pads"]
    if value is not None:
        weights["value"] = np.asarray(value, dtype)
        inputs.append("value")
    node = helper.make_node("Pad", inputs, ["y"], mode=mode)
    check(make_model([node], {"x": x}, weights), {"x": x}, dtype)


def test_pad_axes_opset18():
    x = rand(1, 2, 5, 6)
    weights = {"pads": np.asarray([1, 2, 3, 0], np.int64), "axes": np.asarray([-1, 2], np.int64)}
    node = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode="constant")
    check(make_model([node], {"x": x}, weights, opset=18), {"x": x})


@pytest.mark.parametrize(
    "attribute, value",
    [("value", numpy_helper.from_array(rand(2, 3), "c")), ("value_floats", [1.0, 2.5, -3.0]), ("value_float", 3.0)],
)
def test_constant(attribute, value):
    x = rand(2, 3)
    nodes = [helper.make_node("Constant", [], ["c"], **{attribute: value}), helper.make_node("Add", ["x", "c"], ["y"])]
    check(make_model(nodes, {"x": x}), {"x": x})


# --- the function: jit, vmap, grad, errors ---------------------------------------------------------


def small_cnn(path, seed=0):
    """A small image classifier using most ops: Conv, BatchNormalization, Relu, MaxPool, AveragePool,
    Concat, Add, Mul, Clip, GlobalAveragePool, Flatten, Gemm, Softmax-free logits."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.3):
        return (scale * rng.normal(size=shape)).astype(np.float32)

    weights = {
        "w1": w(4, 3, 3, 3),
        "b1": w(4),
        "scale": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "shift": w(4),
        "mean": w(4),
        "var": rng.uniform(0.5, 2, 4).astype(np.float32),
        "w2": w(4, 1, 3, 3),
        "half": np.asarray(0.5, np.float32),
        "six": np.asarray(6.0, np.float32),
        "zero": np.asarray(0.0, np.float32),
        "fc": w(5, 8),
        "fc_b": w(5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["m1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("AveragePool", ["r1"], ["a1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Conv", ["m1", "w2"], ["d1"], group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["a1", "half"], ["a2"]),
        helper.make_node("Add", ["d1", "a2"], ["s1"]),
        helper.make_node("Clip", ["s1", "zero", "six"], ["k1"]),
        helper.make_node("Concat", ["k1", "m1"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["g"]),
        helper.make_node("Flatten", ["g"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["y"], transB=1),
    ]
    x = rand(1, 3, 12, 12)
    model = make_model(nodes, {"x": x}, weights)
    onnx.save(model, path)
    return model


def test_small_cnn_matches_onnxruntime(tmp_path):
    model = small_cnn(tmp_path / "cnn.onnx")
    f, params = onnx_graph.load_onnx(tmp_path / "cnn.onnx")
    for seed in range(4):
        x = rand(3, 12, 12, seed=seed)
        expected = reference(model, {"x": x[None]})[0][0]
        np.testing.assert_allclose(np.asarray(f(params, jnp.asarray(x))), expected, rtol=1e-5, atol=1e-5)


def test_jit_and_vmap_agree_with_one_call(tmp_path):
    small_cnn(tmp_path / "cnn.onnx")
    f, params = onnx_graph.load_onnx(tmp_path / "cnn.onnx")
    xs = jnp.asarray(np.stack([rand(3, 12, 12, seed=s) for s in range(5)]))
    one_by_one = np.stack([np.asarray(f(params, x)) for x in xs])
    batched = np.asarray(jax.jit(jax.vmap(f, in_axes=(None, 0)))(params, xs))
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)


def test_gradient_against_central_differences_in_float64(tmp_path):
    """grad of a logit margin equals central differences of the same float64 function."""
    small_cnn(tmp_path / "cnn.onnx")
    with jax.enable_x64(True):
        f, params = onnx_graph.load_onnx(tmp_path / "cnn.onnx", dtype=jnp.float64)
        margin = lambda x: f(params, x)[1] - f(params, x)[3]
        x = jnp.asarray(rand(3, 12, 12, seed=7), jnp.float64)
        gradient = np.asarray(jax.grad(margin)(x)).reshape(-1)
        rng = np.random.default_rng(0)
        for index in rng.choice(x.size, 12, replace=False):
            e = np.zeros(x.size)
            e[index] = 1e-6
            e = jnp.asarray(e.reshape(x.shape))
            numeric = (float(margin(x + e)) - float(margin(x - e))) / 2e-6
            assert abs(numeric - gradient[index]) < 1e-6 * max(1.0, abs(numeric)), index


def test_float64_parameters(tmp_path):
    small_cnn(tmp_path / "cnn.onnx")
    with jax.enable_x64(True):
        f, params = onnx_graph.load_onnx(tmp_path / "cnn.onnx", dtype=jnp.float64)
        assert all(p.dtype == jnp.float64 for p in params.values())
        assert f(params, jnp.zeros((3, 12, 12))).dtype == jnp.float64


def test_unsupported_op_is_named(tmp_path):
    x = rand(2, 3)
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Tanh", ["r"], ["y"])], {"x": x})
    onnx.save(model, tmp_path / "tanh.onnx")
    with pytest.raises(onnx_graph.OnnxError, match=r"unsupported ONNX op\(s\): Tanh \("):
        onnx_graph.load_onnx(tmp_path / "tanh.onnx")


@pytest.mark.parametrize("content", [b"", b"not a model at all\n", bytes(range(256)) * 4])
def test_a_file_that_is_not_onnx_is_rejected(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(onnx_graph.OnnxError, match="is not an ONNX model"):
        onnx_graph.load_onnx(path)


def test_missing_file(tmp_path):
    with pytest.raises(onnx_graph.OnnxError, match="cannot read the ONNX file"):
        onnx_graph.load_onnx(tmp_path / "absent.onnx")


def test_shape_computed_from_values_is_a_clear_error(tmp_path):
    x = np.abs(rand(1, 4)) + 1
    nodes = [
        helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["xi", "zero"], ["shape"]),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    onnx.save(make_model(nodes, {"x": x}, {"zero": np.asarray([0], np.int64)}), tmp_path / "dynamic.onnx")
    f, params = onnx_graph.load_onnx(tmp_path / "dynamic.onnx")
    with pytest.raises(onnx_graph.OnnxError, match="Reshape node .* dynamic shape"):
        f(params, jnp.asarray(x[0]))


def test_dynamic_input_dimension_needs_a_shape(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.save(onnx.shape_inference.infer_shapes(model), tmp_path / "dynamic.onnx")
    with pytest.raises(onnx_graph.OnnxError, match="dynamic dimensions"):
        onnx_graph.load_onnx(tmp_path / "dynamic.onnx")
    f, params = onnx_graph.load_onnx(tmp_path / "dynamic.onnx", input_shape=(3, 4, 5))
    x = rand(3, 4, 5)
    np.testing.assert_array_equal(np.asarray(f(params, jnp.asarray(x))), np.maximum(x, 0))


def test_relu_and_clip_gradients_follow_pytorch():
    """Relu passes 0 at 0; Clip passes 1 strictly inside its interval (ReLU6 / Hardtanh, which export as Clip)."""
    x = jnp.asarray([-1.0, 0.0, 1.0, 6.0, 7.0])
    relu = onnx_graph.OPS["Relu"]
    clip = onnx_graph.OPS["Clip"]
    node = onnx_graph.Node("Clip", "c", ("x", "lo", "hi"), ("y",), {}, 20)
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(relu(node, v)))(x), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(
        jax.grad(lambda v: jnp.sum(clip(node, v, jnp.float32(0), jnp.float32(6))))(x), [0, 0, 1, 0, 0]
    )
