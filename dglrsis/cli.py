"""The ``dglrsis`` console script.

Each sub-command lives in its own small module under :mod:`dglrsis.commands` exposing ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. User errors (:class:`DglrsisError`) become one line
on stderr and exit code 2; unexpected errors become one line and exit code 1. ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import OneLineParser, guarded

# Sub-command name -> module under dglrsis.commands. Only working commands are listed.
COMMANDS = {
    "models": "models",
    "info": "info",
    "world": "world",
    "decompose": "decompose",
    "segment": "segment",
    "refer": "refer",
    "eval": "eval",
    "convert": "convert",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="dglrsis", description="Text-driven segmentation of remote-sensing images (DGL-RSIS)."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"dglrsis.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hint = (
        "process it in smaller tiles (--tile 1024, or --tile 512)"
        if args.command == "segment"
        else "use a smaller image or a machine with more memory"
    )
    return guarded(f"dglrsis {args.command}", lambda: args._run(args), args.debug, hint)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
