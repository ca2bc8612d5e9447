"""python -m jaxfrag.sweep: Monte Carlo of the NN-vs-optimal robustness gap over dimensions.

    python -m jaxfrag.sweep --d 7..64 --out runs/demo
    python -m jaxfrag.sweep --d 8,12,16 --experiment thm6 --trials 2000 --out runs/thm6
    python -m jaxfrag.sweep --d 8..64:8 --out runs/demo --resume
    python -m jaxfrag.sweep --experiment linear --d 12 --trials 256 --out runs/table2
    python -m jaxfrag.sweep --experiment relu --d 12 --trials 256 --out runs/table3
    python -m jaxfrag.sweep --experiment linear relu --d 8..24:4 --grid optimizer=adam,sgd width=64,512
    python -m jaxfrag.sweep --experiment linear relu --d 8,16,32,64 --grid protocol=epochs,until-fit

For each (experiment, grid point, d) cell it runs --trials trials (`jaxfrag.stages`; compiled per
bucket of dimensions, sharded over the devices), writes the cell atomically, and
at the end writes results.parquet, summary.csv, meta.json and figures/ (see
`jaxfrag.store`; with linear or relu also what a grid answers, `jaxfrag.reports.grid`)
and prints the gap per d with the fitted log-log slopes.
Bad input is reported in one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from jaxfrag import cli, distributed, grid, store
from jaxfrag.cli import UsageError
from jaxfrag.config import CERTIFY, EXPERIMENTS, INITS, MAX_TRAINED_D, OPTIMIZERS, PAIRS, PROTOCOLS, Config

DEFAULT_TRIALS = 500
DEFAULT_TRIALS_TRAINED = 256  # when linear or relu is run: ~3 s of training per network at d = 16
RESULTS_REFRESH_S = 20.0  # rewrite results.parquet / summary.csv at most this often during a run


def trained() -> list[str]:
    """The experiments that train networks: asked for by name, never run by default."""
    return [name for name, spec in EXPERIMENTS.items() if spec.trained]


def default_experiments() -> list[str]:
    return [name for name, spec in EXPERIMENTS.items() if not spec.trained]


def parse_experiments(values: list[str]) -> list[str]:
    """The named experiments in the table's order; UsageError for a name the table does not have."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown or not names:
        raise UsageError(
            f"--experiment: unknown experiment {', '.join(map(repr, unknown)) or '(none)'}; "
            f"choose from {', '.join(EXPERIMENTS)}"
        )
    return [name for name in EXPERIMENTS if name in names]


EXAMPLES = (
    "jaxfrag sweep --d 7..64 --out runs/demo",
    "jaxfrag sweep --experiment linear relu --d 12,17 --out runs/tables",
)


def build_parser(prog: str = "python -m jaxfrag.sweep") -> argparse.ArgumentParser:
    parser = cli.Parser(
        prog=prog,
        description="Monte Carlo of the NN-vs-optimal adversarial robustness gap (Theorems 1, 4, 6, 7; section 6).",
        examples=EXAMPLES,
    )
    _add_cell_options(parser)
    cli.add_run_options(parser, "sweep")
    _add_execution_options(parser)
    cli.add_process_options(parser)
    _add_model_options(parser.add_argument_group("models"))
    _add_training_options(
        parser.add_argument_group(
            "linear, relu: trained networks (section 6; lr, batch and init are our choice, and relu's width)"
        )
    )
    return parser


def _add_cell_options(parser: argparse.ArgumentParser) -> None:
    """What is run: the dimensions, the experiments, the trials per cell and a grid over options."""
    parser.add_argument("--d", required=True, help="dimensions: 7..64, 8..64:8, 8,12,16 or 12")
    parser.add_argument(
        "--experiment",
        nargs="+",
        default=default_experiments(),
        help=f"one or more of {', '.join(EXPERIMENTS)} (default: {' '.join(default_experiments())})",
    )
    parser.add_argument(
        "--trials",
        type=cli.number("--trials"),
        default=None,
        help=f"trials per dimension (default {DEFAULT_TRIALS}; {DEFAULT_TRIALS_TRAINED} when "
        f"{' or '.join(trained())} is run)",
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        default=None,
        metavar="OPTION=V1,V2",
        help="run every combination of these options' values (e.g. optimizer=adam,sgd width=64,512); each point "
        "is a cell coordinate like d, and every point sees the same data for the same trial (see jaxfrag.grid)",
    )


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    """How the trials run; none of these changes a row."""
    parser.add_argument("--chunk", type=cli.number("--chunk"), default=None, help="trials per compiled step")
    parser.add_argument("--x64", action="store_true", help="compute in float64")
    parser.add_argument(
        "--devices", type=cli.number("--devices"), default=None, help="CPU devices per process (default: cores)"
    )
    parser.add_argument(
        "--compile-workers",
        type=cli.number("--compile-workers"),
        default=2,
        help="programs compiled ahead in the background while cells run",
    )


