"""Small ONNX image classifiers built with onnx.helper, for tests that need a model file but not a real one."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(path, size: int = 32, classes: int = 1000, seed: int = 0):
    """A (1, 3, size, size) -> (1, classes) random CNN with the ops of mobile networks: Conv (dense, depthwise,
    1x1), Clip (ReLU6), Add, ReduceMean, Reshape, Gemm. Written to `path`; returns the ModelProto."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.5):
        return (scale * rng.normal(size=shape)).astype(np.float32)

    weights = {
        "stem": w(8, 3, 3, 3),
        "stem_b": w(8, scale=0.1),
        "depthwise": w(8, 1, 3, 3),
        "pointwise": w(8, 8, 1, 1, scale=0.3),
        "zero": np.asarray(0.0, np.float32),
        "six": np.asarray(6.0, np.float32),
        "axes": np.asarray([2, 3], np.int64),
        "shape": np.asarray([1, -1], np.int64),
        "fc": w(classes, 8, scale=1.0),
        "fc_b": w(classes, scale=0.5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "stem", "stem_b"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "zero", "six"], ["r1"]),
        helper.make_node("Conv", ["r1", "depthwise"], ["c2"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "zero", "six"], ["r2"]),
        helper.make_node("Conv", ["r2", "pointwise"], ["c3"]),
        helper.make_node("Add", ["c3", "r1"], ["s"]),
        helper.make_node("ReduceMean", ["s", "axes"], ["m"], keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def onnx_model(nodes, weights: dict, input_shape, output_width: int, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        # A symbolic batch, so that onnxruntime evaluates many points at once.
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", output_width])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def chain_model(network, softmax: bool = False) -> onnx.ModelProto:
    """A `jaxfrag.certify` chain of Conv, Relu, MaxPool and Dense layers as the ONNX graph PyTorch would
    export: NCHW, OIHW kernels, Flatten in (C, H, W) order before the first Dense (its columns permuted
    to match), Gemm with transB; optionally a Softmax last. Its input is (1, C, H, W) of the chain's
    (H, W, C) image."""
    nodes, weights, value, shape = [], {}, "x", None
    first = network[0]
    input_shape = (1, first.shape[2], first.shape[0], first.shape[1]) if hasattr(first, "shape") else None
    for k, layer in enumerate(network):
        out = f"v{k}"
        kind = type(layer).__name__
        if kind == "Conv":
            shape = layer.out_shape
            weights[f"w{k}"] = np.asarray(layer.kernel, np.float32).transpose(3, 2, 0, 1)
            weights[f"b{k}"] = np.asarray(layer.bias, np.float32)
            nodes.append(helper.make_node("Conv", [value, f"w{k}", f"b{k}"], [out]))
        elif kind == "Relu":
            nodes.append(helper.make_node("Relu", [value], [out]))
        elif kind == "MaxPool":
            h, w, c = layer.shape
            shape = (h // 2, w // 2, c)
            nodes.append(helper.make_node("MaxPool", [value], [out], kernel_shape=[2, 2], strides=[2, 2]))
        else:  # Dense
            weight = np.asarray(layer.weight, np.float32)
            if shape is not None:  # after an image: (C, H, W) flatten order, columns taken from (H, W, C)
                h, w, c = shape
                hwc = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
                weight = weight[:, hwc]
                nodes.append(helper.make_node("Flatten", [value], [f"flat{k}"], axis=1))
                value, shape = f"flat{k}", None
            weights[f"w{k}"], weights[f"b{k}"] = weight, np.asarray(layer.bias, np.float32)
            nodes.append(helper.make_node("Gemm", [value, f"w{k}", f"b{k}"], [out], transB=1))
            if input_shape is None:
                input_shape = (1, weight.shape[1])
        value = out
    classes = int(np.asarray(network[-1].bias).shape[0])
    last = (
        helper.make_node("Softmax", [value], ["y"], axis=-1)
        if softmax
        else helper.make_node("Identity", [value], ["y"])
    )
    nodes.append(last)
    return onnx_model(nodes, weights, input_shape, classes, "chain")


def clip_residual_model(seed: int, width: int = 8, classes: int = 3, inputs: int = 2) -> onnx.ModelProto:
    """A random (1, inputs) -> (1, classes) graph with a Clip of both ends (as ReLU6), a residual Add of
    the input, a Sub and a Mul by constants, BatchNormalization and Relu: the nonlinear ops mobile
    networks have, on an input small enough to search exactly."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale=1.0):
        return (scale * rng.normal(size=shape)).astype(np.float32)

    weights = {
        "w1": w(width, inputs, scale=2.0), "b1": w(width),
        "low": np.asarray(0.0, np.float32), "high": np.asarray(1.0, np.float32),
        "w2": w(inputs, width, scale=0.7), "b2": w(inputs, scale=0.3),
        "shift": w(1, inputs), "gain": np.abs(w(1, inputs)) + 0.5,
        "w3": w(width, inputs, scale=1.5), "b3": w(width, scale=0.5),
        "scale": np.abs(w(width)) + 0.5, "beta": w(width, scale=0.3), "mean": w(width, scale=0.3),
        "var": np.abs(w(width)) + 0.5,
        "w4": w(classes, width), "b4": w(classes, scale=0.3),
    }  # fmt: skip
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], transB=1),
        helper.make_node("Clip", ["a", "low", "high"], ["c"]),
        helper.make_node("Gemm", ["c", "w2", "b2"], ["d"], transB=1),
        helper.make_node("Add", ["d", "x"], ["e"]),  # the residual connection
        helper.make_node("Sub", ["e", "shift"], ["f"]),
        helper.make_node("Mul", ["f", "gain"], ["g"]),
        helper.make_node("Gemm", ["g", "w3", "b3"], ["h"], transB=1),
        helper.make_node("Unsqueeze", ["h", "axes"], ["h4"]),
        helper.make_node("BatchNormalization", ["h4", "scale", "beta", "mean", "var"], ["n4"]),
        helper.make_node("Flatten", ["n4"], ["n"], axis=1),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Gemm", ["r", "w4", "b4"], ["y"], transB=1),
    ]
    weights["axes"] = np.asarray([2, 3], np.int64)
    return onnx_model(nodes, weights, (1, inputs), classes, "clip_residual")
