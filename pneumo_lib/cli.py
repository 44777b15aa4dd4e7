"""The ``pneumo`` command line.

Each area of the library contributes its sub-commands through a small
``add_commands(subparsers)`` function in its own module; this file only wires
them together, so adding a command never means editing another area's code.
Every handler returns an exit code; library errors become one clear line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from pneumo_lib import __version__

#: Modules that contribute sub-commands, in the order ``pneumo --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pneumo_lib.commands.info",
    "pneumo_lib.commands.book",
    "pneumo_lib.commands.explain",
    "pneumo_lib.commands.bench_cam",
    "pneumo_lib.commands.train",
    "pneumo_lib.commands.data",
    "pneumo_lib.commands.bench_data",
    "pneumo_lib.commands.serve",
    "pneumo_lib.commands.assignments",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``pneumo`` argument parser with every area's sub-commands."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="pneumo",
        description=(
            "Explainable pneumonia detection: data, training, evaluation, Grad-CAM "
            "explanations and the book's chapter runner."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pneumo_lib {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("pneumo: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"pneumo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
