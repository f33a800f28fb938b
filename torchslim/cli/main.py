"""Entry point of the ``torchslim`` command.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``; that module
must import only light things at top level (heavy imports go inside the handler) so that
``torchslim --help`` and experiment commands start fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command modules, in the order shown by --help
COMMAND_MODULES = (
    "torchslim.cli.demo",
    "torchslim.cli.compress",
    "torchslim.cli.experiment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchslim",
        description="Make PyTorch models smaller and faster, and search for the best way to do it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # capability not installed in this checkout
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
