"""ONNX export that works across torch versions (fast TorchScript exporter first)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from torchslim.errors import require


def export_onnx(
    model: nn.Module,
    dummy_input: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
    *,
    opset_version: int | None = None,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` (in eval mode) to ``path``; the batch dim is dynamic by default.

    Uses torch's TorchScript-based exporter when present (about 20x faster to run than the
    torch.export one here), else the dynamo exporter.
    """
    require("onnx", "onnx", "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(dummy_input) if isinstance(dummy_input, (list, tuple)) else (dummy_input,)
    input_names = [f"input{i}" if i else "input" for i in range(len(args))]
    dynamic_axes = {name: {0: "batch"} for name in input_names + ["output"]} if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model, args, str(path), dynamo=False, input_names=input_names, output_names=["output"],
                    dynamic_axes=dynamic_axes, opset_version=opset_version or 17,
                )
            except TypeError:  # a torch without the `dynamo` switch or the legacy exporter
                torch.onnx.export(model, args, str(path), input_names=input_names, output_names=["output"],
                                  opset_version=opset_version)
    finally:
        model.train(was_training)
    return path
