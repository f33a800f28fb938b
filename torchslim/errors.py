"""Exceptions shared by every torchslim capability (kept import-light: no torch)."""


class TorchSlimError(Exception):
    """Base class of torchslim's own errors."""


class ConfigError(TorchSlimError, ValueError):
    """A config_list, search space or experiment config is invalid.

    The message names where (entry index / parameter path), the key, the value and what
    is allowed.
    """


class SpeedupError(TorchSlimError, RuntimeError):
    """ModelSpeedup could not produce a model equivalent to the masked one."""


class MissingDependencyError(TorchSlimError, ImportError):
    """An optional dependency (an extra) is needed for this feature."""


def require(module: str, extra: str, feature: str):
    """Import an optional dependency or raise a clear error naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{feature} needs the optional package '{module}'. "
            f"Install it with: pip install 'torchslim[{extra}]'"
        ) from exc
