"""The command-line layer every entry point stands on (`jaxfrag.sweep`, `.mnist`, `.imagenet`, `.models`).

Contract:
* `UsageError` and `Parser`: bad input is one line on stderr and exit status 2, never a traceback
  or a usage dump; `number` and `parse_dims` are the argparse types with the same messages everywhere.
* `Parser` shows every default in --help and ends it with two examples.
* Option groups with one name, help and default in every entry point: `add_run_options` (--out,
  --resume, --seed, --progress/--no-progress, --cache-dir) and `add_process_options` (many processes).
* `main(program, argv, parse_args, prepare, run, unit)`: the one skeleton of an entry point. It
  parses the options, joins the run's processes (`jaxfrag.distributed`) under the watchdog,
  prepares what the run's config depends on, opens the run folder (process 0 checks it, every
  process hears its verdict), runs the stages, and keeps what finished on Ctrl-C.
* `start_meta` and `measure_and_report`: the run folder's meta.json and the end of a study run
  (mnist, imagenet): every process measures its share, then process 0 gathers every cell into
  results.parquet and reports; `write_page` ends every run with its report.html.
* `provenance`: what every meta.json records of the run's origin (command, version, git commit).
* `show_progress`: one progress bar, on process 0, on a terminal unless --progress/--no-progress says.

Import policy (for the whole package): every import stands at the top of its module, with two
exceptions. JAX, and the modules of this package that load it or matplotlib, are imported inside
functions in the modules an entry point loads before it has parsed its arguments (the entry
points, this module, `distributed`), so that --help and bad input answer at once without starting
JAX. Optional dependencies (torch, tensorflow_datasets) are imported where they are used.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from jaxfrag import __version__, distributed, store


class UsageError(Exception):
    """Bad input; the message is one line for the user."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default (unless the help says it already) and keeps the examples' lines."""

    def _get_help_string(self, action):
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "(default" in text or hidden or not action.option_strings:
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, list | tuple) else action.default
        return f"{text} (default: {default})"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise UsageError (one line, no usage dump), whose help shows the
    defaults and ends with `examples` (command lines, printed as they are)."""

    def __init__(self, *args, examples: tuple[str, ...] = (), **kwargs):
        if examples:
            kwargs["epilog"] = "examples:\n" + "\n".join(f"  {line}" for line in examples)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


def program_name(prog: str) -> str:
    """The name errors begin with: 'jaxfrag sweep' for the command, 'jaxfrag.sweep' for `python -m jaxfrag.sweep`."""
    return prog.removeprefix("python -m ")


def fail(program: str, error) -> int:
    """Print `program: error: ...` on stderr; the exit status of bad input."""
    print(f"{program}: error: {error}", file=sys.stderr)
    return 2


def number(name: str, convert=int, low: float = 0, inclusive: bool = False):
    """An argparse type: a finite number of `convert`'s kind above `low` (at least `low` if inclusive)."""
    noun = "an integer" if convert is int else "a number"

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {noun}, got {text!r}") from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"{name} must be {'>=' if inclusive else '>'} {low:g}, got {text}")
        return value

    return parse


def parse_dims(text: str) -> list[int]:
    """'7..64' (inclusive), '8..64:8', '8,12,16', '12', or a comma-separated mix: sorted, distinct, each >= 2."""
    dims: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise UsageError(f"--d {text!r}: empty item")
        try:
            if ".." in part:
                bounds, _, step_text = part.partition(":")
                low_text, _, high_text = bounds.partition("..")
                low, high = int(low_text), int(high_text)
                step = int(step_text) if step_text else 1
                if step <= 0:
                    raise UsageError(f"--d {text!r}: the step must be positive")
                if high < low:
                    raise UsageError(f"--d {text!r}: the range {low}..{high} is reversed")
                dims.extend(range(low, high + 1, step))
            else:
                dims.append(int(part))
        except ValueError:
            raise UsageError(f"--d {text!r}: expected integers like 7..64, 8..64:8, 8,12,16 or 12") from None
    if not dims:
        raise UsageError(f"--d {text!r}: no dimensions")
    if min(dims) < 2:
        raise UsageError(f"--d {text!r}: every d must be at least 2, got {min(dims)}")
    return sorted(set(dims))


