"""Save and load a shrunk model in one call each (no masks, no re-running speedup).

The file holds the model's ``state_dict``, a *shape spec* (for every shrunk layer its kind
and new channel counts), the channel map (which original indices every shrunk layer kept,
as plain tensors; see ``channel_map.py``) and, separately, the pickled module.
``load(path, model=fresh)`` reads only tensors and plain data (``torch.load(weights_only=True)``:
a crafted file cannot run code), resizes a freshly built model of the same architecture from
the spec and loads the weights; the model's classes need not be importable from where they
were saved. ``load(path, weights_only=False)`` unpickles the saved module itself: trusted
files only.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.graph.kinds import get_kind
from torchslim.speedup.channel_map import MAP_ATTR, ChannelMap, model_channel_map

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
    """Write the shrunk model (weights, shape spec, channel map and the pickled module) to ``path``."""
    pickled = io.BytesIO()
    torch.save(model, pickled)
    torch.save({"format": FORMAT, "state_dict": model.state_dict(),
                "spec": getattr(model, SPEC_ATTR, {}), "channel_map": model_channel_map(model).to_dict(),
                "module": pickled.getvalue()}, path)


def load(path: str | Path, model: nn.Module | None = None, map_location: Any = "cpu", *,
         weights_only: bool = True) -> nn.Module:
    """Load a model written by :func:`save`.

    With ``model`` (a fresh, unpruned instance of the same architecture) its layers are
    resized from the shape spec and the weights loaded; only tensors and plain data are
    read. Without ``model``, pass ``weights_only=False`` to get the pickled module back:
    unpickling runs code from the file, so only do it for files you trust.
    """
    if model is None and weights_only:
        raise ValueError(f"load({str(path)!r}) without model= would unpickle the saved module, "
                         f"which can run code from the file; pass model=<fresh instance of the "
                         f"architecture> (safe), or weights_only=False for a file you trust")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if weights_only:
            raise ValueError(f"{str(path)!r} holds more than tensors and plain data (a file from "
                             f"an older torchslim, or not ours); load it with "
                             f"weights_only=False only if you trust it ({exc})") from None
        blob = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a file written by torchslim.speedup.save")
    if model is None:
        if "module" not in blob:  # an older file: the module is pickled in place
            return blob["model"]
        return torch.load(io.BytesIO(blob["module"]), map_location=map_location,
                          weights_only=False)
    apply_spec(model, blob["spec"])
    model.load_state_dict(blob["state_dict"])
    if blob.get("channel_map"):
        setattr(model, MAP_ATTR, ChannelMap.from_dict(blob["channel_map"]))
    return model


def apply_spec(model: nn.Module, spec: dict[str, tuple[str, dict[str, int], int]]) -> None:
    """Resize ``model``'s layers to the recorded channel counts (weights are then loaded)."""
    from torchslim.speedup.core import replace_module

    from torchslim.speedup.literals import apply_literal_spec
    from torchslim.speedup.narrow import cut_param

    for name, entry in spec.items():
        if name == LITERALS_KEY:
            continue
        kind, sizes, groups = entry
        if kind == "parameter":  # a stream parameter cut by narrow_normalized (speedup/narrow.py)
            owner, _, attr = name.rpartition(".")
            (dim, n), = sizes.items()
            cut_param(model.get_submodule(owner), attr, int(dim), torch.arange(n))
            continue
        module = model.get_submodule(name)
        keep = {}
        for slot, n in sizes.items():
            # the first n // groups channels of every group (the values come from the state_dict)
            full = get_kind(kind).size_of(module, slot)
            keep[slot] = (torch.arange(groups).unsqueeze(1) * (full // groups) + torch.arange(n // groups)).reshape(-1)
        new = get_kind(kind).shrink(module, keep)
        if isinstance(new, nn.Module) and new is not module:
            replace_module(model, module, new)
    apply_literal_spec(model, spec.get(LITERALS_KEY, []))
    setattr(model, SPEC_ATTR, dict(spec))
