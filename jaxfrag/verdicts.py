"""`jaxfrag verdicts RUN [RUN ...]`: the verdict ledger of one or more run folders.

Reads sweep, grid, mnist and imagenet run folders and writes verdicts.csv (one row per claim of the
paper), verdict_cases.csv (one row per case a claim was judged on) and verdicts.md into --ledger, and
prints the table. With --update, the ledger already in --ledger keeps every claim the given runs do
not decide and takes theirs from them: after one study is re-run, its rows change and the others stay.
The rule that turns an interval into a verdict is `jaxfrag.reports.verdicts.judge`. Bad input exits 2
with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jaxfrag import cli

EXAMPLES = (
    "jaxfrag verdicts runs/demo runs/tables runs/mnist runs/imagenet --ledger runs/verdicts",
    "jaxfrag verdicts runs/mnist --ledger docs/ledger --update",
)


def build_parser(prog: str) -> cli.Parser:
    parser = cli.Parser(
        prog=prog,
        description="Every claim of the paper the given run folders decide: the paper's value, ours with its "
        "interval, n, the verdict, what would decide it where it is undecided, and the command that reproduces it.",
        examples=EXAMPLES,
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders (sweep, grid, mnist, imagenet)")
    cli.add_ledger_option(parser)
    parser.add_argument(
        "--interval",
        choices=("anytime", "fixed"),
        default="anytime",
        help="anytime: confidence sequences, valid however often the ledger is made again as trials are added "
        "(the default); fixed: fixed-n t-intervals, for a one-shot run",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the claims of the ledger already in --ledger that these runs do not decide; replace the rest",
    )
    return parser


def main(argv=None, prog: str = "python -m jaxfrag.verdicts") -> int:
    program = cli.program_name(prog)
    try:
        args = cli.parse_run_folders(build_parser(prog), argv)
    except cli.UsageError as error:
        return cli.fail(program, error)
    from jaxfrag.reports import verdicts  # loads JAX (the experiments' paper tables): after parsing

    try:
        found = verdicts.ledger(args.runs, args.interval)
        if args.update:
            found = verdicts.updated(verdicts.read(args.ledger), found)
        table = verdicts.write(args.ledger, found)
    except ValueError as error:
        return cli.fail(program, error)
    except OSError as error:
        return cli.fail(program, f"cannot write to {args.ledger}: {error.strerror}")
    print(verdicts.markdown(table, runs_text=False), end="")
    print(f"\nwrote {args.ledger}/ (verdicts.csv, verdict_cases.csv, verdicts.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
