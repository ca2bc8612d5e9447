"""Any ONNX graph as a pure JAX function: an interpreter over an op registry, one small function per op.

Contract:
* `load_onnx(path, input_shape=None, dtype=None) -> (f, params)` -- f(params, x) is the
  graph's first output for ONE input x without its batch axis (the graph runs it as a
  batch of one), so it composes with jit, vmap and grad like every model here; params
  is a dict of the graph's float weights (jnp arrays, cast to `dtype` when given; the
  input is cast to the weights' dtype). Integer tensors (shapes, axes) stay numpy
  constants, and shape arithmetic on them (Shape, Gather, Concat ...) is done in numpy
  while tracing, so a Reshape whose target shape is computed from the input's shape
  resolves. The input's shape comes from the file (ONNX shape inference); a symbolic
  batch axis is taken as 1, and any other symbolic axis needs `input_shape`.
* `read_model(path)` -- the checked `onnx.ModelProto` (used by `load_onnx`).
* `graph_function(model, dtype=None) -> (run, params)` -- the whole graph:
  run(params, {input name: array}) -> list of outputs, batch axis included.
* `parse(model, dtype=None) -> (nodes, params, constants)`, `run_node(node, values)` and
  `input_signature(model, params, input_shape, dtype)` -- the pieces `graph_function` and
  `load_onnx` are made of, for code that walks the graph itself (`models.onnx_bounds`).
* `SUPPORTED_OPS` -- the registry's op types.
Every problem is an `OnnxError` (a ValueError) with one line naming the op, node or
file: an op outside the registry, an attribute or mode it does not implement, a shape
or axis that depends on the input's values at run time, a file that is not ONNX.

Gradients follow the frameworks that export these graphs: Relu and Clip pass gradient
1 only strictly inside their interval (PyTorch's relu and ReLU6/Hardtanh, which export as
Clip), MaxPool sends it to the first maximum of each window. Convolutions and matmuls run
at full float32 precision on every backend.

Hand-written because the one library that did this (jaxonnxruntime 0.3.0, 2023) no longer
runs on current JAX; `onnx` itself only reads the file and infers shapes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from jax import lax
from onnx import GraphProto, helper, numpy_helper


class OnnxError(ValueError):
    """A graph the interpreter cannot run, or a file that is not an ONNX model."""


class Node(NamedTuple):
    op: str
    name: str
    inputs: tuple[str, ...]  # "" for an omitted optional input
    outputs: tuple[str, ...]
    attrs: dict
    opset: int  # the default domain's opset version, for ops whose signature changed

    def where(self) -> str:
        return f"{self.op} node '{self.name or self.outputs[0]}'"


OPS: dict[str, Callable] = {}
PRECISION = lax.Precision.HIGHEST  # float32 products as ONNX Runtime and PyTorch compute them, on GPU too
CONV_SUMS = True  # depthwise and 1x1 convolutions as sums (see `_conv`); False: XLA's convolution (benchmarks)


def _op(*names: str):
    def register(function):
        for name in names:
            OPS[name] = function
        return function

    return register


# --- static (numpy) versus traced values ---------------------------------------------------------


def _is_static(value) -> bool:
    return isinstance(value, np.ndarray | np.generic)


def _xp(*values):
    """numpy when every value is a numpy constant (shape arithmetic stays static), else jax.numpy."""
    return np if all(_is_static(v) for v in values if v is not None) else jnp


def _static(node: Node, value, what: str) -> np.ndarray:
    """A value the op needs while tracing (a shape, axes, pads), as numpy."""
    if _is_static(value):
        return np.asarray(value)
    raise OnnxError(
        f"{node.where()}: its {what} is computed from the input's values at run time; the interpreter needs "
        "it fixed when the graph is traced (a dynamic shape it cannot resolve)"
    )


def _ints(node: Node, value, what: str) -> list[int]:
    return [int(v) for v in _static(node, value, what).reshape(-1)]


def _axes(node: Node, rank: int, name: str = "axes", index: int = 1, inputs=()) -> list[int] | None:
    """Axes from the attribute (older opsets) or the input at `index` (newer), made non-negative."""
    value = node.attrs.get(name)
    if value is None and len(inputs) > index and inputs[index] is not None:
        value = _ints(node, inputs[index], name)
    if value is None:
        return None
    axes = [int(a) + rank if int(a) < 0 else int(a) for a in value]
    if any(not 0 <= a < rank for a in axes):
        raise OnnxError(f"{node.where()}: {name} {list(value)} out of range for rank {rank}")
    return axes


def _string(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- element-wise ops ------------------------------------------------------------------------------


def _integer_division(a, b):
    quotient = np.abs(a) // np.abs(b)  # ONNX truncates towards zero, numpy floors
    return (np.sign(a) * np.sign(b) * quotient).astype(np.result_type(a, b))


_BINARY = {
    "Add": lambda xp, a, b: xp.add(a, b),
    "Sub": lambda xp, a, b: xp.subtract(a, b),
    "Mul": lambda xp, a, b: xp.multiply(a, b),
    "Div": lambda xp, a, b: (
        _integer_division(a, b) if xp is np and np.issubdtype(np.result_type(a, b), np.integer) else xp.divide(a, b)
    ),
}


@_op(*_BINARY)
def _binary(node, a, b):
    return _BINARY[node.op](_xp(a, b), a, b)


@_op("Relu")
def _relu(node, x):
    return jnp.where(x > 0, x, jnp.zeros_like(x))  # gradient 0 at 0, as PyTorch's


@_op("Sigmoid")
def _sigmoid(node, x):
    return jax.nn.sigmoid(x)


@_op("Clip")
def _clip(node, x, low=None, high=None):
    if node.opset < 11:
        low, high = node.attrs.get("min"), node.attrs.get("max")
    # Written with where, not jnp.clip (whose max/min share the gradient half and half at a tie): gradient 1
    # on the open interval (low, high) and 0 at its ends, as PyTorch's ReLU6 / Hardtanh, which exporters
    # write as Clip. Exact ends are common: a zero-padded border makes pre-activations of exactly 0.
    if low is not None:
        x = jnp.where(x <= low, jnp.asarray(low, x.dtype), x)
    if high is not None:
        x = jnp.where(x >= high, jnp.asarray(high, x.dtype), x)
    return x


@_op("Softmax")
def _softmax(node, x):
    if node.opset >= 13:
        return jax.nn.softmax(x, axis=node.attrs.get("axis", -1))
    # Before opset 13 the input is flattened to 2-D at `axis` (default 1) and normalised per row.
    axis = node.attrs.get("axis", 1) % x.ndim
    rows = x.reshape(math.prod(x.shape[:axis]), -1)
    return jax.nn.softmax(rows, axis=1).reshape(x.shape)


@_op("Identity")
def _identity(node, x):
    return x


@_op("Dropout")
def _dropout(node, x, ratio=None, training=None):
    if training is not None and bool(_static(node, training, "training_mode")):
        raise OnnxError(f"{node.where()}: training-mode dropout is random; only inference graphs run")
    if len(node.outputs) > 1:
        return x, np.ones(x.shape, bool)
    return x


@_op("Cast")
def _cast(node, x):

    dtype = helper.tensor_dtype_to_np_dtype(node.attrs["to"])
    return np.asarray(x).astype(dtype) if _is_static(x) else x.astype(jax.dtypes.canonicalize_dtype(dtype))


# --- shape ops (numpy while their inputs are constants) ------------------------------------------


@_op("Constant")
def _constant(node):
    attrs = node.attrs
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            value = attrs[key]
            if key == "value":
                return numpy_helper.to_array(value)
            return np.asarray(value, np.float32 if "float" in key else np.int64)
    raise OnnxError(f"{node.where()}: only tensor, float and int constants are supported, not {sorted(attrs)}")


@_op("Shape")
def _shape(node, x):
    shape = np.asarray(x.shape, np.int64)
    return shape[node.attrs.get("start", 0) : node.attrs.get("end", len(shape))]


@_op("Gather")
def _gather(node, x, indices):
    axis = node.attrs.get("axis", 0) % x.ndim
    xp = _xp(x, indices)
    indices = (np if xp is np else jnp).where(indices < 0, indices + x.shape[axis], indices)
    return xp.take(x, indices, axis=axis)


@_op("Concat")
def _concat(node, *values):
    return _xp(*values).concatenate(values, axis=node.attrs["axis"])


@_op("Reshape")
def _reshape(node, x, shape):
    shape = _ints(node, shape, "target shape")
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return _xp(x).reshape(x, shape)


@_op("Flatten")
def _flatten(node, x):
    axis = node.attrs.get("axis", 1) % (x.ndim + 1) if x.ndim else 0
    return _xp(x).reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@_op("Transpose")
def _transpose(node, x):
    return _xp(x).transpose(x, node.attrs.get("perm", tuple(reversed(range(x.ndim)))))


@_op("Squeeze")
def _squeeze(node, *inputs):
    x = inputs[0]
    axes = _axes(node, x.ndim, inputs=inputs)
    if axes is None:
        axes = [i for i, size in enumerate(x.shape) if size == 1]
    if any(x.shape[a] != 1 for a in axes):
        raise OnnxError(f"{node.where()}: cannot squeeze axes {axes} of shape {tuple(x.shape)}")
    return _xp(x).squeeze(x, axis=tuple(axes))


@_op("Unsqueeze")
def _unsqueeze(node, *inputs):
    x = inputs[0]
    given = node.attrs.get("axes")
    if given is None and len(inputs) > 1 and inputs[1] is not None:
        given = _ints(node, inputs[1], "axes")
    if not given:
        raise OnnxError(f"{node.where()}: no axes given")
    axes = _axes(node, x.ndim + len(given), inputs=inputs)  # axes index the output
    return _xp(x).expand_dims(x, axis=tuple(sorted(axes)))


# --- linear algebra --------------------------------------------------------------------------------


@_op("MatMul")
def _matmul(node, a, b):
    return jnp.matmul(a, b, precision=PRECISION)


@_op("Gemm")
def _gemm(node, a, b, c=None):
    attrs = node.attrs
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * jnp.matmul(a, b, precision=PRECISION)
    return y if c is None else y + attrs.get("beta", 1.0) * c


# --- convolution, pooling, normalisation -----------------------------------------------------------


def _window_padding(node: Node, spatial: tuple[int, ...], kernel, strides, dilations, ceil_mode=False):
    """((low, high) per spatial axis, extra high padding that ceil_mode adds and that counts for nothing)."""
    n = len(spatial)
    auto = _string(node.attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
    elif auto == "VALID":
        pads = [(0, 0)] * n
    elif auto == "NOTSET":
        flat = node.attrs.get("pads", [0] * 2 * n)
        pads = [(flat[i], flat[i + n]) for i in range(n)]
    else:
        raise OnnxError(f"{node.where()}: unknown auto_pad {auto!r}")
    extra = [0] * n
    if ceil_mode:
        for i, (size, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations, strict=True)):
            low, high = pads[i]
            span = size + low + high - ((k - 1) * d + 1)
            out = -(-span // s) + 1
            if (out - 1) * s >= size + low:  # a last window starting in the padding is dropped
                out -= 1
            extra[i] = max((out - 1) * s - span, 0)
    return pads, extra


def _window_attrs(node: Node, x, kernel=None):
    n = x.ndim - 2
    kernel = tuple(node.attrs.get("kernel_shape", kernel))
    strides = tuple(node.attrs.get("strides", (1,) * n))
    dilations = tuple(node.attrs.get("dilations", (1,) * n))
    return kernel, strides, dilations


@_op("Conv")
def _conv(node, x, w, b=None):
    kernel, strides, dilations = _window_attrs(node, x, w.shape[2:])
    pads, _ = _window_padding(node, x.shape[2:], kernel, strides, dilations)
    group = node.attrs.get("group", 1)
    w = w.astype(x.dtype)
    # XLA's CPU convolution is much slower than these sums for depthwise and 1x1 kernels, most of a mobile
    # network's work: EfficientNet-Lite0 runs 6.7x slower with it on every layer (benchmarks/bench_onnx.py,
    # CONV_SUMS = False). For larger dense kernels it was as fast or faster, so they keep it.
    if CONV_SUMS and x.ndim == 4 and group == x.shape[1] == w.shape[0] and w.shape[1] == 1:
        y = _depthwise(x, w, strides, pads, dilations)
    elif CONV_SUMS and x.ndim == 4 and group == 1 and kernel == (1, 1):
        y = _shifted_products(x, w, strides, pads, dilations)
    else:
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=strides,
            padding=pads,
            rhs_dilation=dilations,
            feature_group_count=group,
            precision=PRECISION,
        )
    return y if b is None else y + b.reshape(-1, *([1] * (x.ndim - 2)))


def _windows(x, kernel, strides, pads, dilations):
    """(i, j, the input's slice that kernel tap (i, j) multiplies) for a 2-D convolution, NCHW."""
    x = jnp.pad(x, ((0, 0), (0, 0), *pads))
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    height = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
    width = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield (
                i,
                j,
                x[:, :, i * dh : i * dh + sh * (height - 1) + 1 : sh, j * dw : j * dw + sw * (width - 1) + 1 : sw],
            )


def _shifted_products(x, w, strides, pads, dilations):
    """A dense 2-D convolution as a sum over kernel taps of channel matmuls on shifted slices."""
    y = None
    for i, j, window in _windows(x, w.shape[2:], strides, pads, dilations):
        term = jnp.einsum("nchw,oc->nohw", window, w[:, :, i, j], precision=PRECISION)
        y = term if y is None else y + term
    return y


def _depthwise(x, w, strides, pads, dilations):
    """A depthwise 2-D convolution (one filter per channel) as a sum of shifted, strided slices times weights."""
    y = None
    for i, j, window in _windows(x, w.shape[2:], strides, pads, dilations):
        term = window * w[None, :, 0, i, j, None, None]
        y = term if y is None else y + term
    return y


def _pool_windows(node, x):
    if node.attrs.get("storage_order", 0):
        raise OnnxError(f"{node.where()}: storage_order 1 (column-major indices) is not supported")
    kernel, strides, dilations = _window_attrs(node, x)
    pads, extra = _window_padding(node, x.shape[2:], kernel, strides, dilations, node.attrs.get("ceil_mode", 0))
    window = dict(
        window_dimensions=(1, 1, *kernel),
        window_strides=(1, 1, *strides),
        window_dilation=(1, 1, *dilations),
    )
    return pads, extra, window


@_op("MaxPool")
def _max_pool(node, x):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise OnnxError(f"{node.where()}: the Indices output is not supported")
    pads, extra, window = _pool_windows(node, x)
    padding = ((0, 0), (0, 0), *[(lo, hi + e) for (lo, hi), e in zip(pads, extra, strict=True)])
    return lax.reduce_window(x, -jnp.inf, lax.max, padding=padding, **window)


@_op("AveragePool")
def _average_pool(node, x):
    pads, extra, window = _pool_windows(node, x)
    padding = ((0, 0), (0, 0), *[(lo, hi + e) for (lo, hi), e in zip(pads, extra, strict=True)])
    total = lax.reduce_window(x, jnp.zeros((), x.dtype), lax.add, padding=padding, **window)
    # The divisor counts the input's cells, plus the explicit padding's with count_include_pad; the
    # padding ceil_mode adds never counts (ONNX Runtime's and PyTorch's rule).
    ones = jnp.ones((1, 1, *x.shape[2:]), x.dtype)
    if node.attrs.get("count_include_pad", 0):
        ones = jnp.pad(ones, ((0, 0), (0, 0), *pads), constant_values=1)
        padding = ((0, 0), (0, 0), *[(0, e) for e in extra])
    count = lax.reduce_window(ones, jnp.zeros((), x.dtype), lax.add, padding=padding, **window)
    return total / count


@_op("GlobalAveragePool")
def _global_average_pool(node, x):
    return jnp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@_op("ReduceMean")
def _reduce_mean(node, *inputs):
    x = inputs[0]
    axes = _axes(node, x.ndim, inputs=inputs if node.opset >= 18 else ())
    if axes is None or not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.ndim))
    return jnp.mean(x, axis=tuple(axes), keepdims=bool(node.attrs.get("keepdims", 1)))


