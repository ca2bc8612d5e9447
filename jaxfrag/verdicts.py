"""`jaxfrag verdicts RUN [RUN ...]`: the verdict ledger of one or more run folders.

Reads sweep, grid, mnist and imagenet run folders and writes verdicts.csv (one row per claim of the
paper), verdict_cases.csv (one row per case a claim was judged on) and verdicts.md into --ledger, and
prints the table. The rule that turns an interval into a verdict is `jaxfrag.reports.verdicts.judge`.
Bad input exits 2 with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jaxfrag import cli

EXAMPLES = (
    "jaxfrag verdicts runs/demo runs/tables runs/mnist runs/imagenet --ledger runs/verdicts",
    "jaxfrag verdicts runs/ablations",
)


def build_parser(prog: str) -> cli.Parser:
    parser = cli.Parser(
        prog=prog,
        description="Every claim of the paper the given run folders decide: the paper's value, ours with its "
        "95% interval, n, the verdict and the command that reproduces it.",
        examples=EXAMPLES,
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders (sweep, grid, mnist, imagenet)")
    parser.add_argument(
        "--ledger", type=Path, default=Path("."), metavar="DIR", help="folder for verdicts.csv and verdicts.md"
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
        found = verdicts.ledger(args.runs)
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
