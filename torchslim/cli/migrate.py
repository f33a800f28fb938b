"""``torchslim migrate FILE...``: show (or apply) the rewrite of NNI scripts for torchslim."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate", help="rewrite NNI scripts for torchslim (prints a diff; --write applies it)",
        description="Rewrite NNI scripts for torchslim: nni imports, renamed classes and functions, "
                    "config_list keys. Prints a unified diff; --write applies it. What cannot be "
                    "translated (TensorFlow code, remote training services, ...) is listed with line numbers.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="Python scripts (or YAML experiment configs)")
    parser.add_argument("--write", action="store_true", help="write the rewritten files in place")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from torchslim.migration import migrate_file

    status = 0
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            print(f"{name}: no such file", file=sys.stderr)
            status = 2
            continue
        migration = migrate_file(path)
        sys.stdout.write(migration.diff())
        sys.stdout.flush()
        if args.write and migration.changed:
            path.write_text(migration.result, encoding="utf-8")
            print(f"{name}: written ({len(migration.changes)} changes)", file=sys.stderr)
        for note in migration.untranslated:
            print(f"{name}:{note.line}: cannot translate: {note.message}", file=sys.stderr)
    return status
