"""JSON that every parser accepts: non-finite floats become ``null``, numpy scalars numbers.

Python's ``json`` writes ``NaN`` / ``Infinity`` by default, which is not JSON (browsers'
``JSON.parse``, ``jq`` and most other parsers reject it). Every JSON torchslim writes for
others to read goes through :func:`dumps`. Stdlib only.
"""
from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with NaN/±inf replaced by None and numpy/torch scalars by Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return finite(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``, refusing anything non-finite left."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
