"""`python -m jaxfrag.mnist --out runs/mnist`: section 6's MNIST analysis (Tables 5-6, Figure 3).

Trains K copies of the paper's CNN at once (`jaxfrag.models.cnn`), then for
every network and each of its first `--images` correctly classified test 7s,
both masking rules (`jaxfrag.experiments.mnist`), measures Table 5's and Table
6's columns with every attack applied, and prints them beside the paper's with
intervals. Stages: plan (options, data), train (or load the saved networks),
measure (one cell per network), persist, report.

Run folder (the sweep's contract, `jaxfrag.store`):
  meta.json         the config, data digest, versions, each network's test accuracy, wall times
  networks.npz      the trained parameters (`jaxfrag.models.cnn.load`; `network(params, k)`)
  cells/mnist_d<k>.parquet   network k's rows, finished (the cell's "d" is the network index)
  results.parquet   one row per (network, image, mask_rule)
  summary.csv       per network and pooled, per rule and column: n, mean, se, median and its 95% interval
  claims.csv        the paper's two claims tested per rule and Q: paired difference and correlation
  figures/          gallery_<rule>.png, claims.png, cos_alpha.png
--resume continues a run with the same options; bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

# The sweep's one-line usage errors and number parsing: the same messages in both entry points.
from jaxfrag.sweep import (
    UsageError,
    _now,
    _number,
    _Parser,
    add_cluster_options,
    check_cluster_options,
    open_run_folder,
    run_processes,
)

EXPERIMENT_ID = 300  # folded into the seed's key, beside the sweep's experiment ids
CHUNK = 8  # images per compiled measurement call
DEFAULT_NETWORKS = 3  # about 6 minutes of training on 2 CPU cores
MIN_ACCURACY = 0.985  # what the paper's network should reach; a network below it is flagged
DEFAULT_IMAGES = 150  # correctly classified test 7s per network: about 1.2 s each on 2 CPU cores

# The paper's Table 5 (experiments 1-5) and Table 6 (experiments 1-4, alpha = 0, 0.1, ..., 1, then the average).
PAPER_TABLE5 = {
    "M": [-0.2255, -0.6393, -0.9546, -0.4523, -1.1198],
    "Q": [0.2034, 0.7255, 0.9724, 1.0586, 1.1309],
    "L": [1.5961, 2.1024, 3.4354, 2.5806, 2.7998],
    "Q/(0.5L)": [0.2548, 0.6902, 0.5661, 0.8187, 0.8076],
    "M/(0.5L)": [-0.2826, -0.6082, -0.5557, -0.3499, -0.7998],
    "cos_theta_t": [-0.2170, -0.3186, -0.2790, -0.2734, -0.3302],
}
PAPER_TABLE6 = [
    [-0.1557, -0.4023, -0.3749, -0.2003],
    [-0.1692, -0.4194, -0.3675, -0.2019],
    [-0.2015, -0.4240, -0.3861, -0.2024],
    [-0.1574, -0.4273, -0.4037, -0.2374],
    [-0.1422, -0.3988, -0.3698, -0.2525],
    [-0.0882, -0.3988, -0.3689, -0.2408],
    [-0.0231, -0.3424, -0.3182, -0.2459],
    [-0.0794, -0.2326, -0.1864, -0.1630],
    [-0.0813, -0.0409, -0.0123, -0.1286],
    [-0.0794, -0.0127, -0.0366, -0.0186],
    [-0.1127, -0.0153, -0.0729, -0.0317],
]
PAPER_TABLE6_AVERAGE = [-0.1136, -0.2831, -0.2634, -0.1748]


def _images(text: str):
    return None if text == "all" else _number("--images")(text)


def build_parser() -> argparse.ArgumentParser:
    from jaxfrag.datasets import SOURCES

    p = _Parser(prog="python -m jaxfrag.mnist", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue a run in --out with the same options")
    p.add_argument("--networks", type=_number("--networks"), default=DEFAULT_NETWORKS, help="networks trained at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=_number("--epochs"), default=2)
    p.add_argument("--batch-size", type=_number("--batch-size"), default=64)
    p.add_argument("--lr", type=_number("--lr", float), default=1.0, help="Adadelta's learning rate")
    p.add_argument("--lr-decay", type=_number("--lr-decay", float), default=0.7, help="factor per epoch")
    p.add_argument(
        "--images", type=_images, default=DEFAULT_IMAGES, help="correctly classified test 7s per network, or 'all'"
    )
    p.add_argument("--n-alpha", type=_number("--n-alpha"), default=101, help="points on I_7 -> A_1 (10 k + 1)")
    p.add_argument("--eps-max", type=_number("--eps-max", float), default=1.0, help="FGSM's largest L-inf step")
    p.add_argument("--train-images", type=_number("--train-images"), default=None, help="train on the first N only")
    p.add_argument("--mnist", type=Path, default=None, help="IDX folder or .npz of MNIST")
    p.add_argument("--mnist-source", choices=SOURCES, default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cache-dir", default=None, help="persistent XLA compilation cache ('' turns it off)")
    add_cluster_options(p)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    from jaxfrag.experiments.mnist import check_n_alpha

    args = build_parser().parse_args(argv)
    try:
        check_n_alpha(args.n_alpha)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.mnist is not None and args.mnist_source not in ("auto", "path"):
        raise UsageError(f"--mnist PATH and --mnist-source {args.mnist_source} contradict each other")
    from jaxfrag.sweep import compilation_cache_dir

    args.cache_dir = compilation_cache_dir(args.cache_dir)
    check_cluster_options(args)
    return args


def run_config(args, data_digest: str) -> dict:
    """Every option that can change a row (the run folder refuses to resume with others)."""
    return {
        "experiment": "mnist",
        "seed": args.seed,
        "networks": args.networks,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "images": args.images,
        "n_alpha": args.n_alpha,
        "eps_max": args.eps_max,
        "train_images": args.train_images,
        "mnist_sha256": data_digest,
    }


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as error:
        print(f"jaxfrag.mnist: error: {error}", file=sys.stderr)
        return 2
    if args.cache_dir:
        from jaxfrag.sweep import use_compilation_cache

        use_compilation_cache(args.cache_dir)  # a --resume reuses the measurement program
    # jax.distributed must start before JAX does: the data are loaded inside.
    return run_processes(args, "jaxfrag.mnist", lambda processes: _main(args, processes))


def _main(args, processes) -> int:
    from jaxfrag import datasets

    try:
        data = datasets.mnist(args.mnist, args.mnist_source)
    except datasets.DatasetError as error:
        print(f"jaxfrag.mnist: error: {error}", file=sys.stderr)
        return 2
    config = run_config(args, datasets.digest(data))

    folder = open_run_folder("jaxfrag.mnist", args.out, config, args.resume, processes)
    if folder is None:
        return 2
    try:
        return _run(args, config, data, folder, processes)
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished networks are kept in {args.out}; rerun with --resume", file=sys.stderr)
        return 130


def _run(args, config: dict, data, folder, processes) -> int:
    """Process 0 trains (one vmapped program: its bits do not depend on the process count); every
    process then measures its share of the networks (`cluster.share_items`); process 0 reports."""
    import jax

    from jaxfrag import cluster, report_mnist, store

    started = time.perf_counter()
    meta = folder.read_meta() or {}
    meta.update(
        config=config,
        started=meta.get("started", _now()),
        command=sys.argv,
        environment=store.environment("jax", "flax", "optax"),
        processes=processes.count,
    )
    meta.setdefault("wall_s", {})
    if processes.leader:
        folder.write_meta(meta)

    t = time.perf_counter()
    if processes.leader:
        params, accuracies = train_stage(args, config, data, folder)
    cluster.barrier("trained", processes)
    if not processes.leader:
        params, accuracies = train_stage(args, config, data, folder, quiet=True)  # loads networks.npz
    meta["networks"] = [{"network": k, "test_accuracy": a} for k, a in enumerate(accuracies)]
    meta["wall_s"]["train"] = meta["wall_s"].get("train", 0) + round(time.perf_counter() - t, 3)
    if processes.leader:
        folder.write_meta(meta)

    t = time.perf_counter()
    measure_stage(args, config, data, params, accuracies, folder, processes)
    cluster.barrier("measured", processes)
    meta["wall_s"]["measure"] = meta["wall_s"].get("measure", 0) + round(time.perf_counter() - t, 3)
    if not processes.leader:
        print(f"process {processes.index} of {processes.count}: measured its networks; process 0 reports")
        cluster.barrier("reported", processes)
        return 0

    rows, cell_stats = folder.read_cells()
    rows = rows.sort_values(["network", "image", "mask_rule"], kind="stable").reset_index(drop=True)
    folder.write_results(rows)
    text = report_mnist.write(folder, rows, config, accuracies, cell_stats, data)
    meta["finished"] = _now()
    meta["wall_s"]["total"] = round(time.perf_counter() - started, 3)
    meta["jax_devices"] = [str(device) for device in jax.devices()]
    folder.write_meta(meta)
    print(text)
    print(f"\nwrote {folder.path}/ (results.parquet, summary.csv, claims.csv, networks.npz, figures/)")
    cluster.barrier("reported", processes)
    return 0


def network_keys(seed: int, networks: int):
    import jax

    base = jax.random.fold_in(jax.random.key(seed), EXPERIMENT_ID)
    return jax.vmap(lambda k: jax.random.fold_in(base, k))(jax.numpy.arange(networks))


def train_stage(args, config: dict, data, folder, quiet: bool = False):
    """The trained networks: loaded from networks.npz when the run has them, else trained and saved."""
    from tqdm import tqdm

    from jaxfrag.models import cnn

    path = folder.path / "networks.npz"
    train_config = cnn.CNNConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay)
    if path.exists():
        params, _ = cnn.load(path)
    else:
        n = args.train_images or len(data.y_train)
        images, labels = data.x_train[:n], data.y_train[:n]
        with tqdm(
            total=args.networks * args.epochs * n,
            unit="img",
            desc=f"training {args.networks} CNNs",
            disable=args.no_progress,
        ) as bar:
            params = cnn.train(network_keys(args.seed, args.networks), images, labels, train_config, bar.update)
        cnn.save(path, params, train_config)
    accuracies = [cnn.accuracy(cnn.select(params, k), data.x_test, data.y_test) for k in range(args.networks)]
    for k, accuracy in enumerate(accuracies if not quiet else []):
        short = (
            f" (below the {MIN_ACCURACY:.1%} PyTorch's example reaches in 2 epochs)" if accuracy < MIN_ACCURACY else ""
        )
        print(f"network {k}: test accuracy {accuracy:.4f}{short}", file=sys.stderr)
    return params, accuracies


def measure_stage(args, config: dict, data, params, accuracies, folder, processes=None) -> None:
    """One cell per network: its rows for every selected test 7 and both masking rules (this process's share)."""
    import numpy as np
    from tqdm import tqdm

    from jaxfrag import cluster
    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn

    sevens = np.flatnonzero(data.y_test == experiment.SOURCE)
    orders = {int(i): experiment.masking_orders(data.x_test[i]) for i in sevens}
    pad = order_pad(orders.values())
    done = {d for _, d in folder.done_cells()}
    plans = {}
    mine = cluster.share_items([k for k in range(args.networks) if k not in done], processes or cluster.Processes(0, 1))
    for k in mine:
        correct = sevens[cnn.predict(cnn.select(params, k), data.x_test[sevens]) == experiment.SOURCE]
        plans[k] = (correct if args.images is None else correct[: args.images], len(correct))
    total = sum(len(chosen) for chosen, _ in plans.values())
    measure = _measure_program(args.n_alpha, args.eps_max)
    with tqdm(total=total, unit="7", desc="attacking", disable=args.no_progress) as bar:
        for k, (chosen, n_correct) in plans.items():
            one = cnn.select(params, k)
            parts = []
            for start in range(0, len(chosen), CHUNK):
                index = chosen[start : start + CHUNK]
                padded_index = np.concatenate([index, np.repeat(index[-1:], CHUNK - len(index))])
                images = data.x_test[padded_index].reshape(CHUNK, -1).astype(np.float32) / 255
                rule_orders = np.stack(
                    [
                        experiment.padded([getattr(orders[int(i)], r) for i in padded_index], pad)
                        for r in experiment.MASK_RULES
                    ],
                    axis=1,
                )
                out = measure(one, images, rule_orders)
                parts.append(_rows(k, index, orders, {name: np.asarray(v)[: len(index)] for name, v in out.items()}))
                bar.update(len(index))
            import pandas as pd

            rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            stats = {"test_accuracy": accuracies[k], "sevens": int(len(sevens)), "sevens_correct": int(n_correct)}
            folder.write_cell("mnist", k, rows, stats)


def order_pad(orders) -> int:
    """One padded order length for every test 7: one compiled program for the whole run."""
    return 16 * math.ceil(max(len(o.bar) for o in orders) / 16)


def _measure_program(n_alpha: int, eps_max: float):
    import jax
    import jax.numpy as jnp

    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn

    def one_image(params, image, rule_orders):
        f = lambda x: cnn.apply(params, x.reshape(cnn.IMAGE))
        f_ties = lambda x: cnn.apply(params, x.reshape(cnn.IMAGE), "split")
        columns = experiment.attack_columns(f, f_ties, image, eps_max)
        for r, rule in enumerate(experiment.MASK_RULES):
            blocked, found = experiment.first_one(f, image, rule_orders[r])
            a1 = experiment.block(image, rule_orders[r], blocked)
            path = experiment.path_columns(f, image, a1, found, n_alpha)
            path["blocked"] = jnp.where(found, blocked, jnp.nan)
            path["has_a1"] = found
            columns.update({f"{rule}/{name}": value for name, value in path.items()})
        return columns

    @jax.jit
    def measure(params, images, rule_orders):
        # Two images at a time: each one's prefixes are a batch of up to `pad` images already.
        return jax.lax.map(lambda a: one_image(params, *a), (images, rule_orders), batch_size=2)

    return measure


def _rows(network: int, index, orders, out: dict):
    import numpy as np
    import pandas as pd

    from jaxfrag.experiments import mnist as experiment

    frames = []
    shared = {name: v for name, v in out.items() if "/" not in name}
    for rule in experiment.MASK_RULES:
        columns = {name.split("/", 1)[1]: v for name, v in out.items() if name.startswith(rule + "/")}
        frame = pd.DataFrame(
            {
                "network": np.full(len(index), network, np.int32),
                "image": index.astype(np.int32),
                "mask_rule": rule,
                "crossed": np.array([orders[int(i)].crossed for i in index]),
                **columns,
                **shared,
            }
        )
        half = 0.5 * frame["L"]
        frame["Q_fgsm_ratio"] = frame["Q_fgsm"] / half
        frame["Q_l2_ratio"] = frame["Q_l2"] / half
        frame["M_ratio"] = frame["M"] / half
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    ordered = ["network", "image", "mask_rule", "crossed"] + [c for c in experiment.COLUMNS if c in rows]
    return rows[ordered]


if __name__ == "__main__":
    sys.exit(main())
