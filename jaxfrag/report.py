"""`jaxfrag report RUN [RUN ...]`: (re)build each run folder's report.html.

The page holds the run's command and environment, the verdicts it can decide, its tables and its
figures, in one file that opens offline (`jaxfrag.reports.page`). Every run writes it when it ends;
this rebuilds it, for instance after the run folder was copied or a newer jaxfrag reads it.
Bad input exits 2 with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jaxfrag import cli, store

EXAMPLES = ("jaxfrag report runs/demo", "jaxfrag report runs/mnist runs/imagenet")


def build_parser(prog: str) -> cli.Parser:
    parser = cli.Parser(
        prog=prog, description="Rebuild the report.html of run folders.", examples=EXAMPLES
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders")
    return parser


def main(argv=None, prog: str = "python -m jaxfrag.report") -> int:
    program = cli.program_name(prog)
    try:
        args = build_parser(prog).parse_args(argv)
    except cli.UsageError as error:
        return cli.fail(program, error)
    for run in args.runs:
        if not (run / store.META).is_file():
            return cli.fail(program, f"{run} is not a run folder (no {store.META})")
    from jaxfrag.reports import page  # loads JAX (through the verdicts): after parsing

    for run in args.runs:
        try:
            print(f"wrote {page.write(run)}")
        except (OSError, ValueError) as error:
            return cli.fail(program, f"{run}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