@_op("BatchNormalization")
def _batch_norm(node, x, scale, bias, mean, var):
    if node.attrs.get("training_mode", 0) or len([o for o in node.outputs if o]) > 1:
        raise OnnxError(f"{node.where()}: training-mode batch normalisation is not supported (inference only)")
    shape = (-1, *([1] * (x.ndim - 2)))
    inverse = scale / jnp.sqrt(var + node.attrs.get("epsilon", 1e-5))
    return (x - mean.reshape(shape)) * inverse.reshape(shape) + bias.reshape(shape)


@_op("Pad")
def _pad(node, x, pads=None, value=None, axes=None):
    mode = _string(node.attrs.get("mode", "constant"))
    if node.opset < 11:
        pads, value = node.attrs["pads"], node.attrs.get("value", 0.0)
    pads = _ints(node, pads, "pads")
    axes = list(range(x.ndim)) if axes is None else [a % x.ndim for a in _ints(node, axes, "axes")]
    widths = [[0, 0] for _ in range(x.ndim)]
    for i, axis in enumerate(axes):
        widths[axis] = [pads[i], pads[i + len(axes)]]
    # Negative pads crop.
    x = x[tuple(slice(max(-lo, 0), x.shape[a] - max(-hi, 0)) for a, (lo, hi) in enumerate(widths))]
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    if mode == "constant":
        fill = jnp.zeros((), x.dtype) if value is None else jnp.asarray(value, x.dtype).reshape(-1)[0]
        return lax.pad(x, fill, [(lo, hi, 0) for lo, hi in widths])
    if mode in ("reflect", "edge", "wrap"):
        return jnp.pad(x, widths, mode=mode)
    raise OnnxError(f"{node.where()}: unknown pad mode {mode!r}")


