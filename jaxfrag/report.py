"""`jaxfrag report RUN [RUN ...]`: (re)build each run folder's report.html.

The page holds the run's command and environment, the verdicts it can decide, its tables and its
figures, in one file that opens offline (`jaxfrag.reports.page`). Every run writes it when it ends;
this rebuilds it, for instance after the run folder was copied or a newer jaxfrag reads it.
Bad input exits 2 with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jaxfrag import cli

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
        args = cli.parse_run_folders(build_parser(prog), argv)
    except cli.UsageError as error:
        return cli.fail(program, error)
    from jaxfrag.reports import page  # loads JAX (through the verdicts): after parsing

    for run in args.runs:
        try:
            print(f"wrote {page.write(run)}")
        except (OSError, ValueError) as error:
            return cli.fail(program, f"{run}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
