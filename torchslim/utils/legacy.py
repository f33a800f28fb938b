"""Machinery for NNI's legacy names and call forms (the families' ``nni`` modules hold the tables).

A core class keeps one typed constructor. Its metaclass :class:`NNICallForms` first hands
the call to the family's adapter (named by ``nni_adapter = "module:function"``, imported on
first use so that the core never imports its adapter at import time); the adapter returns
either the arguments for the typed constructor or a finished object (a v0 deferred pruner,
a v2 iterative pruner). Every translation warns once per call site with
:func:`deprecated`, naming the modern form.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any, Callable, Mapping


class Built:
    """What an adapter returns when the legacy call builds its own object."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside torchslim: the warning points at the user's line."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def deprecated(old: str, new: str) -> None:
    """One line: the NNI form the user wrote and the form to write instead (shown at the user's line)."""
    warnings.warn(f"{old} is an NNI legacy form; use {new}", DeprecationWarning, stacklevel=_user_stacklevel())


def resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def unwrap_result(obj: Any) -> Any:
    """v2 code passes on what ``model = pruner.compress()`` returned: the model of a ``(model, masks)`` result."""
    from torch import nn

    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], nn.Module) and not isinstance(obj, nn.Module):
        return obj[0]
    return obj


def first_arg_unwrapped(args: tuple, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """``args`` / ``kwargs`` as mutable copies, with the model (first argument) unwrapped."""
    args, kwargs = list(args), dict(kwargs)
    if args:
        args[0] = unwrap_result(args[0])
    if "model" in kwargs:
        kwargs["model"] = unwrap_result(kwargs["model"])
    return args, kwargs


class NNICallForms(type):
    """Metaclass: ``Cls(*args, **kwargs)`` goes through ``Cls.nni_adapter`` before ``__init__``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        path = getattr(cls, "nni_adapter", None)
        if path:
            translated = resolve(path)(cls, args, kwargs)
            if isinstance(translated, Built):
                return translated.value
            args, kwargs = translated
        return super().__call__(*args, **kwargs)


class NNIBoundary(metaclass=NNICallForms):
    """Base of the core classes with an NNI boundary: calls go through ``nni_adapter`` first, and
    renamed attributes (the adapter module's ``ATTRIBUTES``, e.g. ``bound_model``) still resolve."""

    nni_adapter: str = ""

    def __getattr__(self, name: str) -> Any:
        path = type(self).nni_adapter
        if path and not name.startswith("_"):
            table = resolve(path.partition(":")[0] + ":ATTRIBUTES")
            if name in table:
                deprecated(f"{type(self).__name__}.{name}", f".{table[name]}")
                return getattr(self, table[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def deprecated_aliases(aliases: Mapping[str, tuple[str, str]], namespace: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for renamed public names: ``old -> (module, new)``; warns, then returns."""

    def __getattr__(name: str) -> Any:
        if name not in aliases:
            raise AttributeError(f"module {namespace!r} has no attribute {name!r}")
        module, new = aliases[name]
        deprecated(name, f"{new} (from {module.rsplit('.', 1)[0]})")
        return getattr(importlib.import_module(module), new)

    return __getattr__


__all__ = ["Built", "NNIBoundary", "NNICallForms", "deprecated", "deprecated_aliases", "first_arg_unwrapped", "resolve",
           "unwrap_result"]
