"""What ``torchslim migrate`` translates: NNI modules, renamed names, config keys, and what it cannot.

One table, read by :mod:`torchslim.migration.rewrite`. Renamed classes and functions are not
repeated here: they are the families' adapter tables (``torchslim.<family>.nni.ALIASES``), so a
name the runtime accepts with a warning is exactly a name ``migrate`` rewrites.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

# NNI module prefix -> torchslim modules to look the imported names up in (first hit wins).
# Longest prefix first; a prefix mapped to a str is a reason the module cannot be translated.
MODULES: list[tuple[str, list[str] | str]] = [
    ("nni.compression.tensorflow", "TensorFlow code: torchslim compresses PyTorch models only"),
    ("nni.algorithms.compression.tensorflow", "TensorFlow code: torchslim compresses PyTorch models only"),
    ("nni.compression.distillation", ["torchslim.distillation"]),
    ("nni.nas", "NAS (nni.nas) has no torchslim equivalent yet"),
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
    """The names ``from <module> import name`` provides."""
    return frozenset(getattr(importlib.import_module(module), "__all__", ()))


def lookup(nni_module: str) -> tuple[str, list[str] | str] | None:
    """The table row of ``nni_module`` (longest matching prefix), or None for a non-NNI module."""
    for prefix, target in MODULES:
        if nni_module == prefix or nni_module.startswith(prefix + "."):
            return prefix, target
    return None


def home_of(name: str, candidates: list[str]) -> str | None:
    """The first torchslim module among ``candidates`` that exports ``name``."""
    return next((module for module in candidates if name in public_names(module)), None)


__all__ = ["KEY_RENAMES", "MODULES", "REMOTE_SERVICES", "home_of", "lookup", "public_names", "renamed"]
