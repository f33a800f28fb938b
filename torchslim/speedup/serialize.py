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

from torchslim.speedup.shrink import SHRINKERS

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
            full = _slot_size(module, kind, slot)
            keep[slot] = (torch.arange(groups).unsqueeze(1) * (full // groups) + torch.arange(n // groups)).reshape(-1)
        new = SHRINKERS[kind](module, keep)
        if isinstance(new, nn.Module) and new is not module:
            _replace(model, module, new)
    apply_literal_spec(model, spec.get(LITERALS_KEY, []))
    setattr(model, SPEC_ATTR, dict(spec))


def _slot_size(module: nn.Module, kind: str, slot: str) -> int:
    if slot == "heads":
        return int(getattr(module, "num_heads", None) or getattr(module, "num_attention_heads"))
    if kind in ("conv", "grouped_conv", "depthwise"):
        return module.in_channels if slot == "in" else module.out_channels
    if kind == "linear":
        return module.in_features if slot == "in" else module.out_features
    if kind == "conv1d_hf":
        return module.weight.shape[0 if slot == "in" else 1]
    if kind == "embedding":
        return module.embedding_dim
    if kind in ("mha", "gpt2_attention", "qkvo_attention"):
        proj = getattr(module, "out_proj", None) or getattr(module, "c_proj", None) or module.o_proj
        return proj.weight.shape[1] if kind == "gpt2_attention" else proj.weight.shape[0]
    return int(getattr(module, "num_features", None) or getattr(module, "num_channels", None)
               or getattr(module, "num_parameters"))
