"""Benchmark: training the paper's MNIST CNN, K networks at once in JAX against PyTorch one at a time.

    pip install -e '.[bench]'                         # torch==2.13.0, benchmark-only
    python benchmarks/bench_mnist_train.py            # full run
    python benchmarks/bench_mnist_train.py --quick    # a smoke run

In one process, on the same MNIST batches of 64 (jaxfrag.datasets), the same
network, loss and optimiser (Adadelta, lr 1.0): images per second of
* jaxfrag: `jaxfrag.models.cnn`'s compiled training block (scan over steps,
  vmapped over K networks), for K = 1 and K = 4, compile time apart;
* PyTorch: the paper's way, PyTorch's MNIST example network trained one network
  at a time with torch.optim.Adadelta on every core (torch.set_num_threads).
And what bounds ours: the training FLOPs per image (3x the forward pass's
multiply-adds x 2) over the measured time, against the machine's float32 matmul
rate in JAX (a 2048 x 2048 product), the practical ceiling of a conv net lowered
to matmuls. Results go to benchmarks/results/bench_mnist_train-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402

from jaxfrag import datasets  # noqa: E402
from jaxfrag.models import cnn  # noqa: E402

# Multiply-adds of one forward pass: conv1, conv2, dense 9216 -> 128, dense 128 -> 10.
FORWARD_MACS = 26 * 26 * 32 * 9 + 24 * 24 * 64 * 288 + 9216 * 128 + 128 * 10
TRAIN_FLOPS = 3 * 2 * FORWARD_MACS  # forward + backward (two products per layer) per image


def jax_rate(images, labels, networks: int, steps: int, repeat: int) -> dict:
    config = cnn.CNNConfig()
    keys = jax.random.split(jax.random.key(0), networks)
    tx = cnn.optimizer(config, steps)
    params = jax.vmap(cnn.init)(keys)

    def fresh():  # new buffers each run: the training block donates its state
        copy = jax.tree.map(jnp.copy, params)
        return cnn.TrainState(copy, jax.vmap(tx.init)(copy), jnp.zeros(networks, jnp.int32))

    run = cnn.train_steps(config, steps)
    order = jnp.tile(jnp.arange(steps * 64).reshape(1, steps, 64), (networks, 1, 1))
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    start = time.perf_counter()
    jax.block_until_ready(run(fresh(), keys, images, labels, order))
    compile_s = time.perf_counter() - start
    seconds, _ = median_time(lambda: jax.block_until_ready(run(fresh(), keys, images, labels, order)), repeat)
    rate = networks * steps * 64 / seconds
    return {"networks": networks, "steps": steps, "seconds": seconds, "compile_s": compile_s, "images_per_s": rate}


def torch_rate(images, labels, steps: int, repeat: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 1)

    class Net(nn.Module):  # PyTorch's examples/mnist/main.py, the paper's network
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv2(F.relu(self.conv1(x))))
            x = self.dropout1(F.max_pool2d(x, 2))
            x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
            return F.log_softmax(self.fc2(x), dim=1)

    x = (torch.tensor(images[: steps * 64], dtype=torch.float32)[:, None] / 255 - 0.1307) / 0.3081
    y = torch.tensor(labels[: steps * 64], dtype=torch.long)

    def train():
        torch.manual_seed(0)
        model = Net()
        optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
        model.train()
        for step in range(steps):
            batch = slice(64 * step, 64 * (step + 1))
            optimizer.zero_grad()
            F.nll_loss(model(x[batch]), y[batch]).backward()
            optimizer.step()

    train()  # warm-up
    seconds, _ = median_time(train, repeat)
    return {
        "networks": 1,
        "steps": steps,
        "seconds": seconds,
        "images_per_s": steps * 64 / seconds,
        "threads": torch.get_num_threads(),
    }


def matmul_ceiling(repeat: int) -> float:
    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    jax.block_until_ready(product(a))
    seconds, _ = median_time(lambda: jax.block_until_ready(product(a)), repeat)
    return 2 * 2048**3 / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    steps, repeat = (10, 2) if args.quick else (50, 3)
    info = machine()
    print(f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']}")
    data = datasets.mnist()
    ceiling = matmul_ceiling(repeat * 3)
    rows = {"torch_one_at_a_time": torch_rate(data.x_train, data.y_train, steps, repeat)}
    for networks in (1, 4):
        rows[f"jax_{networks}"] = jax_rate(data.x_train, data.y_train, networks, steps, repeat)
    torch_ips = rows["torch_one_at_a_time"]["images_per_s"]
    for row in rows.values():
        row["gflops"] = TRAIN_FLOPS * row["images_per_s"] / 1e9
        row["fraction_of_matmul_ceiling"] = TRAIN_FLOPS * row["images_per_s"] / ceiling
        row["speedup_over_torch"] = row["images_per_s"] / torch_ips
    print(f"matmul ceiling {ceiling / 1e9:.1f} GFLOP/s; training is {TRAIN_FLOPS / 1e6:.1f} MFLOP per image")
    for name, row in rows.items():
        print(
            f"{name}: {row['images_per_s']:.0f} images/s ({row['gflops']:.1f} GFLOP/s, "
            f"{row['fraction_of_matmul_ceiling']:.0%} of the matmul ceiling), {row['speedup_over_torch']:.2f}x PyTorch"
        )
    body = {"rows": rows, "matmul_ceiling_flops": ceiling, "train_flops_per_image": TRAIN_FLOPS}
    write_result(args.out, "bench_mnist_train", info, body, args.quick)


if __name__ == "__main__":
    main()
