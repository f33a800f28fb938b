"""Candidates scored as Ray tasks: ``compress(..., ray=True | 'HOST:PORT')``.

The scorer (the dense model, the cost model and the user's ``evaluate_fn`` /
``short_term_fn`` with whatever data they close over) is put in Ray's object store once;
each candidate is then one task on whichever node has a free CPU (or GPU, with
``num_gpus``). The search itself stays in this process: what moves to the cluster is the expensive part,
the short-term fine-tune and evaluation of each masked candidate. The tuner search with
``concurrency`` k proposes k candidates before it learns their scores, and they run as k
tasks at once; with k = 1 the searched sparsities are those of a local run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from torchslim.errors import require

# this checkout on the workers' path: a task unpickles torchslim's own functions
_ROOT = str(Path(__file__).resolve().parents[2])


def _score_remote(score: Callable[[np.ndarray], float], s: np.ndarray) -> float:
    return float(score(s))


class RayScorer:
    """``score(s)`` evaluated as a Ray task (``address``: None for a local Ray or the one
    already initialised, 'auto' or 'HOST:PORT' for a cluster)."""

    def __init__(self, score: Callable[[np.ndarray], float], address: str | None = None, *,
                 num_cpus: float = 1, num_gpus: float = 0) -> None:
        self.ray = require("ray", "ray", "Evaluating candidates on Ray (--ray)")
        self.owned = not self.ray.is_initialized()
        if self.owned:
            self.ray.init(address=address, log_to_driver=False, include_dashboard=False,
                          configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": _ROOT}})
        self.ref = self.ray.put(score)
        self.task = self.ray.remote(max_retries=0)(_score_remote).options(num_cpus=num_cpus, num_gpus=num_gpus)
        self.calls = 0

    def __call__(self, s: np.ndarray) -> float:
        return self.submit(s)()

    def submit(self, s: np.ndarray) -> Callable[[], float]:
        """Start scoring ``s`` as a task; returns the call that waits for its score."""
        self.calls += 1
        ref = self.task.remote(self.ref, np.asarray(s, dtype=float))
        return lambda: float(self.ray.get(ref))

    def close(self) -> None:
        """Shut down the Ray this scorer started (a cluster it joined is left running)."""
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
            self.owned = False

    def __enter__(self) -> "RayScorer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["RayScorer"]
