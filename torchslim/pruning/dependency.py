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
    them keep the same channels. Layers whose channels feed a grouped convolution (or that
    are one) get ``channel_groups``: the same number of channels goes from every group, so
    the groups stay equal without keeping extra channels. The original entries come first.
    """
    from torchslim.config import resolve_config
    from torchslim.graph.groups import analyze, coupled_orders, group_counts

    resolved = resolve_config(model, config_list, "pruning")
    new_list = [dict(entry) for entry in config_list]
    ctx = analyze(model, dummy_input, **trace_options)
    counts = group_counts(ctx)
    grouped: set[str] = set()
    for index, members in enumerate(coupled_orders(ctx)):
        orders = {m: order for m, order in members if "weight" in resolved.get(m, {})}
        selected = list(orders)
        if len(selected) < 2:
            continue
        balance = {counts[m] for m in selected if m in counts}
        permuted = any(orders[m] != orders[selected[0]] for m in selected)
        for name in selected:
            settings = {k: v for k, v in resolved[name]["weight"].items() if k != "dependency_group_id"}
            if len(balance) == 1 and not permuted:
                settings["channel_groups"] = next(iter(balance))
            if permuted:  # channel order[k] of each member is coupled to position k of the others
                settings["channel_order"] = orders[name]
            new_list.append({"op_names": [name], **settings, "dependency_group_id": f"dep{index}"})
            grouped.add(name)
    # a layer feeding (or being) a grouped conv prunes as many channels in every group
    for name, groups in counts.items():
        if name not in grouped and "weight" in resolved.get(name, {}):
            settings = dict(resolved[name]["weight"])
            new_list.append({"op_names": [name], **settings, "channel_groups": groups})
    return new_list


__all__ = ["auto_set_dependency_group_ids"]
