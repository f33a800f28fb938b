"""config_list: one parser for NNI's v2 and 3.0 dialects, and module selection."""
from torchslim.config.parser import ConfigEntry, parse_config_list
from torchslim.config.schema import PRUNING, Schema, register_schema
from torchslim.config.selection import DEFAULT_PRUNING_TYPES, Selection, select_modules
from torchslim.errors import ConfigError


def resolve_config(model, config_list, kind="pruning", *, extra_keys=None, default_types=DEFAULT_PRUNING_TYPES,
                   default_targets=("weight",)) -> Selection:
    """Parse and validate ``config_list`` and resolve it against ``model``."""
    entries = parse_config_list(config_list, kind, extra_keys)
    return select_modules(model, entries, default_types=default_types, default_targets=default_targets)


__all__ = [
    "ConfigEntry", "ConfigError", "DEFAULT_PRUNING_TYPES", "PRUNING", "Schema", "Selection",
    "parse_config_list", "register_schema", "resolve_config", "select_modules",
]
