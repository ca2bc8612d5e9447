"""`jaxfrag COMMAND [OPTIONS]` (or `python -m jaxfrag`): the one command line of the package.

Each command is an entry point of its own (`python -m jaxfrag.sweep` and the others keep working);
this module only dispatches, so `jaxfrag --help` and `jaxfrag --version` answer without loading JAX.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NamedTuple

from jaxfrag import __version__, cli


class Command(NamedTuple):
    module: str
    function: str
    summary: str


COMMANDS = {
    "sweep": Command("jaxfrag.sweep", "main", "Monte Carlo of the NN-vs-optimal robustness gap over d"),
    "mnist": Command("jaxfrag.mnist", "main", "the paper's CNN on MNIST: Tables 5-6"),
    "imagenet": Command("jaxfrag.imagenet", "main", "an ONNX ImageNet classifier: Tables 7-8, Figure 6"),
    "export": Command("jaxfrag.models.__main__", "export_main", "export a pretrained model to ONNX"),
    "verdicts": Command("jaxfrag.verdicts", "main", "the verdict ledger of run folders"),
    "decide": Command("jaxfrag.decide", "main", "add trials until every claim of the ledger is decided"),
    "report": Command("jaxfrag.report", "main", "rebuild run folders' report.html"),
}
EXAMPLES = (
    "jaxfrag sweep --d 7..64 --out runs/demo",
    "jaxfrag verdicts runs/demo --ledger runs/verdicts",
)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: jaxfrag [--version] [--help] COMMAND [OPTIONS]",
        "",
        "Monte Carlo tests of 'feature compression is the root cause of adversarial fragility' (Gao et al.).",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this help message and exit",
        "  --version   show jaxfrag's version and exit",
        "",
        "`jaxfrag COMMAND --help` shows a command's options.",
        "",
        "examples:",
        *(f"  {line}" for line in EXAMPLES),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"jaxfrag {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        return cli.fail("jaxfrag", f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    command = COMMANDS[name]
    entry = getattr(importlib.import_module(command.module), command.function)
    try:
        return entry(argv[1:], prog=f"jaxfrag {name}")
    except BrokenPipeError:  # `jaxfrag verdicts RUN | head`: the reader left early; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented remedy
        return 1


if __name__ == "__main__":
    sys.exit(main())
