"""The demo's quantization stage: PTQ and QAT on the (pruned) model, then real int8 models."""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from torchslim.quantization.int8 import deploy
from torchslim.quantization.quantizers import PtqQuantizer, QATQuantizer
from torchslim.utils.metrics import count_macs, count_nonzero_params, count_params
from torchslim.utils.training import evaluate_accuracy, train_epochs

# int8 activations (affine) and per-channel symmetric int8 weights: what int8 CPU kernels run fastest
INT8_CONFIG = [
    {"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"], "quant_dtype": "int8", "quant_scheme": "affine"},
    {"op_types": ["Conv2d", "Linear"], "target_names": ["weight"], "quant_scheme": "symmetric", "granularity": "per_channel"},
]


def demo_rows(model: nn.Module, train: Dataset, test: Dataset, example: torch.Tensor, *, out_dir: str | Path | None = None,
              progress: bool = False, qat_epochs: int = 1, lr: float = 1e-4, seed: int = 0) -> list[Any]:
    """Rows for the demo table: PTQ → int8 and QAT (``qat_epochs``) → int8, both deployed on the
    faster int8 backend (``deploy(backend='auto')``) and measured (accuracy on ``test``, size on
    disk, latency)."""
    from torchslim.report import measure_row

    out = Path(out_dir) if out_dir is not None else None
    stats = {"params": count_params(model), "nonzero": count_nonzero_params(model), "macs": count_macs(model, example)}
    calib = DataLoader(train, batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(seed))
    rows = []

    ptq_model = copy.deepcopy(model).eval()
    t0 = time.perf_counter()
    _, calibration = PtqQuantizer(ptq_model, INT8_CONFIG).compress(calib, max_steps=8)
    int8 = deploy(ptq_model, calibration, next(iter(calib))[0])
    rows.append(_row(measure_row, f"PTQ → int8 ({int8.backend})", int8, ptq_model, example, test, stats, out, "ptq",
                     f"calibrated on 8 batches in {time.perf_counter() - t0:.1f} s"))

    qat_model = copy.deepcopy(model)
    t0 = time.perf_counter()
    quantizer = QATQuantizer(qat_model, INT8_CONFIG)
    quantizer.track_forward(next(iter(calib))[0])
    quantizer.compress()
    train_epochs(qat_model, train, qat_epochs, lr=lr, seed=seed, progress=progress, desc="QAT")
    qat_model.eval()
    calibration = quantizer.get_calibration_config()
    int8 = deploy(qat_model, calibration, next(iter(calib))[0])
    rows.append(_row(measure_row, f"QAT ({qat_epochs} epoch) → int8 ({int8.backend})", int8, qat_model, example, test,
                     stats, out, "qat", f"fake-quant {evaluate_accuracy(qat_model, test):.2f}%, "
                                        f"QAT took {time.perf_counter() - t0:.1f} s"))
    return rows


def _row(measure_row: Any, stage: str, int8: nn.Module, fake: nn.Module, example: torch.Tensor, test: Dataset,
         stats: dict[str, int], out: Path | None, tag: str, note: str) -> Any:
    size = _saved_size(int8, out, tag)
    return measure_row(stage, int8, example, evaluate_accuracy(int8, test), note=note, size_bytes=size,
                       macs=stats["macs"], params=stats["params"], nonzero=stats["nonzero"])


def _saved_size(int8: nn.Module, out: Path | None, tag: str) -> int:
    """Bytes on disk of the int8 model: its .onnx file, or its ``torch.save(state_dict)`` (kept in ``out``)."""
    import io
    import shutil

    if getattr(int8, "path", None) is not None:  # onnxruntime: the model is the file
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(int8.path, out / f"model_{tag}_int8.onnx")
        return os.path.getsize(int8.path)
    if out is None:
        buffer = io.BytesIO()
        torch.save(int8.model.state_dict(), buffer)
        return buffer.tell()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"model_{tag}_int8.pt"
    torch.save(int8.model.state_dict(), path)
    return os.path.getsize(path)


__all__ = ["INT8_CONFIG", "demo_rows"]
