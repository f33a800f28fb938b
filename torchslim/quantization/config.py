"""The quantization config_list: both dialects land in one canonical form, then validated.

Canonical (NNI 3.0) keys per entry or per target: ``quant_dtype`` ('int8', 'uint8', 'int4',
...), ``quant_scheme`` ('affine' / 'symmetric'), ``granularity`` ('default' = per tensor,
'per_channel', 'out_channel', 'in_channel', or block sizes), ``quant_start_step``, and ``dynamic``
(activations only: the range is taken from each batch at run time, nothing is calibrated).

NNI v2 keys are translated per entry by :func:`translate_v2`: ``quant_types`` → ``target_names``,
``quant_bits`` (int or per-type dict) + ``quant_dtype`` 'int'/'uint' → per-target
``quant_dtype``, ``quant_scheme`` 'per_channel_symmetric' → scheme + granularity.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torchslim.config.schema import Schema, Validator, fail, granularity, non_negative_int, one_of, register_schema
from torchslim.errors import ConfigError

# Module types quantized when an entry says op_types=['default'].
DEFAULT_QUANT_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Linear")
QUANT_GRANULARITIES = ("default", "per_tensor", "per_channel", "out_channel", "in_channel")
SCHEMES = ("affine", "symmetric")
V2_SCHEMES = ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric")
V2_TYPES = {"weight": "weight", "input": "_input_", "output": "_output_"}
_DTYPE = re.compile(r"^(u?)int(\d+)$")


@dataclass(frozen=True)
class QuantDtype:
    """An integer grid: ``int8`` is signed 8-bit [-128, 127], ``uint4`` is [0, 15]."""

    bits: int
    signed: bool

    @property
    def name(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1


def parse_dtype(value: Any, where: str = "quant_dtype") -> QuantDtype:
    match = _DTYPE.match(value) if isinstance(value, str) else None
    bits = int(match.group(2)) if match else 0
    if not match or not 1 <= bits <= 16:
        raise fail(where, "quant_dtype", value, "'int<bits>' or 'uint<bits>' with 1 <= bits <= 16, e.g. 'int8', 'uint8', 'int4'")
    return QuantDtype(bits, match.group(1) == "")


def _dtype(key: str) -> Validator:
    def check(value: Any, where: str) -> str:
        return parse_dtype(value, where).name

    return check


def _flag(key: str) -> Validator:
    def check(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise fail(where, key, value, "true or false")
        return value

    return check


def _start_step(key: str) -> Validator:
    return non_negative_int(key)


_TARGET_KEYS: dict[str, Validator] = {
    "quant_dtype": _dtype("quant_dtype"),
    "quant_scheme": one_of("quant_scheme", SCHEMES),
    "granularity": granularity("granularity", QUANT_GRANULARITIES),
    "quant_start_step": _start_step("quant_start_step"),
    "dynamic": _flag("dynamic"),
}


def _bits(value: Any, where: str, key: str = "quant_bits") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
        raise fail(where, key, value, "an integer number of bits in [1, 16] (or a dict of quant type -> bits)")
    return value


def _v2_types(value: Any, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise fail(where, "quant_types", value, "a non-empty list of 'weight', 'input', 'output'")
    for item in value:
        if item not in V2_TYPES:
            raise fail(where, "quant_types", value, "a non-empty list of 'weight', 'input', 'output'")
    return list(value)


def _per_type(value: Any, types: list[str], where: str, key: str) -> dict[str, Any]:
    """A v2 value that is either shared by all quant types or a {quant_type: value} dict."""
    if not isinstance(value, dict):
        return {t: value for t in types}
    for t in value:
        if t not in types:
            raise fail(where, key, value, f"keys among the entry's quant_types {types}")
    return dict(value)


def translate_v2(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Rewrite an entry's v2 keys into canonical ones (no-op for 3.0 entries)."""
    v2_keys = {"quant_types", "quant_bits"}
    scheme = data.get("quant_scheme")
    dtype = data.get("quant_dtype")
    is_v2 = bool(v2_keys & set(data)) or scheme in V2_SCHEMES or dtype in ("int", "uint") or isinstance(dtype, dict)
    if not is_v2:
        return data
    out = {k: v for k, v in data.items() if k not in ("quant_types", "quant_bits", "quant_dtype", "quant_scheme")}
    if "target_names" in data and "quant_types" in data:
        raise ConfigError(f"{where}: keys 'quant_types' and 'target_names' both choose targets; give only one")
    types = _v2_types(data["quant_types"], where) if "quant_types" in data else [
        k for k, v in V2_TYPES.items() if v in (data.get("target_names") or ["weight"])
    ]
    if "quant_types" in data:
        out["target_names"] = [V2_TYPES[t] for t in types]
    bits = _per_type(data.get("quant_bits", 8), types, where, "quant_bits")
    kinds = _per_type(dtype if dtype is not None else "int", types, where, "quant_dtype")
    schemes = _per_type(scheme, types, where, "quant_scheme") if scheme is not None else {}
    settings: dict[str, dict[str, Any]] = {}
    for t in types:
        kind = kinds.get(t, "int")
        if kind not in ("int", "uint"):
            if isinstance(kind, str) and _DTYPE.match(kind) and t not in bits:
                per = {"quant_dtype": kind}
            else:
                raise fail(where, "quant_dtype", dtype, "'int' or 'uint' (v2, with quant_bits) or e.g. 'int8'")
        else:
            n = _bits(bits.get(t, 8), where)
            per = {"quant_dtype": f"{'u' if kind == 'uint' else ''}int{n}"}
        v2_scheme = schemes.get(t)
        if v2_scheme is None:  # the quantizer's default scheme applies
            pass
        elif v2_scheme in SCHEMES:
            per["quant_scheme"] = v2_scheme
        elif v2_scheme in V2_SCHEMES:
            per["quant_scheme"] = v2_scheme.rsplit("_", 1)[1]
            if v2_scheme.startswith("per_channel") and t == "weight":  # v2: activations stay per tensor
                per["granularity"] = "per_channel"
        else:
            raise fail(where, "quant_scheme", scheme, "one of " + ", ".join(map(repr, SCHEMES + V2_SCHEMES)))
        settings[V2_TYPES[t]] = per
    merged = dict(data.get("target_settings") or {})
    for target, per in settings.items():
        merged[target] = {**per, **merged.get(target, {})}
    out["target_settings"] = merged
    return out