def parse_run_folders(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the arguments of a command that reads run folders (`args.runs`); UsageError for one that
    is not a run folder."""
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / store.META).is_file():
            raise UsageError(f"{run} is not a run folder (no {store.META})")
    return args


def require(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """UsageError naming the extra to install when a command's optional dependencies are missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"jaxfrag {command} needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install 'jaxfrag[{extra}]'"
        )


def add_resume_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run where it stopped, keeping what it finished"
    )


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one progress bar, on process 0 (default: only when stderr is a terminal)",
    )


def add_ledger_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="folder of the verdict ledger (verdicts.csv, verdict_cases.csv, verdicts.md)",
    )


def add_run_options(parser: argparse.ArgumentParser, command: str, seed: bool = True) -> None:
    """--out, --resume, --seed (where the run draws at random), --progress/--no-progress, --cache-dir:
    one name, help and default in every command (`finish_run_options` resolves --out's default)."""
    parser.add_argument(
        "--out", default=None, help="the run folder (default: runs/<command>-<date>-<time>; --resume needs it named)"
    )
    add_resume_option(parser)
    if seed:
        parser.add_argument(
            "--seed",
            type=number("--seed", inclusive=True),
            default=0,
            help="the run's random seed: every draw's key derives from it and the draw's coordinates",
        )
    add_progress_option(parser)
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="persistent XLA compilation cache (default: $JAXFRAG_CACHE_DIR or ~/.cache/jaxfrag/xla; '' turns it off)",
    )


def add_attack_option(parser, default: str) -> None:
    """--attack: the minimal-L2 attack's preset (`config.ATTACKS`, `attacks.PRESETS`), with each
    command's default: one help in every command."""
    from jaxfrag.config import ATTACKS

    parser.add_argument(
        "--attack",
        choices=ATTACKS,
        default=default,
        help="the minimal-L2 attack: full (lanes, rescue, walks), strong (full and eight ALMA lanes: the "
        "shortest on real networks, at about 2.2x full's time), walk (DeepFool's lane and a 300-step walk) or "
        "quick (DeepFool's lane alone: a looser upper bound, compiled in well under half full's time)",
    )


def add_certify_option(parser, choices: tuple[str, ...]) -> None:
    """--certify: a certified lower bound beside the attack's norm (`jaxfrag.certify`), with each
    command's rungs (`config.CERTIFY` or fewer): one help in every command."""
    parser.add_argument(
        "--certify",
        choices=choices,
        default="off",
        help="a certified lower bound beside the minimal-L2 attack's norm, so the true minimal perturbation lies "
        "in [certified, attacked]: ibp (interval bounds), crown, alpha (CROWN with optimised slopes) or, where "
        "offered, bab (alpha tightened by branch and bound up to the attack's norm, the tightest). sweep: the relu "
        "nets at b1 and b2; mnist: Q at every 7 with an A_1 (alpha: about 8 s per 7 on 2 CPU cores)",
    )


def show_progress(args: argparse.Namespace, processes: distributed.Processes | None = None) -> bool:
    """Whether this process draws a progress bar: asked for (--progress) or on a terminal, never off process 0."""
    if processes is not None and not processes.leader:
        return False
    return args.progress if args.progress is not None else sys.stderr.isatty()