SUPPORTED_OPS = tuple(sorted(OPS))


# --- the graph -------------------------------------------------------------------------------------


def read_model(path: str | os.PathLike):
    """The model in `path`, checked and with inferred shapes; OnnxError if it is not a usable ONNX file."""

    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as error:
        raise OnnxError(f"cannot read the ONNX file {os.fspath(path)!r}: {error.strerror or error}") from None
    try:
        model = onnx.load_model_from_string(content)
        onnx.checker.check_model(model)
    except Exception as error:  # protobuf's DecodeError, onnx's ValidationError: both mean "not a model"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OnnxError(f"{os.fspath(path)!r} is not an ONNX model ({reason[:200]})") from None
    if not model.graph.node:
        raise OnnxError(f"{os.fspath(path)!r} is not an ONNX model (its graph has no nodes)")
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a help, not a requirement: the trace finds every shape
        return model


def _opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return versions[0] if versions else 1


def _nodes(model) -> list[Node]:

    opset = _opset(model)
    nodes, unsupported = [], []
    for proto in model.graph.node:
        if proto.domain not in ("", "ai.onnx") or proto.op_type not in OPS:
            unsupported.append(proto.op_type if proto.domain in ("", "ai.onnx") else f"{proto.domain}.{proto.op_type}")
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        if any(isinstance(v, GraphProto) for v in attrs.values()):  # control flow (If, Loop, Scan)
            unsupported.append(proto.op_type)
            continue
        nodes.append(Node(proto.op_type, proto.name, tuple(proto.input), tuple(proto.output), attrs, opset))
    if unsupported:
        names = ", ".join(sorted(set(unsupported)))
        raise OnnxError(f"unsupported ONNX op(s): {names} (the interpreter supports {', '.join(SUPPORTED_OPS)})")
    return nodes


