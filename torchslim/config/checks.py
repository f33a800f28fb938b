"""Checks across keys of a config_list entry, and of a target against its module.

Single values are checked by the schema's validators; what only makes sense together
(``min_sparse_ratio`` ≤ ``max_sparse_ratio``) or only against a model (an ``_input_2`` on a
one-input module) is checked here, with the same error wording.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Mapping

from torchslim.config.schema import fail
from torchslim.errors import ConfigError

_IO_TARGET = re.compile(r"^_(input|output)_(\d+|[A-Za-z_]\w*)?$")


def check_ranges(where: str, settings: Mapping[str, Any],
                 target_settings: Mapping[str, Mapping[str, Any]] = {}) -> None:
    """``min_sparse_ratio`` ≤ ``max_sparse_ratio`` in the entry and in each target's merged
    settings (``max_sparse_ratio`` may be v2's per-name dict)."""
    _min_le_max(where, settings)
    for target, own in target_settings.items():
        _min_le_max(f"{where}['target_settings'][{target!r}]", {**settings, **own})


def _min_le_max(where: str, settings: Mapping[str, Any]) -> None:
    low, high = settings.get("min_sparse_ratio"), settings.get("max_sparse_ratio")
    if low is None or high is None:
        return
    highs = high.values() if isinstance(high, Mapping) else [high]
    for value in highs:
        if low > value:
            raise fail(where, "min_sparse_ratio", low,
                       f"a number <= max_sparse_ratio ({value!r}) of the same target")


def is_io_target(target: str) -> bool:
    return bool(_IO_TARGET.match(target))


def io_target_problem(module: Any, target: str) -> str | None:
    """Why ``_input_N`` / ``_input_name`` / ``_output_N`` does not exist for ``module`` (None: it
    does). Inputs are the forward's parameters; a module has one output (index 0)."""
    match = _IO_TARGET.match(target)
    if match is None:
        return None
    kind, which = match.group(1), match.group(2)
    if which is not None and not which.isdigit():
        return None  # a named input: whether it is supported is the compressor's call
    if kind == "output":
        if which in (None, "0"):
            return None
        return f"a module has one output: '_output_' or '_output_0'"
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None  # cannot tell: accept
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if which is None or int(which) < len(positional):
        return None
    return (f"{type(module).__name__}.forward takes {len(positional)} input(s) "
            f"({', '.join(positional) or 'none'}): use '_input_0'"
            + "".join(f", '_input_{i}'" for i in range(1, len(positional))))


def check_align(where: str, align: Mapping[str, Any] | None, name: str,
                modules: Mapping[str, Any]) -> None:
    """``align`` must point at a tensor that exists (module_name None: the same module)."""
    if align is None:
        return
    source = align["module_name"] or name
    module = modules.get(source)
    if module is None:
        raise fail(where, "align", dict(align), f"a 'module_name' of the model ({source!r} is not one)")
    tensor = getattr(module, align["target_name"], None)
    if not hasattr(tensor, "shape"):
        raise fail(where, "align", dict(align),
                   f"a 'target_name' that is a tensor of {source!r} ({align['target_name']!r} is not)")
    if any(not -len(tensor.shape) <= d < len(tensor.shape) for d in align["dims"]):
        raise fail(where, "align", dict(align),
                   f"'dims' within the {len(tensor.shape)} dims of {source!r}.{align['target_name']}")


def check_pruning_targets(selection: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """A pruner masks tensors: an input/output target prunes nothing unless it is only
    aligned to a tensor's mask (NNI's BatchNorm ``_output_`` + ``align`` form)."""
    for name, targets in selection.items():
        for target, settings in targets.items():
            if is_io_target(target) and "align" not in settings:
                raise ConfigError(
                    f"target {target!r} of module {name!r}: a pruner masks tensors (e.g. "
                    f"'weight', 'bias'); '{target}' would prune nothing. Use a tensor target, or "
                    f"give '{target}' an 'align' to a tensor's mask")


def no_mask_reason(selection: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Why a pruner with this selection masked nothing (for the error)."""
    aligned = [f"{n}.{t}" for n, ts in selection.items() for t, s in ts.items() if "align" in s]
    if aligned and len(aligned) == sum(len(ts) for ts in selection.values()):
        return (f"every selected target only aligns to another mask ({', '.join(aligned[:5])}); "
                f"add an entry that prunes tensors, e.g. {{'op_types': ['Conv2d'], "
                f"'sparse_ratio': 0.5}}")
    return (f"no selected target ({', '.join(f'{n}.{t}' for n, ts in selection.items() for t in ts)[:200]}) "
            f"received a mask; check the pruner's calc_mask / the config_list")
