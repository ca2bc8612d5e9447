"""Benchmark: the MNIST study's attack stage (every column of Tables 5-6), as it was and as `jaxfrag mnist` runs it.

    python benchmarks/bench_mnist_stage.py --networks runs/mnist/networks.npz            # 32 test 7s
    python benchmarks/bench_mnist_stage.py --networks runs/mnist/networks.npz --quick    # 8

Every column of the study (both FGSM scans, Q_l2, both masking rules' A_1 searches and path
columns) on the same correctly classified test 7s of one network, side by side in one process,
compile time apart:
* "before": the program of the earlier MNIST runs (`before_program`, kept here): Q_l2 from
  `attacks.minimal_l2` at its defaults without the walk (8 lanes, the rescue's 256 starts, 20
  boundary projections), and every column vmapped over two images at a time (the rescue's
  starts did not fit more): all of an order's prefixes classified at once, the path columns
  computed (on a stand-in) even where there is no A_1;
* "now": `jaxfrag.mnist`'s own program (`mnist.measure_program`): Q_l2 from the preset
  `--attack` (default `walk`: DeepFool's lane and a 300-step walk; `jaxfrag mnist` runs `strong`
  by default), several images per block, and the rest one image at a time, each part stopping
  where its image is done.
Reports seconds per image, the speed-up over "before", and Q_l2 now / before per image (median,
p90, max). Results go to benchmarks/results/bench_mnist_stage-<time>.json.
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
from common import machine, write_result  # noqa: E402

from jaxfrag import attacks, datasets, mnist  # noqa: E402
from jaxfrag.experiments import mnist as experiment  # noqa: E402
from jaxfrag.models import cnn  # noqa: E402

BEFORE = {"walk_steps": 0, "lane_walk_steps": 0, "ddn_steps": 0}  # minimal_l2's other defaults are the earlier attack's


def _first_one_all_prefixes(f, image, order):
    """The earlier A_1 search: every prefix of the padded order classified in one batch."""
    length = jnp.sum(order >= 0)
    counts = jnp.arange(1, order.shape[0] + 1)
    onehots = jax.nn.one_hot(jnp.where(order >= 0, order, experiment.PIXELS), experiment.PIXELS, dtype=image.dtype)
    labels = jnp.argmax(jax.vmap(f)(image * (1 - jnp.cumsum(onehots, axis=0))), axis=-1)
    is_one = (labels == experiment.TARGET) & (counts <= length)
    found = jnp.any(is_one)
    return jnp.where(found, counts[jnp.argmax(is_one)], 0), found


def before_program(n_alpha: int, eps_max: float, batch_size: int = 2):
    """The earlier runs' measurement program: every column of an image in one function, vmapped."""

    def one_image(params, image, rule_orders):
        f = lambda x: cnn.apply(params, x.reshape(cnn.IMAGE))  # noqa: E731
        f_ties = lambda x: cnn.apply(params, x.reshape(cnn.IMAGE), "split")  # noqa: E731
        columns = experiment.attack_columns(f, f_ties, image, eps_max, BEFORE)
        for r, rule in enumerate(experiment.MASK_RULES):
            blocked, found = _first_one_all_prefixes(f, image, rule_orders[r])
            a1 = experiment.block(image, rule_orders[r], blocked)
            path = experiment.path_columns(f, image, a1, found, n_alpha)  # vmapped: both branches run
            columns.update({f"{rule}/{name}": value for name, value in path.items()})
        return columns

    return jax.jit(
        lambda params, images, orders: jax.lax.map(
            lambda a: one_image(params, *a), (images, orders), batch_size=batch_size
        )
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", required=True, help="a `jaxfrag mnist` run's networks.npz (network 0)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--blocks", default="8,16", help="images per block for Q_l2's attack now")
    parser.add_argument("--attack", choices=tuple(attacks.PRESETS), default="walk", help="Q_l2's preset now")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    count = 8 if args.quick else args.images
    info = machine()
    data = datasets.mnist()
    params, _ = cnn.load(Path(args.networks))[:2]
    one = cnn.select(params, 0)
    sevens = np.flatnonzero(data.y_test == experiment.SOURCE)
    chosen = sevens[cnn.predict(one, data.x_test[sevens]) == experiment.SOURCE][:count]
    orders = {int(i): experiment.masking_orders(data.x_test[i]) for i in sevens}
    pad = mnist.order_pad(orders.values())
    images = data.x_test[chosen].reshape(count, -1).astype(np.float32) / 255
    rule_orders = np.stack(
        [experiment.padded([getattr(orders[int(i)], r) for i in chosen], pad) for r in experiment.MASK_RULES], axis=1
    )
    defaults = mnist.build_parser()
    n_alpha, eps_max = defaults.get_default("n_alpha"), defaults.get_default("eps_max")
    variants = {"before, 2 per block": before_program(n_alpha, eps_max)}
    variants.update(
        {
            f"now, {b} per block": mnist.measure_program(n_alpha, eps_max, args.attack, batch_size=int(b))
            for b in args.blocks.split(",")
        }
    )
    rows, q = {}, {}
    for name, program in variants.items():
        compiled = program.lower(one, images, rule_orders).compile()
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(one, images, rule_orders))
        seconds = time.perf_counter() - start
        q[name] = np.asarray(out["Q_l2"], float)
        found = float(np.mean(np.isfinite(q[name])))
        rows[name] = {"seconds": seconds, "seconds_per_image": seconds / count, "q_l2_found": found}
        print(f"{name}: {seconds / count:.3f} s per image", flush=True)
    before = next(iter(rows))
    for name in rows:
        ratio = q[name] / q[before]
        rows[name]["speedup_over_before"] = rows[before]["seconds"] / rows[name]["seconds"]
        rows[name]["q_l2_over_before"] = {
            "median": float(np.nanmedian(ratio)),
            "p90": float(np.nanquantile(ratio, 0.9)),
            "max": float(np.nanmax(ratio)),
        }
        print(name, rows[name], flush=True)
    results = {"images": count, "n_alpha": n_alpha, "attack": args.attack, "rows": rows}
    write_result(args.out, "bench_mnist_stage", info, results, args.quick)


if __name__ == "__main__":
    main()
