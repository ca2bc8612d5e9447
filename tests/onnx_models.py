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