def add_process_options(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --num-processes, --process-id, --peer-timeout: the entry points' many-process options."""
    group = parser.add_argument_group(
        "many processes (jax.distributed; under SLURM, Open MPI or a TPU pod slice they are detected)"
    )
    group.add_argument("--coordinator", default=None, help="HOST:PORT of process 0's coordination service")
    group.add_argument("--num-processes", type=number("--num-processes"), default=None, help="processes in all")
    group.add_argument(
        "--process-id", type=number("--process-id", inclusive=True), default=None, help="this process, 0..N-1"
    )
    group.add_argument(
        "--peer-timeout",
        type=number("--peer-timeout", float),
        default=distributed.PEER_TIMEOUT_S,
        help="seconds without a sign of life before a process is taken for dead and the others stop",
    )


def finish_run_options(args: argparse.Namespace, command: str) -> argparse.Namespace:
    """Resolve --out's and --cache-dir's defaults and check the many-process options; UsageError if they
    contradict each other."""
    if args.out is None:
        if args.resume:
            raise UsageError("--resume continues a named run folder: give its --out")
        if (args.num_processes or 1) > 1 or distributed.launcher_detected():
            raise UsageError("many processes share one run folder: give it as --out")  # each would pick its own time
        args.out = os.path.join("runs", f"{command}-" + datetime.now().strftime("%Y%m%d-%H%M%S"))
    args.cache_dir = compilation_cache_dir(args.cache_dir)
    try:
        distributed.validate(args.coordinator, args.num_processes, args.process_id)
    except distributed.DistributedError as error:
        raise UsageError(str(error)) from None
    return args


def compilation_cache_dir(option: str | None) -> str:
    """--cache-dir's value, else $JAXFRAG_CACHE_DIR, else ~/.cache/jaxfrag/xla ('' turns the cache off)."""
    if option is not None:
        return option
    default_cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jaxfrag", "xla")
    return os.environ.get("JAXFRAG_CACHE_DIR", default_cache)


def use_compilation_cache(path: str) -> None:
    """Compiling is most of a short run's time on a CPU; a rerun reuses the programs."""
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_processes(
    args: argparse.Namespace, program: str, body: Callable[[distributed.Processes], int], lost_peer: str = ""
) -> int:
    """Join the run's processes (`jaxfrag.distributed`), run body(processes) under the watchdog, and leave.
    `lost_peer`: what a process says when a peer stops answering (default: the run folder's resume advice)."""
    try:
        processes = distributed.connect(args.coordinator, args.num_processes, args.process_id)
    except distributed.DistributedError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 1
    lost_peer = lost_peer or (
        f"{program}: error: stopped; what finished is kept in {args.out}; rerun with --resume to complete it"
    )
    with distributed.Watchdog(processes, lost_peer, args.peer_timeout):
        status = body(processes)
    if status == 0:
        distributed.disconnect(processes)
    return status


def open_run_folder(
    program: str, out, config: dict, resume: bool, processes: distributed.Processes, growable: tuple[str, ...]
):
    """`store.RunFolder.open` on process 0, its refusal told to every process; None after an error (printed)."""
    def validate() -> str:
        try:
            store.RunFolder.open(out, config, resume, growable)
        except store.RunFolderError as error:
            return str(error)
        return ""

    error = distributed.from_leader(processes, "open", validate)
    if error:
        fail(program, error)
        return None
    return store.RunFolder(out)


class Prepared(NamedTuple):
    """What an entry point prepared before opening its run folder."""

    config: dict  # every option that can change a row: the run folder's resume fingerprint
    state: Any = None  # whatever its stages need next (data, a model, pairs)


def main(
    program: str,
    argv: list[str] | None,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    prepare: Callable[[argparse.Namespace, distributed.Processes], Prepared],
    run: Callable[..., int],
    unit: str,
    growable: tuple[str, ...] = (),
) -> int:
    """An entry point from the command line to its exit status (see the module docstring).

    `prepare(args, processes)` may raise UsageError (exit 2, one line); `run(args, prepared, folder,
    processes)` runs the stages. `unit` names what a Ctrl-C keeps: "trials", "networks", "pairs".
    `growable`: the config entries a --resume may grow (`store.RunFolder.open`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except UsageError as error:
        return fail(program, error)
    args.argv = argv  # meta.json's record of the command (`provenance`)
    if args.cache_dir:
        use_compilation_cache(args.cache_dir)  # a --resume reuses the compiled programs

    def body(processes: distributed.Processes) -> int:
        # Inside the processes: jax.distributed must start before JAX runs anything (prepare loads data, models).
        try:
            prepared = prepare(args, processes)
        except UsageError as error:
            return fail(program, error)
        folder = open_run_folder(program, args.out, prepared.config, args.resume, processes, growable)
        if folder is None:
            return 2
        try:
            return run(args, prepared, folder, processes)
        except KeyboardInterrupt:
            print(
                f"\ninterrupted; finished {unit} are kept in {args.out}; rerun with --resume to continue",
                file=sys.stderr,
            )
            return 130

    return run_processes(args, program, body)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version() -> str:
    return __version__


def git_commit() -> dict:
    """{"git_commit": sha, "git_dirty": bool} when the package runs from a git checkout, else {}."""
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return {}
    try:
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": head, "git_dirty": bool(changes)}


def provenance(argv: list[str], command: str) -> dict:
    """What every run's meta.json records of where it came from: the command as typed, jaxfrag's
    version and, from a git checkout, the commit (and whether the work tree had changes)."""
    return {"command": ["jaxfrag", command, *argv], "argv": list(argv), "jaxfrag_version": version(), **git_commit()}


def start_meta(
    folder, processes: distributed.Processes, config: dict, packages: tuple[str, ...], origin: dict, **fields
) -> dict:
    """meta.json as a study run starts: kept from an earlier run's when resuming, written by process 0;
    `origin` is `provenance(...)`."""
    meta = folder.read_meta() or {}
    meta.update(
        config=config,
        started=meta.get("started", now()),
        **origin,
        environment=store.environment(*packages),
        **fields,
        processes=processes.count,
    )
    meta.setdefault("wall_s", {})
    if processes.leader:
        folder.write_meta(meta)
    return meta


def add_wall_time(meta: dict, stage: str, since: float) -> None:
    """Add the seconds since `since` to meta's wall_s[stage] (a resumed run adds to the earlier run's)."""
    meta["wall_s"][stage] = meta["wall_s"].get(stage, 0) + round(time.perf_counter() - since, 3)


def write_page(folder) -> None:
    """The run folder's report.html (`jaxfrag.reports.page`), written last: it reads everything else."""
    from jaxfrag.reports import page  # loads JAX (the verdicts read the experiments' paper tables)

    page.write(folder.path)


