"""A read-only web UI for experiments: ``torchslim experiment view [ID]``.

Stdlib only (``http.server`` + ``sqlite3``): viewing must start fast and never need a
package the runner does not. See :mod:`torchslim.experiment.webui.server`.
"""
from __future__ import annotations

from torchslim._lazy import lazy_getattr

_LAZY = {
    "make_server": "torchslim.experiment.webui.server",
    "serve": "torchslim.experiment.webui.server",
    "ViewerServer": "torchslim.experiment.webui.server",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
