"""Benchmark: one forward and backward pass of the paper's MNIST CNN, per input, by batch size, XLA against PyTorch.

    pip install -e '.[bench]'
    python benchmarks/bench_cnn_pass.py --networks runs/mnist/networks.npz

What a gradient attack spends per step: the logits of a batch of inputs and
the gradient of one logit difference with respect to each input (no weight
gradients). For each batch size, in one process on the same cores: the JAX
network (`models.cnn.apply`, jitted and vmapped) and its PyTorch twin with the
same weights (`bench_attack_optimality.torch_cnn`, torch's threads set to the
core count), each timed as the median of REPEAT calls after a warm-up.
Attacks run their lanes and inputs in blocks of a few to a few tens of rows, so
the small batches are the ones that price an attack's step; the large ones say
how each framework scales. Results go to
benchmarks/results/bench_cnn_pass-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_attack_optimality import torch_cnn  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402

from jaxfrag.models import cnn  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REPEAT = 30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default=None, help="a `jaxfrag mnist` run's networks.npz (network 0)")
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if args.networks:
        params = cnn.select(cnn.load(Path(args.networks))[0], 0)
    else:  # an untrained network: the same arithmetic
        params = cnn.init(jax.random.key(0))
    # The gradient of one logit difference per input, as an attack's step takes it.
    rival, label = 3, 7

    def lead(x):
        logits = cnn.apply(params, x.reshape(cnn.IMAGE))
        return logits[rival] - logits[label]

    jax_step = jax.jit(jax.vmap(jax.value_and_grad(lead)))
    net = torch_cnn(params)

    def torch_step(x):
        x = x.clone().requires_grad_(True)
        logits = net(x)
        (logits[:, rival] - logits[:, label]).sum().backward()
        return logits.detach(), x.grad

    rows = []
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        x = rng.uniform(size=(batch, 784)).astype(np.float32)
        xj, xt = jnp.asarray(x), torch.tensor(x)
        jax.block_until_ready(jax_step(xj))
        torch_step(xt)
        jax_s, _ = median_time(lambda xj=xj: jax.block_until_ready(jax_step(xj)), args.repeat)
        torch_s, _ = median_time(lambda xt=xt: torch_step(xt), args.repeat)
        rows.append(
            {
                "batch": batch,
                "jax_ms_per_input": 1e3 * jax_s / batch,
                "torch_ms_per_input": 1e3 * torch_s / batch,
                "jax_over_torch": jax_s / torch_s,
            }
        )
        print(
            f"batch {batch:4d}: XLA {rows[-1]['jax_ms_per_input']:.3f} ms/input, PyTorch "
            f"{rows[-1]['torch_ms_per_input']:.3f} ms/input, XLA / PyTorch {rows[-1]['jax_over_torch']:.2f}",
            flush=True,
        )
    info = machine()
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    write_result(args.out, "bench_cnn_pass", info, {"repeat": args.repeat, "rows": rows}, False, "")


if __name__ == "__main__":
    main()