def _add_model_options(model) -> None:
    model.add_argument(
        "--depth",
        type=cli.number("--depth"),
        default=None,
        help="weight layers of the constructed nets (default: "
        + ", ".join(f"{name} {spec.default_depth}" for name, spec in EXPERIMENTS.items() if spec.default_depth)
        + ")",
    )
    model.add_argument("--width-mult", type=cli.number("--width-mult"), default=2, help="hidden width = this x d")
    model.add_argument(
        "--generator-depth",
        type=cli.number("--generator-depth", inclusive=True),
        default=2,
        help="thm4: t in x = G_t..G_1 v",
    )
    model.add_argument(
        "--scale-columns",
        type=cli.number("--scale-columns", float),
        default=None,
        help="thm6, linear, relu: factor on A's first d-1 columns (default: thm6 1 as in Theorem 6, linear and "
        "relu 5 as in section 6; 1 turns it off)",
    )
    model.add_argument(
        "--brute-force-max-d",
        type=cli.number("--brute-force-max-d", inclusive=True),
        default=12,
        help="thm6: enumerate all 2^(d-1) opposite points up to this d",
    )
    model.add_argument(
        "--max-nodes",
        type=cli.number("--max-nodes"),
        default=1 << 26,
        help="thm6, linear, relu: sphere-decoder node cap per search",
    )


def _add_training_options(train) -> None:
    train.add_argument("--width", type=cli.number("--width"), default=3000, help="hidden width")
    train.add_argument(
        "--hidden-layers", type=cli.number("--hidden-layers", inclusive=True), default=1, help="hidden layers"
    )
    train.add_argument("--bias", action="store_true", help="layers with biases (off: W = H2 H1 as analysed)")
    train.add_argument("--lr", type=cli.number("--lr", float), default=1e-3, help="learning rate")
    train.add_argument("--batch-size", type=cli.number("--batch-size"), default=64, help="minibatch size")
    train.add_argument(
        "--epochs", type=cli.number("--epochs"), default=20, help="training epochs (until-fit: at least these)"
    )
    train.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="epochs",
        help="epochs: train --epochs epochs (the paper's); until-fit: then go on until training accuracy 1, "
        "at most --max-epochs in all (the epochs_run column records each net's)",
    )
    train.add_argument(
        "--max-epochs", type=cli.number("--max-epochs"), default=200, help="until-fit: the cap on epochs in all"
    )
    cli.add_attack_option(train, "full")
    cli.add_certify_option(train, CERTIFY)
    train.add_argument(
        "--pair",
        choices=PAIRS,
        default="train",
        help="relu: b1 and b2 are training points (the paper's) or fresh ones, held out of training",
    )
    train.add_argument("--init", choices=INITS, default="torch", help="torch: U(+-1/sqrt(fan_in)), nn.Linear's")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="with PyTorch's defaults")
    train.add_argument(
        "--max-points",
        type=cli.number("--max-points", low=2, inclusive=True),
        default=65536,
        help="train on all 2^d points while 2^d <= this, else on this many sampled without replacement",
    )


def parse_args(argv: list[str] | None = None, prog: str = "python -m jaxfrag.sweep") -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    args.dims = cli.parse_dims(args.d)
    args.experiments = parse_experiments(args.experiment)
    given = {item[2:].partition("=")[0] for item in map(str, argv) if item.startswith("--")}
    try:
        args.grid = grid.parse(args.grid, parser, given)
        grid.check_experiments(args.grid, args.experiments)
    except grid.GridError as error:
        raise UsageError(str(error)) from None
    args.points = args.grid.points()
    trained_here = [name for name in trained() if name in args.experiments]
    if args.trials is None:
        args.trials = DEFAULT_TRIALS_TRAINED if trained_here else DEFAULT_TRIALS
    for name in trained_here:
        if max(args.dims) > MAX_TRAINED_D:
            raise UsageError(f"--experiment {name}: d must be at most {MAX_TRAINED_D}, got {max(args.dims)}")
    for point in args.points:
        point_config = grid.config_for(make_config(args), point)
        if point_config.protocol == "until-fit" and point_config.max_epochs < point_config.epochs:
            where = f" at {grid.label(point)}" if point else ""
            raise UsageError(
                f"--max-epochs {point_config.max_epochs} is below --epochs {point_config.epochs}{where}; "
                "until-fit trains at least --epochs epochs"
            )
    if args.brute_force_max_d > 20:
        raise UsageError(
            "--brute-force-max-d above 20 would enumerate over a million points per trial; use the sphere decoder"
        )
    return cli.finish_run_options(args, "sweep")


