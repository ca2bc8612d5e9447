"""`python -m jaxfrag.models export efficientnet-lite0`: export a pretrained model to ONNX (see `export`)."""

from __future__ import annotations

import sys

from jaxfrag import cli


def main(argv=None) -> int:
    from jaxfrag.models import export  # loads JAX: inside, per jaxfrag.cli's import policy

    parser = cli.Parser(prog="python -m jaxfrag.models", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    exporting = commands.add_parser("export", help="export a pretrained model to ONNX into the data cache")
    exporting.add_argument("name", help=f"one of: {', '.join(export.MODELS)}")
    exporting.add_argument("--force", action="store_true", help="export again even if a valid export is cached")
    try:
        args = parser.parse_args(argv)
    except cli.UsageError as error:
        return cli.fail("jaxfrag.models", error)
    try:
        export.export(args.name, force=args.force, say=lambda line: print(line, file=sys.stderr))
    except export.ExportError as error:
        return cli.fail("jaxfrag.models", error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
