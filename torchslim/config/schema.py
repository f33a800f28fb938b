"""What a config_list entry may hold: keys, their validators and legacy spellings.

A :class:`Schema` describes one kind of compressor (pruning, quantization, ...). Legacy
(NNI v2) keys are translated to the canonical (NNI 3.0) spelling in one place, per entry,
before validation — never by looking at the first entry only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from torchslim.errors import ConfigError

# A validator receives (value, where) and returns the normalised value or raises ConfigError.
Validator = Callable[[Any, str], Any]

# Keys that choose modules; shared by every kind of compressor.
SELECTOR_KEYS = ("op_types", "op_names", "op_names_re", "exclude_op_names", "exclude_op_types", "exclude")


class InvalidValue(ConfigError):
    """A key's value is not allowed. Keeps the parts so the parser can name the key as the user wrote it."""

    def __init__(self, where: str, key: str, value: Any, allowed: str, canonical: str | None = None) -> None:
        self.where, self.key, self.value, self.allowed, self.canonical = where, key, value, allowed, canonical
        super().__init__(invalid_value_message(where, key, value, allowed, canonical))

    def as_written(self, key: str) -> "InvalidValue":
        """The same error naming ``key`` (the user's spelling of this error's canonical key)."""
        if key == self.key:
            return self
        return InvalidValue(self.where, key, self.value, self.allowed, canonical=self.key)


def invalid_value_message(where: str, key: str, value: Any, allowed: str, canonical: str | None = None) -> str:
    """The one wording of a bad value: where, the key and value as written, what is allowed, then
    the canonical key if the user wrote another spelling."""
    message = f"{where}: invalid value {value!r} for key '{key}'; allowed: {allowed}"
    if canonical and canonical != key:
        message += f" (torchslim's name for '{key}' is '{canonical}')"
    return message


def fail(where: str, key: str, value: Any, allowed: str) -> InvalidValue:
    return InvalidValue(where, key, value, allowed)


