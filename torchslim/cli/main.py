"""Entry point of the ``torchslim`` command.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``; that module
must import only light things at top level (heavy imports go inside the handler) so that
``torchslim --help`` and experiment commands start fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# sub-command modules, in the order shown by --help
COMMAND_MODULES = (
    "torchslim.cli.demo",
    "torchslim.cli.compress",
    "torchslim.cli.experiment",
    "torchslim.cli.migrate",
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
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # `torchslim ... | head`: the reader left early; that is not our error. Point stdout
        # at /dev/null so the flush at exit does not raise again, and exit like SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    return code


if __name__ == "__main__":
    sys.exit(main())
