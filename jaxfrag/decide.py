"""`jaxfrag decide RUN [RUN ...] --ledger DIR --budget 2h`: add trials until every claim is decided.

Each round makes the verdict ledger of the runs (`jaxfrag.reports.verdicts`, anytime-valid intervals,
so looking again after every round keeps each claim's error at 5%), takes every undecided case that
more samples can decide (`verdicts.to_decide`), and extends the sweep cells it rests on
(`jaxfrag.sweep.extend`: a trial's numbers depend only on its seed, experiment, d and index, so an
extended run equals one made with that many trials from the start). A round grows a cell by at most
`--growth` times, so the next look comes soon; it stops when no case is left that more trials can
decide, when `--rounds` rounds are done, or when the budget is spent (a round that would overrun it
is cut down to what fits). The ledger is written after every round.

Several processes (`--coordinator HOST:PORT --num-processes N --process-id I`, or a cluster
launcher, as for the sweep): process 0 judges and picks each round's cells, every process runs its
share of their new trials, and process 0 merges them and writes the runs' reports and the ledger.

State: DIR/decide.json (the runs, the budget, the rounds done and the seconds spent). Killed, the
trials that finished are on disk; `--resume` goes on from them to the same ledger. An MNIST study
grows by its 7s per network and an ImageNet study by its pairs (`extend_study`: the study's own
command with a larger --images or --pairs and --resume), until it has no more (every correctly
classified 7, every pair). A ledger already in DIR keeps the claims the runs do not decide, as
`jaxfrag verdicts --update` does. Bad input exits 2 with one line.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
import time
from pathlib import Path

from jaxfrag import cli, distributed, store

EXAMPLES = (
    "jaxfrag decide runs/demo runs/tables --ledger runs/verdicts --budget 2h",
    "jaxfrag decide runs/demo runs/tables --ledger runs/verdicts --budget 2h --resume",
)
STATE = "decide.json"
UNITS = {"s": 1, "m": 60, "h": 3600}
PROCESS_OPTIONS = ("--coordinator", "--num-processes", "--process-id", "--peer-timeout")
STUDY_OPTIONS = {
    "mnist/images": "--images",
    "imagenet/pairs": "--pairs",
}  # verdicts.STUDY_CELLS: the option growing each


def parse_duration(text: str) -> float:
    """'2h', '90m', '1h30m', '45s' or seconds as a number -> seconds; ValueError otherwise."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            raise ValueError(f"--budget {text!r} is not a duration such as 2h, 90m, 1h30m or 600")
        seconds = sum(float(number) * UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"--budget must be positive, got {text!r}")
    return seconds


