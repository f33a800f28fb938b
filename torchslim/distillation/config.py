"""The distillation config_list (NNI 3.0 keys) resolved into student targets and their teacher links.

Per entry (or per target in ``target_settings``): ``lambda`` (weight of this target's loss,
default 1), ``apply_method`` ('mse', 'kl' or a function ``(student, teacher) -> loss``),
``link`` (teacher module name(s) this student module may match; 'auto' = the same name),
``temperature`` (for 'kl', default 1). ``target_names`` default to ``['_output_']``;
``'_input_'`` / ``'_output_'`` (or indexed, ``'_output_1'``) name a module's inputs/outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from torchslim.config import resolve_config
from torchslim.config.schema import Schema, Validator, fail, non_negative, str_list
from torchslim.errors import ConfigError

APPLY_METHODS = ("mse", "kl")


def _apply_method(value: Any, where: str) -> Any:
    if callable(value) or value in APPLY_METHODS:
        return value
    raise fail(where, "apply_method", value, "'mse', 'kl' or a function (student, teacher) -> loss")


def _link(value: Any, where: str) -> Any:
    if value == "auto" or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise fail(where, "link", value, "'auto', a teacher module name, or a non-empty list of them")


def _positive(key: str) -> Validator:
    check = non_negative(key)

    def positive(value: Any, where: str) -> float:
        value = check(value, where)
        if value == 0:
            raise fail(where, key, value, "a number > 0")
        return value

    return positive


_TARGET_KEYS: dict[str, Validator] = {
    "lambda": non_negative("lambda"),
    "apply_method": _apply_method,
    "link": _link,
    "temperature": _positive("temperature"),
}

DISTILLATION = Schema(
    kind="distillation",
    settings={**_TARGET_KEYS, "target_names": str_list("target_names"), "target_settings": lambda v, w: v},
    target_keys=_TARGET_KEYS,
)


@dataclass(frozen=True)
class DistillTarget:
    """One student tensor to distill and the teacher tensors it may match."""

    module: str  # student module name ('' = the whole model)
    target: str  # canonical: '_output_0', '_input_1', or a parameter name
    links: tuple[str, ...]  # teacher module names
    lambda_: float = 1.0
    apply_method: str | Callable[[Any, Any], Any] = "mse"
    temperature: float = 1.0


def canonical(target: str) -> str:
    return target + "0" if target in ("_input_", "_output_") else target


def resolve_targets(model: nn.Module, teacher: nn.Module, config_list: Sequence[Mapping[str, Any]],
                    default_types: Sequence[str]) -> list[DistillTarget]:
    """Validate ``config_list`` against student and teacher; one :class:`DistillTarget` per student tensor."""
    selection = resolve_config(model, config_list, DISTILLATION, default_types=default_types,
                               default_targets=("_output_",))
    teacher_names = {n for n, _ in teacher.named_modules()}
    out = []
    for name, targets in selection.items():
        for target, settings in targets.items():
            link = settings.get("link", "auto")
            links = [name] if link == "auto" else [link] if isinstance(link, str) else list(link)
            missing = [n for n in links if n not in teacher_names]
            if missing:
                raise ConfigError(f"distillation config for {name!r}: 'link' names {missing}, which are not modules of "
                                  "the teacher model" + (" ('auto' links to the same name)" if link == "auto" else ""))
            out.append(DistillTarget(name, canonical(target), tuple(links), float(settings.get("lambda", 1.0)),
                                     settings.get("apply_method", "mse"), float(settings.get("temperature", 1.0))))
    return out


__all__ = ["APPLY_METHODS", "DISTILLATION", "DistillTarget", "canonical", "resolve_targets"]
