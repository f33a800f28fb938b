"""Shared by the benchmark scripts: raw JSON in, markdown out, honest statistics."""
from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def machine(shared: bool = True) -> str:
    """Where the numbers were taken (latency read on a shared machine is labelled so)."""
    import torch

    state = "shared with other jobs (latency figures are indicative only)" if shared else "quiet"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores {state}, torch {torch.__version__.split('+')[0]}"


def save(name: str, data: dict[str, Any], markdown: str) -> Path:
    """Write ``results/<name>.json`` (raw) and ``results/<name>.md`` (rendered from it)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, default=float))
    path = RESULTS / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def mean_sd(values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """``mean ± sd (n)``: the sample standard deviation over seeds."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}{unit} (n={len(values)})"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