QUANTIZATION = register_schema(
    Schema(
        kind="quantization",
        settings={
            **_TARGET_KEYS,
            "target_names": lambda value, where: _target_names(value, where),
            "target_settings": lambda value, where: value,  # checked per target by the parser
        },
        target_keys=_TARGET_KEYS,
        translate=translate_v2,
    )
)


def _target_names(value: Any, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise fail(where, "target_names", value, "a non-empty list such as ['_input_', 'weight', '_output_']")
    if not all(isinstance(v, str) for v in value):
        raise fail(where, "target_names", value, "a list of strings")
    return list(value)


@dataclass(frozen=True)
class TargetSpec:
    """Resolved settings of one quantized tensor (module target)."""

    dtype: QuantDtype
    scheme: str = "affine"
    granularity: Any = "default"
    quant_start_step: int = 0
    dynamic: bool = False  # activation range taken per batch at run time (dynamic quantization)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], default_dtype: str = "int8", default_scheme: str = "affine",
                      quant_start_step: int = 0) -> "TargetSpec":
        return cls(
            dtype=parse_dtype(settings.get("quant_dtype", default_dtype)),
            scheme=settings.get("quant_scheme", default_scheme),
            granularity=settings.get("granularity", "default"),
            quant_start_step=settings.get("quant_start_step", quant_start_step),
            dynamic=settings.get("dynamic", False),
        )

    @property
    def per_tensor(self) -> bool:
        return self.granularity in ("default", "per_tensor")


__all__ = ["DEFAULT_QUANT_TYPES", "QUANTIZATION", "QuantDtype", "TargetSpec", "parse_dtype", "translate_v2"]