def run_config(args: argparse.Namespace) -> dict:
    """Everything that determines the rows: the resume fingerprint."""
    config = make_config(args)._asdict()
    training = bool(set(trained()) & set(args.experiments))
    if training:
        from jaxfrag import attacks  # loads JAX: after --help

    return {
        "experiments": args.experiments,
        **({"grid": args.grid.describe()} if args.grid.axes else {}),
        "d": args.dims,
        **{field: config[field] for field in Config._fields if field not in _training_only_fields() or training},
        # The attacks' every option, not only their presets' names: a preset or default may change.
        **({"attack_options": attacks.preset_options(*_attacks_used(args))} if training else {}),
    }


def _attacks_used(args: argparse.Namespace) -> list[str]:
    """--attack's preset and those of an `attack` grid axis."""
    on_grid = [value for axis in args.grid.axes if axis.field == "attack" for value in axis.values]
    return list(dict.fromkeys([args.attack, *on_grid]))


def _training_only_fields() -> set[str]:
    """Config fields that only trained experiments read: in the resume fingerprint when one of them runs."""
    fields = {field for spec in EXPERIMENTS.values() if spec.trained for field in spec.fields}
    return fields - {field for spec in EXPERIMENTS.values() if not spec.trained for field in spec.fields}


def make_config(args: argparse.Namespace) -> Config:
    """The Config of the command line: every Config field is the option of the same name."""
    return Config(**{field: getattr(args, field) for field in Config._fields})


def main(argv: list[str] | None = None, prog: str = "python -m jaxfrag.sweep") -> int:
    return cli.main(
        cli.program_name(prog),
        argv,
        lambda argv: parse_args(argv, prog),
        lambda args, processes: cli.Prepared(run_config(args)),
        _run,
        "trials",
        growable=store.GROWABLE,
    )


def _run(args, prepared: cli.Prepared, folder, processes: distributed.Processes) -> int:
    """The stages: meta, plan, run (merging cells as they finish), merge, report."""
    import jax

    from jaxfrag import parallel, stages
    from jaxfrag.experiments import registry
    from jaxfrag.reports import sweep as report

    jax.config.update("jax_enable_x64", args.x64)
    parallel.configure_cpu_devices(args.devices)
    started = time.perf_counter()
    config = make_config(args)
    experiments = registry()
    request = stages.Request(args.experiments, args.points, args.dims, args.trials)
    runner = parallel.CellRunner(config, parallel.make_mesh(jax.local_devices()), compile_workers=args.compile_workers)
    meta = meta_stage(args, folder, processes) if processes.leader else None
    plan = stages.plan(request, folder, runner, experiments, processes, args.chunk)
    last_refresh = time.perf_counter()

    def after_piece() -> None:
        # Process 0 merges cells as they complete, and refreshes the tables now and then.
        nonlocal last_refresh
        if processes.leader:
            stages.merge(request, folder, experiments, config, meta)
            if time.perf_counter() - last_refresh > RESULTS_REFRESH_S:
                report.write_tables(folder, experiments, config, request.pairs())
                last_refresh = time.perf_counter()

    progress = tqdm(
        total=sum(piece.trials for piece in plan),
        unit="trial",
        disable=not cli.show_progress(args, processes),
        dynamic_ncols=True,
    )
    try:
        stages.run(plan, folder, runner, experiments, processes, 1 + args.compile_workers, progress, after_piece)
    finally:
        progress.close()
        runner.close()
    distributed.barrier("ran", processes)
    if processes.leader:
        stages.merge(request, folder, experiments, config, meta)
        report_stage(folder, experiments, config, args, request, meta, started)
    else:
        ran = sum(piece.trials for piece in plan)
        print(
            f"process {processes.index} of {processes.count}: ran {ran} trials; process 0 merged them into {args.out}"
        )
    distributed.barrier("reported", processes)
    return 0


def meta_stage(args, folder, processes) -> dict:
    """meta.json as the run starts (kept from the earlier run's when resuming)."""
    import jax

    done = folder.done_cells() or folder.parts()
    previous = folder.read_meta() if done else None
    meta = {
        "config": run_config(args),
        "seed": args.seed,
        "x64": args.x64,
        **cli.provenance(args.argv, "sweep"),
        "jax_environment": jax.print_environment_info(return_string=True),
        "devices": [str(device) for device in jax.devices()],
        "processes": processes.count,
        "compilation_cache": args.cache_dir or None,
        "started": previous["started"] if previous else cli.now(),
        "status": "running",
        "stages": previous.get("stages", {}) if previous else {},
    }
    folder.write_meta(meta)
    return meta


