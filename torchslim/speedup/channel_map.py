"""The channel map: which original indices every shrunk layer kept, on every dim.

After ``ModelSpeedup(...).speedup_model()``, ``speedup.channel_map[name]`` is a
:class:`LayerChannels` for each layer speedup shrank:

* ``kept[slot]``: sorted original indices kept in each of the layer's channel *slots*
  (``'out'``, ``'in'``, ``'heads'``), with ``sizes[slot]`` the original size;
* ``outputs`` / ``inputs``: the kept channels (dim 1) of its output / input tensor;
* ``params[name][dim]``: the kept original indices along ``dim`` of each parameter or buffer.

So anything indexed by the original channels (a calibration config, optimizer state, a
second model) can follow the model: ``speedup.channel_map.reindex(calibration_config)``. The
map is saved by :func:`torchslim.speedup.save` as plain tensors, and composed over several
speedups of one model (:func:`model_channel_map` is relative to the never-shrunk model).

NNI's view, ``speedup.node_infos[node].output_masks / param_masks`` (0/1 masks over the original
shape), is built over it for code written for NNI (the seeds' ``trans()``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch
from torch import nn

MAP_ATTR = "_torchslim_channel_map"
# slot -> parameter dims it indexes, per module kind; a transposed conv swaps weight dims 0 and 1
_OUT_PARAMS = {"batchnorm": ("weight", "bias", "running_mean", "running_var"),
               "instancenorm": ("weight", "bias", "running_mean", "running_var"),
               "prelu": ("weight",), "groupnorm": ("weight", "bias"), "layernorm": ("weight", "bias")}
PER_CHANNEL_KINDS = frozenset({*_OUT_PARAMS, "depthwise"})  # input channel i is output channel i


def param_dims(kind: str, module: nn.Module) -> dict[str, list[tuple[str, int]]]:
    """``{slot: [(param, dim), ...]}``: which dim of which tensor each slot indexes (empty if unknown)."""
    if kind in _OUT_PARAMS:
        return {"out": [(p, 0) for p in _OUT_PARAMS[kind]]}
    if kind in ("conv", "grouped_conv", "depthwise"):
        out_dim, in_dim = (1, 0) if getattr(module, "transposed", False) else (0, 1)
        dims = {"out": [("weight", out_dim), ("bias", 0)]}
        if kind == "conv":  # a grouped conv's weight dim 1 holds per-group positions, not channel ids
            dims["in"] = [("weight", in_dim)]
        return dims
    if kind == "linear":
        return {"out": [("weight", 0), ("bias", 0)], "in": [("weight", 1)]}
    if kind == "conv1d_hf":
        return {"out": [("weight", 1), ("bias", 0)], "in": [("weight", 0)]}
    if kind == "embedding":
        return {"out": [("weight", 1)]}
    return {}


@dataclass
class LayerChannels:
    """What one layer kept; every index is a position in the original (unshrunk) layer."""

    kind: str
    kept: dict[str, torch.Tensor]
    sizes: dict[str, int]
    params: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def outputs(self) -> torch.Tensor | None:
        return self.kept.get("out")

    @property
    def inputs(self) -> torch.Tensor | None:
        if "in" in self.kept:
            return self.kept["in"]
        return self.kept.get("out") if self.kind in PER_CHANNEL_KINDS else None

    @property
    def input_size(self) -> int | None:
        return self.sizes.get("in", self.sizes.get("out") if self.kind in PER_CHANNEL_KINDS else None)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "kept": dict(self.kept), "sizes": dict(self.sizes),
                "params": {p: dict(d) for p, d in self.params.items()},
                "param_shapes": {p: list(s) for p, s in self.param_shapes.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LayerChannels":
        return cls(data["kind"], dict(data["kept"]), dict(data["sizes"]),
                   {p: {int(k): v for k, v in d.items()} for p, d in data.get("params", {}).items()},
                   {p: tuple(s) for p, s in data.get("param_shapes", {}).items()})

    def then(self, later: "LayerChannels") -> "LayerChannels":
        """This layer shrunk again by ``later`` (whose indices are positions in this one's result)."""
        kept = dict(self.kept)
        for slot, idx in later.kept.items():
            kept[slot] = kept[slot][idx] if slot in kept else idx
        params = {p: dict(d) for p, d in self.params.items()}
        for p, dims in later.params.items():
            for dim, idx in dims.items():
                params.setdefault(p, {})[dim] = params[p][dim][idx] if dim in params.get(p, {}) else idx
        sizes = {**later.sizes, **self.sizes}
        return LayerChannels(self.kind, kept, sizes, params, {**later.param_shapes, **self.param_shapes})


class ChannelMap(Mapping[str, LayerChannels]):
    """``{layer name: LayerChannels}`` for the layers a speedup shrank (read-only mapping)."""

    def __init__(self, layers: Mapping[str, LayerChannels] | None = None) -> None:
        self._layers = dict(layers or {})

    def __getitem__(self, name: str) -> LayerChannels:
        return self._layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {{{', '.join(f'{s}: {len(i)}/{l.sizes[s]}' for s, i in l.kept.items())}}}"
                         for n, l in self._layers.items())
        return f"ChannelMap({body})"

    @classmethod
    def from_keep(cls, uses: Mapping[str, Any], keep: Mapping[str, Mapping[str, torch.Tensor]]) -> "ChannelMap":
        """Built by speedup, before shrinking: ``uses[name]`` has ``kind``, ``module`` and ``slots``
        (slot -> ids, one per original channel); ``keep[name][slot]`` are the kept indices."""
        layers = {}
        for name, slots in keep.items():
            use = uses[name]
            sizes = {slot: int(use.slots[slot].numel()) for slot in slots}
            params: dict[str, dict[int, torch.Tensor]] = {}
            shapes: dict[str, tuple[int, ...]] = {}
            for slot, targets in param_dims(use.kind, use.module).items():
                if slot not in slots:
                    continue
                for pname, dim in targets:
                    tensor = getattr(use.module, pname, None)
                    if isinstance(tensor, torch.Tensor) and tensor.dim() > dim and tensor.shape[dim] == sizes[slot]:
                        params.setdefault(pname, {})[dim] = slots[slot].clone()
                        shapes[pname] = tuple(tensor.shape)
            layers[name] = LayerChannels(use.kind, {s: i.clone() for s, i in slots.items()}, sizes, params, shapes)
        return cls(layers)

    def then(self, later: "ChannelMap") -> "ChannelMap":
        """This map followed by a later speedup's map: indices relative to the original model."""
        layers = dict(self._layers)
        for name, layer in later.items():
            layers[name] = layers[name].then(layer) if name in layers else layer
        return ChannelMap(layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, ints, strings, tensors): loadable with ``weights_only=True``."""
        return {name: layer.to_dict() for name, layer in self._layers.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ChannelMap":
        return cls({name: LayerChannels.from_dict(d) for name, d in data.items()})

    # --- following the model ----------------------------------------------------------------
    def reindex(self, calibration_config: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """A calibration config taken on the unshrunk model, re-indexed onto the shrunk one.

        Per-channel values (scale, zero point, tracked range) of ``_input_N`` / ``_output_N``
        (channels on dim 1) and of parameters (on the dims the layer shrank) keep the kept
        channels; per-tensor values and layers speedup did not shrink are copied unchanged.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, entries in calibration_config.items():
            layer = self._layers.get(name)
            out[name] = {t: _reindex_entry(layer, t, e) if layer is not None else _copy(e) for t, e in entries.items()}
        return out

    def node_infos(self) -> dict["ChannelNode", "NodeInfo"]:
        """NNI's ``speedup.node_infos`` view: a ``call_module`` node per shrunk layer whose
        ``args[0]`` is a node standing for its input; 0/1 masks over the original shapes."""
        infos: dict[ChannelNode, NodeInfo] = {}
        for name, layer in self._layers.items():
            source = ChannelNode("placeholder", f"{name}:input", ())
            infos[source] = NodeInfo(output_masks=_channel_mask(layer.inputs, layer.input_size))
            param_masks = {}
            for pname, shape in layer.param_shapes.items():
                mask = torch.ones(shape)
                for dim, idx in layer.params[pname].items():
                    keep = torch.zeros(shape[dim])
                    keep[idx] = 1
                    view = [1] * len(shape)
                    view[dim] = -1
                    mask = mask * keep.reshape(view)
                param_masks[pname] = mask
            node = ChannelNode("call_module", name, (source,))
            infos[node] = NodeInfo(output_masks=_channel_mask(layer.outputs, layer.sizes.get("out")),
                                   param_masks=param_masks)
        return infos


