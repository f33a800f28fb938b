"""What ``torchslim migrate`` translates: NNI modules, renamed names, config keys, and what it cannot.

One table, read by :mod:`torchslim.migration.rewrite`. Renamed classes and functions are not
repeated here: they are the families' adapter tables (``torchslim.<family>.nni.ALIASES``), so a
name the runtime accepts with a warning is exactly a name ``migrate`` rewrites.
"""
from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from typing import NamedTuple


class SamePaths(NamedTuple):
    """NNI module paths that map one to one below a torchslim package (``nni.nas.x`` → ``torchslim.nas.x``),
    when that package is part of this torchslim; ``missing`` says why not otherwise. A path torchslim
    lacks falls back to its nearest existing parent: NNI's framework submodules
    (``nni.nas.evaluator.pytorch``, ``nni.nas.profiler.pytorch.flops``) are their parent in torchslim,
    which is PyTorch-only."""

    package: str
    missing: str

# NNI module prefix -> torchslim modules to look the imported names up in (first hit wins).
# Longest prefix first; a prefix mapped to a str is a reason the module cannot be translated.
MODULES: list[tuple[str, list[str] | str | SamePaths]] = [
    ("nni.compression.tensorflow", "TensorFlow code: torchslim compresses PyTorch models only"),
    ("nni.algorithms.compression.tensorflow", "TensorFlow code: torchslim compresses PyTorch models only"),
    ("nni.compression.distillation", ["torchslim.distillation"]),
    ("nni.nas", SamePaths("torchslim.nas", "NAS (nni.nas) has no torchslim equivalent in this version")),
    ("nni.retiarii", "NAS (nni.retiarii) has no torchslim equivalent yet"),
    ("nni.compression.speedup", ["torchslim.speedup"]),
    ("nni.compression.pytorch.speedup", ["torchslim.speedup"]),
    ("nni.compression.utils", ["torchslim", "torchslim.pruning", "torchslim.quantization"]),
    ("nni.compression", ["torchslim.pruning", "torchslim.quantization", "torchslim.speedup", "torchslim"]),
    ("nni.algorithms.compression", ["torchslim.pruning", "torchslim.quantization", "torchslim.speedup", "torchslim"]),
    ("nni.experiment", ["torchslim.experiment", "torchslim"]),
    ("nni", ["torchslim"]),
]

# a star import from these gets both families (v0/v1's nni.compression.torch held both)
STAR_MODULES = ["torchslim.pruning", "torchslim.quantization"]

# config_list keys rewritten in dict literals that select modules (pruning dialect only)
KEY_RENAMES = {"sparsity": "sparse_ratio", "sparsity_per_layer": "sparse_ratio"}
SELECTOR_KEYS = ("op_types", "op_names", "op_name", "exclude_op_names", "op_names_re")
QUANT_KEYS = ("quant_types", "quant_bits", "quant_dtype", "target_names")

# NNI's training services that run trials elsewhere: torchslim runs trials locally (and on Ray)
REMOTE_SERVICES = ("remote", "pai", "openpai", "kubeflow", "frameworkcontroller", "aml", "adl", "dlc", "hybrid")

# top-level imports that mark TensorFlow code
TENSORFLOW_MODULES = ("tensorflow", "keras")


@lru_cache(maxsize=None)
def renamed() -> dict[str, str]:
    """Old NNI name -> modern name, from the families' adapter tables."""
    out: dict[str, str] = {}
    for module in ("torchslim.pruning.nni", "torchslim.quantization.nni", "torchslim.nni"):
        for old, (_, new) in importlib.import_module(module).ALIASES.items():
            out[old] = new
    return out


@lru_cache(maxsize=None)
def public_names(module: str) -> frozenset[str]:
    """The names ``from <module> import name`` provides (none for a module that does not exist)."""
    if not module_exists(module):
        return frozenset()
    loaded = importlib.import_module(module)
    names = getattr(loaded, "__all__", None)
    return frozenset(names if names is not None else (n for n in dir(loaded) if not n.startswith("_")))


def lookup(nni_module: str) -> tuple[str, list[str] | str] | None:
    """``(prefix, target)`` for ``nni_module`` (longest matching prefix), or None for a non-NNI module.

    ``target`` is the torchslim modules to look names up in, or a str: why it cannot be translated.
    A one-to-one row gives the same path below the torchslim package and its parents up to the
    package, those that exist, nearest first.
    """
    for prefix, target in MODULES:
        if nni_module == prefix or nni_module.startswith(prefix + "."):
            if isinstance(target, SamePaths):
                if importlib.util.find_spec(target.package) is None:
                    return prefix, target.missing
                return prefix, same_paths(target.package, nni_module[len(prefix):])
            return prefix, target
    return None


def same_paths(package: str, subpath: str) -> list[str]:
    """``package + subpath`` and its parents up to ``package`` that exist, nearest first."""
    parts = [part for part in subpath.split(".") if part]
    paths = [".".join([package, *parts[:n]]) for n in range(len(parts), -1, -1)]
    return [path for path in paths if path == package or module_exists(path)]


def home_of(name: str, candidates: list[str]) -> str | None:
    """The first torchslim module among ``candidates`` that exports ``name``."""
    return next((module for module in candidates if name in public_names(module)), None)


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


__all__ = ["KEY_RENAMES", "MODULES", "REMOTE_SERVICES", "SamePaths", "home_of", "lookup", "module_exists", "public_names",
           "renamed", "same_paths"]
