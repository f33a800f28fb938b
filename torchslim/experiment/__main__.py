"""``python -m torchslim.experiment ID [--experiments-dir D]``: run an experiment (the
background process ``torchslim experiment create/resume`` starts)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchslim.experiment")
    parser.add_argument("experiment_id")
    parser.add_argument("--experiments-dir", default=None)
    parser.add_argument("--progress", default="plain", choices=("plain", "rich", "auto"))
    args = parser.parse_args(argv)
    from torchslim.experiment.experiment import Experiment

    exp = Experiment.open(args.experiment_id, args.experiments_dir)
    exp.run(progress=args.progress)
    return 0 if exp.status in ("DONE", "STOPPED") else 1


if __name__ == "__main__":
    sys.exit(main())
