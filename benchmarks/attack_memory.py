"""Measurement: peak memory of one call of `attacks.minimal_l2` on many MNIST test 7s at once.

    python benchmarks/attack_memory.py --networks runs/mnist/networks.npz --inputs 256
    python benchmarks/attack_memory.py --networks runs/mnist/networks.npz --inputs 256 --attack full --block 8

`--attack study` (the default): the `walk` preset (`attacks.PRESETS`: DeepFool's lane and the
walk, the MNIST study's Q_l2 attack until it took `strong`), vmapped over all inputs. `--attack full`: minimal_l2 at its
defaults (8 lanes, DDN's lane, the rescue's 256 starts, the walks), `--block` inputs at a time
(`jax.lax.map`). Either way ONE compiled call on every input, targeted 7 -> 1, in a fresh child
process whose peak resident memory (getrusage's ru_maxrss, which includes Python, JAX and the
data set) is reported beside the same child's peak before the call. Results go to
benchmarks/results/attack_memory-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result  # noqa: E402


def child(networks: str, inputs: int, attack_name: str, block: int) -> dict:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxfrag import attacks, datasets
    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn

    data = datasets.mnist()
    one = cnn.select(cnn.load(Path(networks))[0], 0)
    sevens = np.flatnonzero(data.y_test == experiment.SOURCE)
    sevens = sevens[cnn.predict(one, data.x_test[sevens]) == experiment.SOURCE][:inputs]
    x = jnp.asarray(data.x_test[sevens].reshape(len(sevens), -1) / 255, jnp.float32)
    f = lambda point: cnn.apply(one, point.reshape(cnn.IMAGE))  # noqa: E731
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    options = attacks.PRESETS["walk"] if attack_name == "study" else {}
    one_input = lambda point: attacks.minimal_l2(f, point, experiment.SOURCE, experiment.TARGET, **options)  # noqa: E731
    if attack_name == "study":
        attack = jax.jit(jax.vmap(one_input))
    else:
        attack = jax.jit(lambda points: jax.lax.map(one_input, points, batch_size=block))
    start = time.perf_counter()
    result = jax.block_until_ready(attack(x))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "attack": attack_name,
        "options": options,
        "block": len(sevens) if attack_name == "study" else block,
        "inputs": len(sevens),
        "success": float(np.mean(np.asarray(result.success))),
        "peak_rss_gib": peak / 2**20,
        "peak_rss_before_call_gib": before / 2**20,
        "seconds_with_compile": seconds,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", required=True)
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--attack", choices=("study", "full"), default="study")
    parser.add_argument("--block", type=int, default=8, help="inputs at a time for --attack full")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.networks, args.inputs, args.attack, args.block)))
        return
    command = [sys.executable, __file__, "--child", "--networks", args.networks, "--inputs", str(args.inputs)]
    command += ["--attack", args.attack, "--block", str(args.block)]
    measured = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print(measured)
    write_result(args.out, "attack_memory", machine(), measured, False)


if __name__ == "__main__":
    main()
