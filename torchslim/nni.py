"""NNI names that belong to no single family (the families' own are in ``<family>/nni.py``)."""
from __future__ import annotations

from typing import Any, TypeVar

from torchslim.utils.legacy import deprecated

T = TypeVar("T")


def trace(obj: T, *args: Any, **kwargs: Any) -> T:
    """NNI's ``nni.trace(cls_or_func)``: torchslim needs no traced objects (it hooks plain optimizer
    instances), so this returns ``obj`` unchanged: ``trace(Adam)(params, lr=1e-3)`` is ``Adam(params, lr=1e-3)``."""
    name = getattr(obj, "__name__", type(obj).__name__)
    deprecated(f"nni.trace({name})", f"{name}(...) directly (torchslim hooks plain instances)")
    return obj


# NNI spellings at the top level: old -> (module, modern name)
ALIASES: dict[str, tuple[str, str]] = {}

__all__ = ["ALIASES", "trace"]
