"""Parse a config_list (NNI v2 or 3.0 dialect, mixed freely per entry) into canonical entries."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from torchslim.config.schema import (
    SELECTOR_KEYS, InvalidValue, Schema, Validator, boolean, get_schema, regex_list, str_list,
)
from torchslim.errors import ConfigError

_SELECTOR_VALIDATORS: dict[str, Validator] = {
    "op_types": str_list("op_types"),
    "op_names": str_list("op_names"),
    "op_names_re": regex_list("op_names_re"),
    "exclude_op_names": str_list("exclude_op_names"),
    "exclude_op_types": str_list("exclude_op_types"),
    "exclude": boolean("exclude"),
}


@dataclass
class ConfigEntry:
    """One canonical config_list entry."""

    index: int
    op_types: list[str] | None = None
    op_names: list[str] | None = None
    op_names_re: list[str] | None = None
    exclude_op_names: list[str] = field(default_factory=list)
    exclude_op_types: list[str] = field(default_factory=list)
    exclude: bool = False
    target_names: list[str] | None = None
    # settings that apply to every target of the entry
    settings: dict[str, Any] = field(default_factory=dict)
    # per-target overrides
    target_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"config_list[{self.index}]"


def _unknown_key(where: str, key: str, value: Any, allowed: Iterable[str]) -> ConfigError:
    allowed = sorted(set(allowed))
    hint = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(
        f"{where}: unknown key '{key}' (value {value!r}).{suggestion} Allowed keys: {', '.join(allowed)}"
    )


def _rename_legacy(raw: Mapping[str, Any], schema: Schema, index: int, where: str,
                   origin: dict[str, str] | None = None) -> dict[str, Any]:
    """Translate v2 spellings to canonical ones, refusing an entry that gives both; ``origin``
    receives canonical key -> the key as the user wrote it."""
    out: dict[str, Any] = {}
    origin = {} if origin is None else origin
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {key!r}")
        legacy = schema.legacy.get(key)
        canonical = legacy.canonical if legacy else key
        if canonical in out:
            raise ConfigError(
                f"{where}: keys '{origin[canonical]}' and '{key}' both set '{canonical}' "
                f"(values {out[canonical]!r} and {value!r}); give only one"
            )
        out[canonical] = value
        origin[canonical] = key
        if legacy and legacy.implies:
            for implied_key, implied_value in legacy.implies(index).items():
                out.setdefault(implied_key, implied_value)
    return out


def parse_entry(raw: Any, index: int, schema: Schema) -> ConfigEntry:
    where = f"config_list[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: each entry must be a dict, got {type(raw).__name__} {raw!r}")
    origin: dict[str, str] = {}
    data = _rename_legacy(raw, schema, index, where, origin)
    if schema.translate is not None:
        data = schema.translate(data, where)
    allowed = set(_SELECTOR_VALIDATORS) | set(schema.settings) | set(schema.legacy)
    entry = ConfigEntry(index=index)
    for key, value in data.items():
        try:
            if key in _SELECTOR_VALIDATORS:
                setattr(entry, key, _SELECTOR_VALIDATORS[key](value, where))
            elif key == "target_names":
                entry.target_names = schema.settings[key](value, where)
            elif key == "target_settings":
                entry.target_settings = _parse_target_settings(value, schema, where)
            elif key in schema.settings:
                entry.settings[key] = schema.settings[key](value, where)
            else:
                raise _unknown_key(where, key, value, allowed)
        except InvalidValue as exc:
            raise _as_written(exc, origin) from None
    _check_entry(entry, schema)
    return entry


def _as_written(exc: InvalidValue, origin: Mapping[str, str]) -> InvalidValue:
    """Name the key as the user wrote it (``sparsity``, not ``sparse_ratio``)."""
    return exc.as_written(origin[exc.key]) if exc.key in origin else exc


def _parse_target_settings(value: Any, schema: Schema, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: invalid value {value!r} for key 'target_settings'; allowed: a dict of target name -> dict")
    out: dict[str, dict[str, Any]] = {}
    for target, settings in value.items():
        inner = f"{where}['target_settings'][{target!r}]"
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{inner}: must be a dict of settings, got {settings!r}")
        checked: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key, item in _rename_legacy(settings, schema, 0, inner, origin).items():
            if key not in schema.target_keys:
                raise _unknown_key(inner, key, item, schema.target_keys)
            try:
                checked[key] = schema.target_keys[key](item, inner)
            except InvalidValue as exc:
                raise _as_written(exc, origin) from None
        out[str(target)] = checked
    return out


def _check_entry(entry: ConfigEntry, schema: Schema) -> None:
    where = entry.where
    if entry.op_types is None and entry.op_names is None and entry.op_names_re is None:
        raise ConfigError(
            f"{where}: selects no module; give at least one of 'op_types', 'op_names', 'op_names_re'"
        )
    if entry.exclude:
        return
    for a, b in schema.exclusive:
        if a in entry.settings and b in entry.settings:
            raise ConfigError(f"{where}: keys '{a}' and '{b}' cannot be used together")
    if schema.required_any:
        present = set(entry.settings)
        for settings in entry.target_settings.values():
            present |= set(settings)
        if not present & set(schema.required_any):
            raise ConfigError(
                f"{where}: missing a required key; give one of "
                + ", ".join(f"'{k}'" for k in schema.required_any)
                + (" (or a legacy spelling: " + ", ".join(f"'{k}'" for k in schema.legacy) + ")" if schema.legacy else "")
            )


def parse_config_list(
    config_list: Any, kind: str | Schema = "pruning", extra_keys: Mapping[str, Validator] | None = None
) -> list[ConfigEntry]:
    """Validate ``config_list`` and return canonical entries (in order).

    ``extra_keys`` are algorithm-specific keys a compressor accepts beyond the schema's.
    """
    schema = get_schema(kind)
    if extra_keys:
        schema = schema.extended(dict(extra_keys))
    if isinstance(config_list, Mapping):
        config_list = [config_list]
    if not isinstance(config_list, (list, tuple)):
        raise ConfigError(f"config_list must be a list of dicts, got {type(config_list).__name__}")
    if not config_list:
        raise ConfigError("config_list is empty; give at least one entry")
    return [parse_entry(raw, i, schema) for i, raw in enumerate(config_list)]


__all__ = ["ConfigEntry", "parse_config_list", "parse_entry", "SELECTOR_KEYS"]