def parse(model, dtype=None) -> tuple[list[Node], dict, dict]:
    """(nodes, params, constants): the graph's nodes in order, its float weights as jnp arrays (cast to
    `dtype` when given) and its integer tensors as numpy constants. OnnxError for an op outside the registry."""

    nodes = _nodes(model)
    params, constants = {}, {}
    for tensor in model.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if np.issubdtype(value.dtype, np.floating):
            params[tensor.name] = jnp.asarray(value, dtype or value.dtype)
        else:
            constants[tensor.name] = value
    return nodes, params, constants


def run_node(node: Node, values: dict) -> tuple:
    """Every output of one node, its inputs read from `values` (OnnxError if one is not computed yet)."""
    try:
        args = [values[name] if name else None for name in node.inputs]
    except KeyError as missing:
        raise OnnxError(f"{node.where()}: input {missing.args[0]!r} is not computed before it") from None
    result = OPS[node.op](node, *args)
    return result if isinstance(result, tuple) else (result,)


def graph_function(model, dtype=None):
    """(run, params) for the whole graph; see the module docstring."""

    nodes, params, constants = parse(model, dtype)
    outputs = [o.name for o in model.graph.output]

    def run(params: dict, feeds: dict) -> list:
        values = {**constants, **params, **feeds}
        for node in nodes:
            values.update(zip(node.outputs, run_node(node, values), strict=False))
        return [values[name] for name in outputs]

    return run, params


