"""`jaxfrag export NAME` (or `python -m jaxfrag.models export NAME`): export a pretrained model to ONNX
into the data cache (see `jaxfrag.models.export`)."""

from __future__ import annotations

import sys

from jaxfrag import cli

EXAMPLES = ("jaxfrag export efficientnet-lite0", "jaxfrag export efficientnet-lite0 --force")
MODELS = ("efficientnet-lite0",)  # jaxfrag.models.export.MODELS, named here so that --help needs no JAX


def build_parser(prog: str) -> cli.Parser:
    parser = cli.Parser(
        prog=prog, description="Export a pretrained model to ONNX into the data cache.", examples=EXAMPLES
    )
    parser.add_argument("name", help=f"the model: {', '.join(MODELS)}")
    parser.add_argument("--force", action="store_true", help="export again even if a valid export is cached")
    return parser


def export_main(argv=None, prog: str = "jaxfrag export") -> int:
    """The export command from its arguments (the model's name, --force) to an exit status."""
    program = cli.program_name(prog)
    try:
        args = build_parser(prog).parse_args(argv)
    except cli.UsageError as error:
        return cli.fail(program, error)
    from jaxfrag.models import export  # loads JAX: inside, per jaxfrag.cli's import policy

    try:
        export.export(args.name, force=args.force, say=lambda line: print(line, file=sys.stderr))
    except export.ExportError as error:
        return cli.fail(program, error)
    return 0


def main(argv=None) -> int:
    """`python -m jaxfrag.models export NAME ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["export"]:
        if argv[:1] in (["-h"], ["--help"]):
            print("usage: python -m jaxfrag.models export NAME [--force]\n\n" + __doc__)
            return 0
        return cli.fail("jaxfrag.models", "the one command is: export NAME")
    return export_main(argv[1:], prog="python -m jaxfrag.models export")


if __name__ == "__main__":
    sys.exit(main())
