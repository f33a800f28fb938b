"""Resolve canonical config entries against a model: which module, which target, which settings."""
from __future__ import annotations

import difflib
import re
import warnings
from typing import Any, Iterable

import torch
from torch import nn

from torchslim.config.checks import check_align, check_ranges, io_target_problem
from torchslim.config.parser import ConfigEntry
from torchslim.errors import ConfigError

# Module types NNI calls 'default' for pruning: every layer that owns a weight matrix.
DEFAULT_PRUNING_TYPES = (
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "Linear", "Bilinear", "Embedding", "EmbeddingBag",
)

# name -> target name -> settings
Selection = dict[str, dict[str, dict[str, Any]]]

_IO_TARGET = re.compile(r"^_(input|output)_(\d+|[A-Za-z_]\w*)?$")


def _known_type_names(model: nn.Module) -> set[str]:
    names = {type(m).__name__ for m in model.modules()}
    names |= {n for n in dir(nn) if isinstance(getattr(nn, n, None), type) and issubclass(getattr(nn, n), nn.Module)}
    return names


def _check_names(entry: ConfigEntry, model: nn.Module, module_names: set[str]) -> None:
    known_types = _known_type_names(model)
    for key in ("op_types", "exclude_op_types"):
        for type_name in getattr(entry, key) or ():
            if type_name != "default" and type_name not in known_types:
                hint = difflib.get_close_matches(type_name, sorted(known_types), n=1)
                raise ConfigError(
                    f"{entry.where}: key '{key}' names an unknown module type {type_name!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                    + " Allowed: torch.nn module class names, custom class names in the model, or 'default'"
                )
    for key in ("op_names", "exclude_op_names"):
        for name in getattr(entry, key) or ():
            if name not in module_names:
                hint = difflib.get_close_matches(name, sorted(module_names), n=3)
                raise ConfigError(
                    f"{entry.where}: key '{key}' names {name!r}, which is not a module of the model"
                    + (f"; close names: {', '.join(hint)}" if hint else "")
                )


def _matches(entry: ConfigEntry, name: str, module: nn.Module, default_types: Iterable[str]) -> bool:
    type_name = type(module).__name__
    if entry.op_types is not None:
        types = set(entry.op_types)
        if "default" in types:
            types |= set(default_types)
        if type_name not in types:
            return False
    if entry.op_names is not None and name not in entry.op_names:
        return False
    if entry.op_names_re is not None and not any(re.fullmatch(p, name) for p in entry.op_names_re):
        return False
    if name in entry.exclude_op_names or type_name in entry.exclude_op_types:
        return False
    return True


def _check_target(entry: ConfigEntry, name: str, module: nn.Module, target: str) -> None:
    if _IO_TARGET.match(target):
        problem = io_target_problem(module, target)
        if problem:
            raise ConfigError(f"{entry.where}: target {target!r} does not exist for module {name!r} "
                              f"({type(module).__name__}): {problem}")
        return
    value = getattr(module, target, None)
    if not isinstance(value, torch.Tensor):
        available = [n for n, _ in module.named_parameters(recurse=False)] + ["_input_", "_output_"]
        raise ConfigError(
            f"{entry.where}: target {target!r} is not a tensor of module {name!r} "
            f"({type(module).__name__}); available targets: {', '.join(available)}"
        )


def select_modules(
    model: nn.Module,
    entries: list[ConfigEntry],
    *,
    default_types: Iterable[str] = DEFAULT_PRUNING_TYPES,
    default_targets: Iterable[str] = ("weight",),
) -> Selection:
    """Apply entries in order (later ones override earlier ones, exclusions remove).

    Raises ConfigError when a name does not exist or when nothing at all is selected.
    """
    default_types = tuple(default_types)
    named = [(n, m) for n, m in model.named_modules() if n]
    module_names = {n for n, _ in named}
    modules = dict(named)
    selection: Selection = {}
    for entry in entries:
        _check_names(entry, model, module_names)
        hits = [(n, m) for n, m in named if _matches(entry, n, m, default_types)]
        if not hits:
            warnings.warn(f"{entry.where} matches no module of the model", stacklevel=3)
        for name, module in hits:
            if entry.exclude:
                selection.pop(name, None)
                continue
            targets = entry.target_names or list(entry.target_settings) or list(default_targets)
            per_module = selection.setdefault(name, {})
            for target in targets:
                _check_target(entry, name, module, target)
                merged = per_module.setdefault(target, {})
                merged.update(entry.settings)
                merged.update(entry.target_settings.get(target, {}))
                if isinstance(merged.get("max_sparse_ratio"), dict):  # v2 per-name dict
                    merged["max_sparse_ratio"] = merged["max_sparse_ratio"].get(name, 1.0)
                # what later entries merged in must still make sense together
                check_ranges(f"{entry.where} (merged settings of {name!r}.{target})", merged)
                check_align(f"{entry.where}['target_settings'][{target!r}]", merged.get("align"),
                            name, modules)
    if not selection:
        raise ConfigError(
            "config_list selects no layer of the model: check 'op_types' / 'op_names' "
            f"(module types present: {sorted({type(m).__name__ for _, m in named})})"
        )
    return selection