def report_stage(folder, experiments, config, args, request, meta, started) -> None:
    """results.parquet, summary.csv, figures/ and the final meta.json; prints the gap table."""
    from jaxfrag.reports import grid as grid_report
    from jaxfrag.reports import sweep as report

    folder.tidy()
    meta["stages"]["cells_s"] = round(time.perf_counter() - started, 3)
    tic = time.perf_counter()
    summary, fits, rows = report.write_tables(folder, experiments, config, request.pairs())
    meta["stages"]["tables_s"] = round(time.perf_counter() - tic, 3)
    tic = time.perf_counter()
    report.write_figures(folder, summary, fits, experiments, config, rows, request.pairs())
    grid_text = grid_report.write(folder, rows, experiments, config, args.grid, request.pairs())
    meta["stages"]["figures_s"] = round(time.perf_counter() - tic, 3)
    meta["fits"] = {name: fit._asdict() for name, fit in fits.items()}
    meta["status"] = "complete"
    meta["finished"] = cli.now()
    meta["wall_s"] = round(time.perf_counter() - started, 3)
    folder.write_meta(meta)
    cli.write_page(folder)
    print(report.format_table(summary, fits, experiments, config, rows, request.pairs()))
    if grid_text:
        print("\n" + grid_text)
    written = "results.parquet, summary.csv, meta.json, figures/, report.html"
    print(f"\nwrote {folder.path}/ ({written}) in {meta['wall_s']:.1f} s")


def extend(
    run, targets: dict[str, int], show_progress: bool = False, by: str = "", processes=None, tag: str = ""
) -> int:
    """Extend a sweep run's cells in place: `targets` maps a cell's stage name ("CELL/d=D", as meta.json's
    stages name it) to the trials it should hold. Each cell grows as `--trials N --resume` grows every
    cell (`jaxfrag.stages`), so its rows stay those of a fresh run with that many trials; the run's tables,
    figures and report.html are then written again. The run's own command
    (meta.json's argv) gives every option; meta.json records the cells' counts under "extended", and
    `by` (the command that extended them) at the end of the list "extended_by". With several `processes`
    (`jaxfrag.distributed`), every process calls it alike: each runs its share of every cell's new trials,
    and process 0 merges them and writes the report; `tag` names this call's barriers uniquely. Returns the
    trials this process ran."""
    import collections
    import contextlib
    import io

    import jax

    from jaxfrag import distributed, parallel, stages, store
    from jaxfrag.experiments import registry

    processes = processes or distributed.Processes(0, 1)
    folder = store.RunFolder(run)
    meta = folder.read_meta()
    args = parse_args([*meta["argv"], "--out", str(run), "--resume", "--no-progress"])
    jax.config.update("jax_enable_x64", args.x64)
    config, experiments = make_config(args), registry()
    points = {grid.label(point): point for point in args.points}
    groups = collections.defaultdict(list)
    for key, target in targets.items():
        cell, _, d = key.rpartition("/d=")
        name, label = grid.split_cell_name(cell)
        groups[(name, label, int(target))].append(int(d))
    started, ran = time.perf_counter(), 0
    runner = parallel.CellRunner(config, parallel.make_mesh(jax.local_devices()), compile_workers=args.compile_workers)
    try:
        for step, ((name, label, target), dims) in enumerate(sorted(groups.items())):
            request = stages.Request([name], [points[label]], sorted(dims), target)
            plan = stages.plan(request, folder, runner, experiments, processes, barrier=f"extend/{tag}/{step}/planned")
            total = sum(piece.trials for piece in plan)
            with tqdm(total=total, unit="trial", disable=not show_progress, leave=False) as progress:
                programs = 1 + args.compile_workers
                stages.run(plan, folder, runner, experiments, processes, programs, progress, lambda: None)
            distributed.barrier(f"extend/{tag}/{step}/ran", processes)
            if processes.leader:
                stages.merge(request, folder, experiments, config, meta)
            distributed.barrier(f"extend/{tag}/{step}/merged", processes)  # the next plan reads merged cells
            ran += total
    finally:
        runner.close()
    if not processes.leader:
        return ran
    meta["extended"] = {**meta.get("extended", {}), **{key: int(t) for key, t in targets.items()}}
    if by:  # every command that extended the run, in order: the run is reproduced by its command, then these
        earlier = meta.get("extended_by", [])
        earlier = [earlier] if isinstance(earlier, str) else earlier
        meta["extended_by"] = earlier if earlier[-1:] == [by] else [*earlier, by]
    earlier_s = meta.get("wall_s", 0.0)
    request = stages.Request(args.experiments, args.points, args.dims, args.trials)
    with contextlib.redirect_stdout(io.StringIO()):  # the run's report, written again, not printed
        report_stage(folder, experiments, config, args, request, meta, started)
    meta["wall_s"] = round(earlier_s + meta["wall_s"], 3)
    folder.write_meta(meta)
    return ran


if __name__ == "__main__":
    sys.exit(main())
