"""Measurement: how far `attacks.minimal_l2`'s norm moves when the same inputs are attacked in another program layout.

    python benchmarks/attack_layouts.py            # 400 inputs per family
    python benchmarks/attack_layouts.py --quick    # a smoke run

XLA compiles a function differently alone, vmapped over a batch, or inside a
larger program (fusions, FMAs, reduction order), so the float32 logits of one
input differ in their last bits between layouts. The attack verifies every
answer against a rounding margin, so its verdict (success) does not move; its
norm can, because a walk of 200 annealed steps and the lanes' competition
amplify last-bit differences into a different (equally valid) local minimum.
This script attacks the same inputs three ways -- one compiled call per input,
all inputs vmapped in one call, and in blocks of 4 (jax.lax.map) inside a
program that also returns the logits -- on random ReLU nets of the two shapes
the suite and the sweep use (d = 6 and 13 -> 48 -> 2, trained-sized weights;
d = 12 -> 64 -> 10), and reports the relative norm differences between layouts
(median, p99, max, share above 1e-6). The suite's tolerance for comparing an
attack across programs (tests/test_relu.py) is set from this measurement.
Results go to benchmarks/results/attack_layouts-<time>.json.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, write_result  # noqa: E402

from jaxfrag import attacks  # noqa: E402
from jaxfrag.models import linear as linear_net  # noqa: E402
from jaxfrag.models import relu as relu_net  # noqa: E402

FAMILIES = {"d6-48-2": (6, 48, 2), "d13-48-2": (13, 48, 2), "d12-64-10": (12, 64, 10)}


def nets_and_inputs(key, count: int, d: int, width: int, classes: int):
    keys = jax.random.split(key, 5)
    weights = (
        jax.random.normal(keys[0], (count, width, d)) / np.sqrt(d),
        jax.random.normal(keys[1], (count, classes, width)) / np.sqrt(width),
    )
    biases = (0.1 * jax.random.normal(keys[2], (count, width)), 0.1 * jax.random.normal(keys[3], (count, classes)))
    x = jax.random.normal(keys[4], (count, d))
    nets = linear_net.LinearNet(weights, biases)
    labels = jax.vmap(lambda net, point: jnp.argmax(relu_net.apply(net, point)))(nets, x)
    return nets, x, labels


def attack(net, x, label):
    return attacks.minimal_l2(functools.partial(relu_net.apply, net), x, label).norm


def layouts(nets, x, labels) -> dict[str, np.ndarray]:
    alone = jax.jit(attack)
    one_by_one = np.array(
        [float(alone(jax.tree.map(lambda leaf, i=i: leaf[i], nets), x[i], labels[i])) for i in range(len(x))]
    )
    vmapped = np.asarray(jax.jit(jax.vmap(attack))(nets, x, labels))

    def blocks_with_logits(nets, x, labels):
        norms = jax.lax.map(lambda a: attack(*a), (nets, x, labels), batch_size=4)
        return norms, jax.vmap(relu_net.apply)(nets, x)

    blocked = np.asarray(jax.jit(blocks_with_logits)(nets, x, labels)[0])
    return {"one_by_one": one_by_one, "vmapped": vmapped, "blocks_of_4": blocked}


def differences(a: np.ndarray, b: np.ndarray) -> dict:
    relative = np.abs(a / b - 1)
    return {
        "median": float(np.median(relative)),
        "p99": float(np.quantile(relative, 0.99)),
        "max": float(relative.max()),
        "share_above_1e-6": float(np.mean(relative > 1e-6)),
        "worst_input": int(np.argmax(relative)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--inputs", type=int, default=400)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    count = 16 if args.quick else args.inputs
    info = machine()
    results = {}
    for index, (name, shape) in enumerate(FAMILIES.items()):
        norms = layouts(*nets_and_inputs(jax.random.key(index), count, *shape))
        results[name] = {
            "inputs": count,
            "one_by_one_vs_vmapped": differences(norms["one_by_one"], norms["vmapped"]),
            "one_by_one_vs_blocks_of_4": differences(norms["one_by_one"], norms["blocks_of_4"]),
            "vmapped_vs_blocks_of_4": differences(norms["vmapped"], norms["blocks_of_4"]),
        }
        print(name, results[name], flush=True)
    write_result(args.out, "attack_layouts", info, {"families": results}, args.quick)


if __name__ == "__main__":
    main()
