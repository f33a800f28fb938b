"""Save and load a shrunk model in one call each (no masks, no re-running speedup).

The file holds the whole module (``torch.save``), its ``state_dict`` and a *shape spec*:
for every shrunk layer its kind and new channel counts. ``load(path)`` returns the pickled
module; ``load(path, model=fresh_model)`` resizes a freshly built model of the same
architecture from the spec and loads the weights into it, which also works when the
model's classes cannot be unpickled (e.g. they moved).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.graph.kinds import get_kind

SPEC_ATTR = "_torchslim_speedup_spec"
FORMAT = "torchslim.speedup/1"
LITERALS_KEY = "<literals>"  # not a module path


def record_spec(model: nn.Module, layers: dict[str, tuple[str, dict[str, int], int]],
                literals: list[tuple[str, int, int]] = ()) -> None:
    """Remember ``{layer: (kind, {slot: kept count}, groups)}`` on the model (merged with earlier
    runs) and the sizes written as numbers that were rewritten (``(node, dim, count)``)."""
    spec = dict(getattr(model, SPEC_ATTR, {}))
    spec.update(layers)
    if literals:
        spec[LITERALS_KEY] = [tuple(x) for x in literals]
    setattr(model, SPEC_ATTR, spec)


def save(model: nn.Module, path: str | Path) -> None:
    """Write the shrunk model (module, weights and shape spec) to ``path``."""
    torch.save({"format": FORMAT, "model": model, "state_dict": model.state_dict(),
                "spec": getattr(model, SPEC_ATTR, {})}, path)


def load(path: str | Path, model: nn.Module | None = None, map_location: Any = "cpu") -> nn.Module:
    """Load a model written by :func:`save`.

    Without ``model`` the pickled module is returned (only load files you trust: this
    unpickles Python objects). With ``model`` (a fresh, unpruned instance of the same
    architecture) its layers are resized from the shape spec and the weights loaded.
    """
    if model is None:
        blob = torch.load(path, map_location=map_location, weights_only=False)
        return blob["model"]
    blob = torch.load(path, map_location=map_location, weights_only=False)
    apply_spec(model, blob["spec"])
    model.load_state_dict(blob["state_dict"])
    return model


def apply_spec(model: nn.Module, spec: dict[str, tuple[str, dict[str, int], int]]) -> None:
    """Resize ``model``'s layers to the recorded channel counts (weights are then loaded)."""
    from torchslim.speedup.core import _replace

    from torchslim.speedup.literals import apply_literal_spec

    for name, entry in spec.items():
        if name == LITERALS_KEY:
            continue
        kind, sizes, groups = entry
        module = model.get_submodule(name)
        keep = {}
        for slot, n in sizes.items():
            # the first n // groups channels of every group (the values come from the state_dict)
            full = get_kind(kind).size_of(module, slot)
            keep[slot] = (torch.arange(groups).unsqueeze(1) * (full // groups) + torch.arange(n // groups)).reshape(-1)
        new = get_kind(kind).shrink(module, keep)
        if isinstance(new, nn.Module) and new is not module:
            _replace(model, module, new)
    apply_literal_spec(model, spec.get(LITERALS_KEY, []))
    setattr(model, SPEC_ATTR, dict(spec))