def measure_and_report(
    folder,
    processes: distributed.Processes,
    meta: dict,
    started: float,
    measure: Callable[[], str],
    order: list[str],
    write_report: Callable,
    files: str,
) -> int:
    """The end of a study run: every process runs `measure()` (its share of the cells; it returns what it
    did), then process 0 sorts every cell's rows by `order` into results.parquet and prints
    `write_report(rows, cell_stats)` while the others say what they did and wait for it."""
    import jax

    since = time.perf_counter()
    done = measure()
    distributed.barrier("measured", processes)
    add_wall_time(meta, "measure", since)
    if not processes.leader:
        print(f"process {processes.index} of {processes.count}: {done}; process 0 reports")
        distributed.barrier("reported", processes)
        return 0
    rows, cell_stats = folder.read_cells()
    rows = rows.sort_values(order, kind="stable").reset_index(drop=True)
    folder.write_results(rows)
    text = write_report(rows, cell_stats)
    meta["finished"] = now()
    meta["wall_s"]["total"] = round(time.perf_counter() - started, 3)
    meta["jax_devices"] = [str(device) for device in jax.devices()]
    folder.write_meta(meta)
    write_page(folder)
    print(text)
    print(f"\nwrote {folder.path}/ ({files}, report.html)")
    distributed.barrier("reported", processes)
    return 0