def str_list(key: str) -> Validator:
    def check(value: Any, where: str) -> list[str]:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise fail(where, key, value, "a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise fail(where, key, value, "a list of strings")
        return list(value)

    return check


def regex_list(key: str) -> Validator:
    as_list = str_list(key)

    def check(value: Any, where: str) -> list[str]:
        patterns = as_list(value, where)
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fail(where, key, value, f"valid regular expressions ({pattern!r}: {exc})") from None
        return patterns

    return check


def ratio(key: str, *, allow_one: bool = False) -> Validator:
    upper = "1]" if allow_one else "1)"

    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(where, key, value, f"a number in [0, {upper}")
        if not (0.0 <= value < 1.0 or (allow_one and value == 1.0)):
            raise fail(where, key, value, f"a number in [0, {upper}")
        return float(value)

    return check


def ratio_or_per_name(key: str) -> Validator:
    """v2's max_sparsity_per_layer: a ratio, or {op_name: ratio}."""
    single = ratio(key, allow_one=True)

    def check(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {str(name): single(v, f"{where}[{name!r}]") for name, v in value.items()}
        return single(value, where)

    return check


def non_negative(key: str) -> Validator:
    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise fail(where, key, value, "a non-negative number")
        return float(value)

    return check


def non_negative_int(key: str) -> Validator:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(where, key, value, "a non-negative integer")
        return value

    return check


def positive_int(key: str) -> Validator:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(where, key, value, "an int >= 1")
        return value

    return check


def boolean(key: str) -> Validator:
    def check(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise fail(where, key, value, "True or False")
        return value

    return check


def group_id(key: str) -> Validator:
    def check(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise fail(where, key, value, "an int or a string")
        return value

    return check


def one_of(key: str, choices: tuple[str, ...]) -> Validator:
    def check(value: Any, where: str) -> str:
        if value not in choices:
            raise fail(where, key, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    return check


PRUNING_GRANULARITIES = ("default", "fine", "out_channel", "in_channel", "per_channel")


def granularity(key: str, names: tuple[str, ...] = PRUNING_GRANULARITIES) -> Validator:
    """A named granularity, or a block size: a list of positive ints (-1 = whole dim)."""

    def check(value: Any, where: str) -> Any:
        if isinstance(value, str):
            if value not in names:
                raise fail(where, key, value, "one of " + ", ".join(map(repr, names)) + " or a list of block sizes")
            return value
        if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and (v > 0 or v == -1) for v in value
        ):
            return tuple(value)
        raise fail(where, key, value, "one of " + ", ".join(map(repr, names)) + " or a list of block sizes")

    return check


def non_empty_str_list(key: str) -> Validator:
    as_list = str_list(key)

    def check(value: Any, where: str) -> list[str]:
        if not as_list(value, where):
            raise fail(where, key, value, "a non-empty list of strings")
        return list(value)

    return check


def positive_int(key: str) -> Validator:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(where, key, value, "a positive integer")
        return value

    return check


_ALIGN_KEYS = ("module_name", "target_name", "dims")


def align_spec(key: str) -> Validator:
    """NNI 3.0's ``align``: {'module_name': str | None, 'target_name': str, 'dims': [int]}."""
    allowed = ("a dict {'module_name': name or None, 'target_name': tensor name, "
               "'dims': list of ints}")

    def check(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict) or set(value) - set(_ALIGN_KEYS):
            raise fail(where, key, value, allowed)
        module, target, dims = value.get("module_name"), value.get("target_name"), value.get("dims", [0])
        if module is not None and not isinstance(module, str):
            raise fail(where, key, value, allowed)
        if not isinstance(target, str) or not target:
            raise fail(where, key, value, allowed)
        if not isinstance(dims, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise fail(where, key, value, allowed)
        return {"module_name": module, "target_name": target, "dims": list(dims)}

    return check


def anything(key: str) -> Validator:
    return lambda value, where: value


@dataclass(frozen=True)
class Legacy:
    """A v2 key and how it maps to canonical keys."""

    canonical: str
    # extra canonical keys set when this legacy key is used, computed from the entry index
    implies: Callable[[int], dict[str, Any]] | None = None


@dataclass
class Schema:
    """Allowed keys for one kind of compressor."""

    kind: str
    settings: dict[str, Validator]
    # keys allowed inside target_settings[target]
    target_keys: dict[str, Validator]
    legacy: dict[str, Legacy] = field(default_factory=dict)
    # an entry that is not an exclusion must carry one of these (directly or per target)
    required_any: tuple[str, ...] = ()
    # mutually exclusive canonical keys
    exclusive: tuple[tuple[str, str], ...] = ()
    # translate v2 structures (e.g. quant_types) into canonical ones; runs after renaming
    translate: Callable[[dict[str, Any], str], dict[str, Any]] | None = None

    def extended(self, extra: dict[str, Validator]) -> "Schema":
        """A copy accepting algorithm-specific keys as well."""
        return Schema(
            kind=self.kind,
            settings={**self.settings, **extra},
            target_keys=self.target_keys,
            legacy=self.legacy,
            required_any=self.required_any,
            exclusive=self.exclusive,
            translate=self.translate,
        )


_PRUNING_TARGET_KEYS: dict[str, Validator] = {
    "sparse_ratio": ratio("sparse_ratio"),
    "max_sparse_ratio": ratio("max_sparse_ratio", allow_one=True),
    "min_sparse_ratio": ratio("min_sparse_ratio"),
    "sparse_threshold": non_negative("sparse_threshold"),
    "granularity": granularity("granularity"),
    "global_group_id": group_id("global_group_id"),
    "dependency_group_id": group_id("dependency_group_id"),
    "channel_groups": positive_int("channel_groups"),
    "channel_order": anything("channel_order"),  # set by auto_set_dependency_group_ids
    "internal_metric_block": positive_int("internal_metric_block"),
    "align": align_spec("align"),
    # masks are multiplied in (NNI's 'mul'); NNI's 'add' (-inf bias for attention) is not ours
    "apply_method": one_of("apply_method", ("mul",)),
}

PRUNING = Schema(
    kind="pruning",
    settings={
        **_PRUNING_TARGET_KEYS,
        "max_sparse_ratio": ratio_or_per_name("max_sparse_ratio"),
        "target_names": non_empty_str_list("target_names"),
        "target_settings": anything("target_settings"),  # checked per target by the parser
    },
    target_keys=_PRUNING_TARGET_KEYS,
    legacy={
        "sparsity": Legacy("sparse_ratio"),
        "sparsity_per_layer": Legacy("sparse_ratio"),
        # NNI v2's total sparsity is one global group per entry
        "total_sparsity": Legacy("sparse_ratio", implies=lambda index: {"global_group_id": f"total_sparsity#{index}"}),
        "max_sparsity_per_layer": Legacy("max_sparse_ratio"),
    },
    required_any=("sparse_ratio", "sparse_threshold", "align"),
    exclusive=(("sparse_ratio", "sparse_threshold"),),
)

_SCHEMAS: dict[str, Schema] = {"pruning": PRUNING}


def register_schema(schema: Schema) -> Schema:
    """Make a kind of compressor's schema known by its name (done once at import)."""
    _SCHEMAS[schema.kind] = schema
    return schema


def get_schema(kind: str | Schema) -> Schema:
    if isinstance(kind, Schema):
        return kind
    if kind not in _SCHEMAS and kind == "quantization":
        import torchslim.quantization.config  # noqa: F401  (registers the schema)
    try:
        return _SCHEMAS[kind]
    except KeyError:
        raise ConfigError(f"unknown config kind {kind!r}; known: {sorted(_SCHEMAS)}") from None
