"""A NAS trial as a subprocess: ``python -m torchslim.nas.trial payload.pkl``.

The payload is the pickled ``(model_space, evaluator)``; the architecture comes from the
engine like any trial's parameters.
"""
from __future__ import annotations

import pickle
import sys


def main(argv: list[str]) -> int:
    from torchslim.experiment import trial

    with open(argv[0], "rb") as f:
        space, evaluator = pickle.load(f)
    result = evaluator.evaluate(space.freeze(trial.get_next_parameter()))
    if result is not None:
        trial.report_final_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