def build_parser(prog: str) -> cli.Parser:
    parser = cli.Parser(
        prog=prog,
        description="Extend the runs' cells with more trials until every claim of the ledger is decided, "
        "within a budget of time.",
        examples=EXAMPLES,
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders (sweep, mnist, imagenet)")
    cli.add_ledger_option(parser)
    parser.add_argument("--budget", default="2h", help="wall time to spend on new trials (e.g. 2h, 90m, 600)")
    parser.add_argument("--rounds", type=cli.number("--rounds"), default=None, help="stop after this many rounds")
    parser.add_argument(
        "--growth",
        type=cli.number("--growth", float, 1),
        default=4.0,
        help="a round grows a cell to at most this many times its trials (default 4)",
    )
    parser.add_argument(
        "--claim",
        action="append",
        default=None,
        metavar="NAME",
        help="add trials only to this claim's cases (its name as the ledger writes it, e.g. 'Table 1'; "
        "repeatable; default: every claim)",
    )
    cli.add_resume_option(parser)
    cli.add_progress_option(parser)
    cli.add_process_options(parser)
    return parser


def round_targets(found, growth: float, held) -> dict[str, dict[str, int]]:
    """{run: {cell stage name: trials}} for one round: every undecided case's cells grown by the factor
    that would decide it, and every case under `verdicts.MIN_SAMPLES` by the factor that reaches them,
    at most `growth`; `held(run, key)` is a cell's trials now."""
    from jaxfrag.reports import verdicts

    targets: dict[str, dict[str, int]] = {}
    for claim in found:
        for case, decided in zip(claim.cases, verdicts.case_verdicts(claim), strict=True):
            if not case.cells or not case.n:
                continue
            if decided == verdicts.UNDECIDED:
                decision = verdicts.to_decide(claim, case)
                wanted = None if decision is None else decision.n
            else:  # too few samples to be judged at all: first to the floor
                wanted = (
                    verdicts.MIN_SAMPLES if decided == verdicts.UNTESTED and case.n < verdicts.MIN_SAMPLES else None
                )
            if wanted is None:
                continue
            factor = min(wanted / case.n, growth)
            for reference in case.cells:
                run, _, key = reference.partition("|")
                now = held(run, key)
                cells = targets.setdefault(run, {})
                cells[key] = max(cells.get(key, now), math.ceil(now * factor))
    return {run: {k: t for k, t in cells.items() if t > held(run, k)} for run, cells in targets.items() if cells}


def _held(run: str, key: str) -> int:
    """A cell's trials now: a sweep cell's rows; a study's 7s per network or its pairs (`STUDY_OPTIONS`)."""
    if key in STUDY_OPTIONS:
        config = store.RunFolder(run).read_meta()["config"]
        return len(config["pairs"]) if key == "imagenet/pairs" else int(config["images"] or 0)
    cell, _, d = key.rpartition("/d=")
    return store.RunFolder(run).cell_trials(cell, int(d))


def _seconds(run: str, cells: dict[str, int]) -> float:
    """The time a run's cells take to grow to `cells`, at the rate each took so far (all the target's
    trials where the experiment runs a grown cell again from trial 0; a study at its measuring rate)."""
    from jaxfrag import grid
    from jaxfrag.experiments import registry

    meta = store.RunFolder(run).read_meta()
    stages, experiments = meta.get("stages", {}), registry()
    total = 0.0
    for key, target in cells.items():
        now = _held(run, key)
        if key in STUDY_OPTIONS:
            total += meta.get("wall_s", {}).get("measure", 0.0) / max(now, 1) * (target - now)
            continue
        name = grid.split_cell_name(key.rpartition("/d=")[0])[0]
        new = target if experiments[name].stats_from_every_trial else target - now
        total += stages.get(key, {}).get("run_s", 0.0) / max(now, 1) * new
    return total


def extend_study(run: str, key: str, target: int, by: str) -> int:
    """Grow an MNIST study's 7s per network, or an ImageNet study's pairs, to `target` (the study's own
    command with a larger --images or --pairs, and --resume); returns the rows it added (none where the
    study has no more: every correctly classified 7, every pair).
    meta.json keeps the command that made the run and records the growth as `sweep.extend` does."""
    import contextlib
    import io

    import pyarrow.parquet as pq

    from jaxfrag import imagenet, mnist

    folder = store.RunFolder(run)
    before = folder.read_meta()
    option = STUDY_OPTIONS[key]
    argv = _without_option(before["argv"], option)
    argv = _without_option(_without_option(argv, "--out"), "--resume", takes_value=False)
    main = mnist.main if key == "mnist/images" else imagenet.main
    rows = lambda: pq.read_metadata(folder.path / store.RESULTS).num_rows  # noqa: E731
    held = rows()
    with contextlib.redirect_stdout(io.StringIO()):  # the study's report, written again, not printed
        status = main([*argv, option, str(target), "--out", run, "--resume", "--no-progress"])
    if status != 0:
        raise ValueError(f"extending {run} to {option} {target} failed (exit status {status})")
    meta = folder.read_meta()
    meta.update(argv=before["argv"], command=before["command"])  # the run's own command; decide grew it
    meta["extended"] = {**meta.get("extended", {}), key: int(target)}
    earlier = meta.get("extended_by", [])
    meta["extended_by"] = earlier if earlier[-1:] == [by] or not by else [*earlier, by]
    folder.write_meta(meta)
    return rows() - held


def _without_option(words: list[str], option: str, takes_value: bool = True) -> list[str]:
    """`words` less every `option` (with its value, as one word or two)."""
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == option:
            skip = takes_value
        elif not word.startswith(option + "="):
            kept.append(word)
    return kept


def _fit(targets: dict[str, dict[str, int]], remaining: float) -> dict[str, dict[str, int]]:
    """The round's targets cut down in proportion, so that they take about `remaining` seconds at most."""
    needed = sum(_seconds(run, cells) for run, cells in targets.items())
    if needed <= remaining:
        return targets
    share = remaining / needed
    cut = {}
    for run, cells in targets.items():
        now = {key: _held(run, key) for key in cells}  # one read of each cell file's footer
        grown = {key: now[key] + math.floor((t - now[key]) * share) for key, t in cells.items()}
        cut[run] = {key: target for key, target in grown.items() if target > now[key]}
    return {run: cells for run, cells in cut.items() if cells}


def main(argv=None, prog: str = "python -m jaxfrag.decide") -> int:
    program = cli.program_name(prog)
    try:
        args = cli.parse_run_folders(build_parser(prog), argv)
        budget = parse_duration(args.budget)
        distributed.validate(args.coordinator, args.num_processes, args.process_id)
    except (cli.UsageError, ValueError, distributed.DistributedError) as error:
        return cli.fail(program, error)
    words = [str(w) for w in (sys.argv[1:] if argv is None else argv) if w not in ("--progress", "--no-progress")]
    command = shlex.join(["jaxfrag", "decide", *_without_process_options(words)])  # what the ledger says made it
    lost_peer = f"{program}: error: stopped; finished trials are kept; rerun with --resume to go on"
    body = lambda processes: _decide(args, budget, command, program, processes)  # noqa: E731
    return cli.run_processes(args, program, body, lost_peer)


def _without_process_options(words: list[str]) -> list[str]:
    """The command's words less the many-process options (each process has its own --process-id)."""
    for option in PROCESS_OPTIONS:
        words = _without_option(words, option)
    return words


def _start(args, budget: float, command: str) -> tuple[dict | None, str]:
    """decide.json's state to go on with, or the one-line refusal (process 0 reads it)."""
    from jaxfrag.reports import verdicts

    state_path = args.ledger / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    runs = [str(run) for run in args.runs]
    if state and state.get("status") == "running" and not args.resume:
        return None, f"{args.ledger} holds a decide that did not finish; pass --resume to go on with it"
    if args.resume and not state:
        return None, f"--resume: {args.ledger} holds no {STATE} to go on from"
    if args.claim is not None:
        known = {claim.claim for claim in verdicts.ledger(args.runs)}
        unknown = [name for name in args.claim if name not in known]
        if unknown:
            return (
                None,
                f"--claim {unknown[0]!r}: the runs decide no such claim (they decide {', '.join(sorted(known))})",
            )
    if args.resume and state["runs"] != runs:
        return None, f"--resume: {STATE} was made for the runs {' '.join(state['runs'])}; give the same"
    if not args.resume:
        state = {"runs": runs, "budget_s": budget, "spent_s": 0.0, "rounds": 0, "trials": 0, "command": command}
    state["status"] = "running"
    return state, ""


def _decide(args, budget: float, command: str, program: str, processes: distributed.Processes) -> int:
    """The rounds: process 0 judges and picks each round's cells; every process extends its share of them."""
    state, refusal = _start(args, budget, command) if processes.leader else (None, "")
    refusal = distributed.from_leader(processes, "decide/start", lambda: refusal)
    if refusal:
        return cli.fail(program, refusal)
    state_path = args.ledger / STATE

    from tqdm import tqdm

    shown = cli.show_progress(args, processes)
    from jaxfrag import parallel, sweep
    from jaxfrag.reports import verdicts

    parallel.configure_cpu_devices()

    kept = []  # a ledger already in DIR keeps the claims these runs do not decide (as `verdicts --update`)

    def look():
        found = verdicts.updated(kept, verdicts.ledger(args.runs))
        verdicts.write(args.ledger, found)
        undecided = sum(v == verdicts.UNDECIDED for claim in found for v in verdicts.case_verdicts(claim))
        return found, undecided

    def next_round() -> dict:
        """Process 0: the round's cells, fitted to what is left of the budget ({} to stop)."""
        remaining = state["budget_s"] - state["spent_s"]
        if args.rounds is not None and state["rounds"] >= args.rounds or remaining <= 0 or state.get("exhausted"):
            return {}
        asked = [claim for claim in found if args.claim is None or claim.claim in args.claim]
        targets = round_targets(asked, args.growth, _held)
        return _fit(targets, remaining) if targets else {}

    try:
        if processes.leader:
            if (args.ledger / "verdicts.csv").is_file():
                kept = verdicts.read(args.ledger)
            args.ledger.mkdir(parents=True, exist_ok=True)
            store.atomic_write_text(state_path, json.dumps(state, indent=1) + "\n")
            found, undecided = look()
        else:
            found, undecided = [], 0
        bar = tqdm(total=undecided, unit="case", desc="undecided cases decided", disable=not shown)
        first, looks = undecided, 0
        while True:
            plan = distributed.from_leader(processes, f"decide/round/{looks}", lambda: json.dumps(next_round()))
            targets = json.loads(plan)
            if not targets:
                break
            started = time.perf_counter()
            new = sum(
                t - _held(run, key)
                for run, cells in targets.items()
                for key, t in cells.items()
                if key not in STUDY_OPTIONS
            )
            for position, (run, cells) in enumerate(targets.items()):
                studies = {key: t for key, t in cells.items() if key in STUDY_OPTIONS}
                if studies:  # a study grows on process 0 (its own entry point), the others wait
                    if processes.leader:
                        new += sum(extend_study(run, key, target, state["command"]) for key, target in studies.items())
                    distributed.barrier(f"decide/{looks}/{position}/study", processes)
                else:
                    sweep.extend(run, cells, shown, by=state["command"] if state else "", processes=processes,
                                 tag=f"{looks}/{position}")  # fmt: skip
            looks += 1
            if processes.leader:
                state["trials"] += new
                state["spent_s"] += time.perf_counter() - started
                state["rounds"] += 1
                found, undecided = look()
                state["exhausted"] = new == 0  # nothing left to add where it was asked for: stop
                bar.n = max(first - undecided, 0)
                bar.set_postfix(undecided=undecided, spent=f"{state['spent_s'] / 60:.1f} min")
                store.atomic_write_text(state_path, json.dumps(state, indent=1) + "\n")
        bar.close()
    except KeyboardInterrupt:
        print("\ninterrupted; finished trials are kept; rerun with --resume to go on", file=sys.stderr)
        return 130
    except (OSError, ValueError) as error:
        return cli.fail(program, error)
    if not processes.leader:
        print(f"process {processes.index} of {processes.count}: ran its share of {looks} rounds; process 0 judged them")
        return 0
    state["status"] = "done"
    store.atomic_write_text(state_path, json.dumps(state, indent=1) + "\n")
    table = verdicts.records(found)
    print(verdicts.markdown(table, runs_text=False), end="")
    print(
        f"\n{state['rounds']} rounds, {state['trials']} new trials in {state['spent_s'] / 60:.1f} min; "
        f"{undecided} cases undecided; wrote {args.ledger}/ (verdicts.csv, verdict_cases.csv, verdicts.md, {STATE})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
