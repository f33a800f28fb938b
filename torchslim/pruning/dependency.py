"""Dependency-aware pruning: coupled layers (residual adds, concat, depthwise) share channels."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn


def auto_set_dependency_group_ids(model: nn.Module, config_list: Sequence[Mapping[str, Any]],
                                  dummy_input: Any, **trace_options: Any) -> list[dict[str, Any]]:
    """Return a new config_list where coupled layers carry the same ``dependency_group_id``.

    As in NNI 3.0: the model is traced on ``dummy_input``; layers whose output channels are
    coupled one-to-one (residual adds, depthwise convs, squeeze-excite gates...) and that the
    config_list selects get one entry each with a shared group id, so the allocator makes
    them keep the same channels. The original entries come first, unchanged.
    """
    from torchslim.config import resolve_config
    from torchslim.graph.groups import channel_groups

    resolved = resolve_config(model, config_list, "pruning")
    new_list = [dict(entry) for entry in config_list]
    for index, members in enumerate(channel_groups(model, dummy_input, **trace_options)):
        selected = [m for m in members if "weight" in resolved.get(m, {})]
        if len(selected) < 2:
            continue
        for name in selected:
            settings = {k: v for k, v in resolved[name]["weight"].items() if k != "dependency_group_id"}
            new_list.append({"op_names": [name], **settings, "dependency_group_id": f"dep{index}"})
    return new_list


__all__ = ["auto_set_dependency_group_ids"]