def _input(model):
    """The graph's one real input (initializers listed as inputs are weights): (name, dims, numpy dtype)."""

    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise OnnxError(f"the graph has {len(inputs)} inputs {[i.name for i in inputs]}; a classifier has one")
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return inputs[0].name, dims, helper.tensor_dtype_to_np_dtype(tensor.elem_type)


def input_signature(model, params: dict, input_shape: tuple[int, ...] | None = None, dtype=None):
    """(name, shape without the batch axis, float dtype) of the graph's input; OnnxError for a shape it cannot trace."""
    name, dims, input_dtype = _input(model)
    if not dims:
        raise OnnxError(f"input {name!r} has no shape in the file; a batch axis first is expected")
    if dims[0] not in (1,) and isinstance(dims[0], int):
        raise OnnxError(f"input {name!r} has a fixed batch of {dims[0]}; only a batch axis of 1 or symbolic runs")
    if input_shape is None:
        symbolic = [d for d in dims[1:] if not isinstance(d, int) or d <= 0]
        if symbolic:
            raise OnnxError(
                f"input {name!r} has dynamic dimensions {symbolic} (shape {dims}); pass the input shape "
                "(e.g. --size) so the graph can be traced"
            )
        input_shape = tuple(dims[1:])
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != len(dims) - 1:
        raise OnnxError(f"input {name!r} has rank {len(dims)} with its batch axis; got input shape {input_shape}")
    if dtype is not None:
        float_dtype = jnp.dtype(dtype)
    else:
        float_dtype = next(iter(params.values())).dtype if params else input_dtype
    return name, input_shape, float_dtype


def load_onnx(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None, dtype=None):
    """(f, params): f(params, x) is the graph's first output for one input x without its batch axis."""
    model = read_model(path)
    run, params = graph_function(model, dtype)  # unsupported ops are reported before anything else
    name, input_shape, float_dtype = input_signature(model, params, input_shape, dtype)

    def f(params: dict, x: jax.Array) -> jax.Array:
        if x.shape != input_shape:
            raise ValueError(f"the model takes one input of shape {input_shape}, got {tuple(x.shape)}")
        return run(params, {name: x.astype(float_dtype)[None]})[0][0]

    return f, params