@dataclass(frozen=True)
class ChannelNode:
    """Stands for a torch.fx node in NNI's ``node_infos`` (``op``, ``target``, ``args``)."""

    op: str
    target: str
    args: tuple = ()


@dataclass
class NodeInfo:
    """NNI's per-node masks: ``output_masks`` (channels on dim 1) and ``param_masks``."""

    output_masks: torch.Tensor | None = None
    param_masks: dict[str, torch.Tensor] = field(default_factory=dict)


def _channel_mask(kept: torch.Tensor | None, size: int | None) -> torch.Tensor | None:
    if kept is None or size is None:
        return None
    mask = torch.zeros(1, size)
    mask[0, kept] = 1
    return mask


def _copy(entry: Any) -> Any:
    if isinstance(entry, Mapping):
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
    return entry


def _reindex_entry(layer: LayerChannels, target: str, entry: Any) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    if target.startswith("_input_") or target.startswith("_output_"):
        kept, size = (layer.inputs, layer.input_size) if target.startswith("_input_") else \
            (layer.outputs, layer.sizes.get("out"))
        dims = {1: (kept, size)} if kept is not None else {}
    else:
        dims = {dim: (idx, layer.param_shapes[target][dim]) for dim, idx in layer.params.get(target, {}).items()}
    out = {}
    for key, value in entry.items():
        if isinstance(value, torch.Tensor):
            value = value.clone()
            for dim, (idx, size) in dims.items():
                if value.dim() > dim and value.shape[dim] == size:
                    value = value.index_select(dim, idx.to(value.device))
        out[key] = value
    return out


def model_channel_map(model: nn.Module) -> ChannelMap:
    """The map of every speedup applied to ``model`` so far, relative to its original layers."""
    return getattr(model, MAP_ATTR, None) or ChannelMap()


def record_channel_map(model: nn.Module, channel_map: ChannelMap) -> None:
    """Compose ``channel_map`` (one speedup) into the map kept on ``model``."""
    setattr(model, MAP_ATTR, model_channel_map(model).then(channel_map))


__all__ = ["ChannelMap", "ChannelNode", "LayerChannels", "NodeInfo", "model_channel_map", "param_dims",
           "record_channel_map"]
