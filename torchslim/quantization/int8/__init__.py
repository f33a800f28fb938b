"""Real int8 models from a calibration config: PyTorch x86 kernels or onnxruntime (QDQ / QOperator),
static (calibrated activation scales) or dynamic (``dynamic: True`` inputs: per-batch ranges)."""
from __future__ import annotations

import statistics
import time
import warnings
from typing import Any, Mapping

import torch
from torch import nn

from torchslim.quantization.int8.common import example_args, first_output, x86_engine

BACKENDS = ("auto", "x86", "onnxruntime")


def deploy(model: nn.Module, calibration_config: Mapping[str, Mapping[str, Any]] | None = None,
           example_input: Any = None, backend: str = "auto", **kwargs: Any) -> nn.Module:
    """A callable model running int8 kernels with the calibration config's scales.

    ``model`` is the fake-quantized model (or its float twin); ``calibration_config`` defaults
    to the one of the quantizer attached to ``model``; ``example_input`` is a representative
    batch (it also sets the ranges of tensors the config does not describe).

    ``backend``: 'x86' (PyTorch's fbgemm/x86 kernels via torch.fx), 'onnxruntime' (QDQ ONNX
    run by onnxruntime; ``onnx_path=`` keeps the file, ``threads=`` its thread count,
    ``int8_attention=False`` keeps activation x activation matmuls float, ``space_to_depth=False`` keeps a
    3-channel strided stem convolution as it is), or 'auto': builds each, checks each against
    ``model`` on ``example_input`` and keeps the fastest correct one there (median timings in
    ``result.auto_choice``); falls back to whichever builds.

    A calibration config whose layer inputs are ``dynamic`` (see :mod:`.dynamic`) deploys as dynamic
    int8 ('x86': torch dynamic Linear; 'onnxruntime': MatMulInteger); its static entries are ignored.
    """
    if backend not in BACKENDS:
        from torchslim.errors import ConfigError

        raise ConfigError(f"invalid value {backend!r} for 'backend'; allowed: {', '.join(map(repr, BACKENDS))}")
    if example_input is None:
        raise ValueError("deploy() needs example_input (one representative batch)")
    if calibration_config is None:
        calibration_config = calibration_of(model)
    from torchslim.quantization.int8.dynamic import dynamic_layers

    if dynamic_layers(calibration_config):
        return _deploy_dynamic(model, calibration_config, example_input, backend, **kwargs)
    if backend == "x86":
        from torchslim.quantization.int8.fx_x86 import build_x86

        return build_x86(model, calibration_config, example_input)
    if backend == "onnxruntime":
        from torchslim.quantization.int8.ort_static import build_ort_static

        return build_ort_static(model, calibration_config, example_input, **kwargs)
    return _auto(model, calibration_config, example_input, ("x86", "onnxruntime"), **kwargs)


def _deploy_dynamic(model: nn.Module, calibration: Mapping, example_input: Any, backend: str, **kwargs: Any) -> nn.Module:
    from torchslim.quantization.int8.dynamic import build_dynamic_ort, build_dynamic_x86

    if backend == "x86":
        return build_dynamic_x86(model, calibration)
    if backend == "onnxruntime":
        kwargs.pop("int8_attention", None)
        kwargs.pop("space_to_depth", None)
        return build_dynamic_ort(model, calibration, example_input, **kwargs)
    return _auto(model, calibration, example_input, ("x86", "onnxruntime"), **kwargs)


def _auto(model: nn.Module, calibration: Mapping, example_input: Any, candidates: tuple[str, ...],
          **kwargs: Any) -> nn.Module:
    built: dict[str, nn.Module] = {}
    errors: dict[str, str] = {}
    for name in candidates:
        if name == "x86" and x86_engine() is None:
            errors[name] = "torch has no x86/fbgemm quantized engine"
            continue
        try:
            built[name] = deploy(model, calibration, example_input, backend=name,
                                 **(kwargs if name.startswith("onnxruntime") else {}))
        except Exception as exc:  # noqa: BLE001 - any failure of one backend leaves the other
            errors[name] = f"{type(exc).__name__}: {exc}"
    if not built:
        raise RuntimeError("no int8 backend could be built: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    timings = _check_and_time(model, built, example_input) if len(built) > 1 else {}
    ok = [name for name in built if timings.get(name, {}).get("correct", True)]
    best = min(ok or list(built), key=lambda n: timings.get(n, {}).get("ms", 0.0))
    chosen = built[best]
    chosen.auto_choice = {"chosen": best, "timings": timings, "errors": errors}
    for name, errors_msg in errors.items():
        warnings.warn(f"int8 backend {name!r} unavailable: {errors_msg}", stacklevel=3)
    return chosen


def _check_and_time(model: nn.Module, built: dict[str, nn.Module], example_input: Any, rounds: int = 5) -> dict:
    """Relative error vs ``model`` and median latency over ``rounds`` interleaved rounds of each backend."""
    args = example_args(example_input)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = first_output(model(*args)).float()
    model.train(was_training)
    stats, samples = {}, {name: [] for name in built}
    for name, m in built.items():
        out = first_output(m(*args)).float()
        stats[name] = {"rel_err": float((out - ref).norm() / ref.norm().clamp_min(1e-12))}
        m(*args)  # warm-up
    for _ in range(rounds):  # round-robin, so that load changes on a shared machine hit every backend alike
        for name, m in built.items():
            t0 = time.perf_counter()
            m(*args)
            samples[name].append((time.perf_counter() - t0) * 1000)
    for name in built:
        stats[name]["ms"] = statistics.median(samples[name])
    best_err = min(s["rel_err"] for s in stats.values())
    for s in stats.values():  # a backend far off the others is not a candidate
        s["correct"] = s["rel_err"] <= 2 * best_err + 0.02
    return stats


def calibration_of(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The calibration config held by the fake quantizers attached to ``model``."""
    from torchslim.quantization.base import calibration_config

    config = calibration_config(model)
    if not config:
        raise ValueError("the model carries no quantizer: pass calibration_config")
    return config


__all__ = ["BACKENDS", "calibration_of", "deploy"]
