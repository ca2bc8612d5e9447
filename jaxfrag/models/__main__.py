"""`python -m jaxfrag.models export efficientnet-lite0`: export a pretrained model to ONNX (see `export`)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from jaxfrag.models import export
    from jaxfrag.sweep import UsageError, _Parser

    parser = _Parser(prog="python -m jaxfrag.models", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    exporting = commands.add_parser("export", help="export a pretrained model to ONNX into the data cache")
    exporting.add_argument("name", help=f"one of: {', '.join(export.MODELS)}")
    exporting.add_argument("--force", action="store_true", help="export again even if a valid export is cached")
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"jaxfrag.models: error: {error}", file=sys.stderr)
        return 2
    try:
        export.export(args.name, force=args.force, say=lambda line: print(line, file=sys.stderr))
    except export.ExportError as error:
        print(f"jaxfrag.models: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
