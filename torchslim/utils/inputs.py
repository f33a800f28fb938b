"""Example inputs: the forms users pass (one tensor, a tuple, a shape) made uniform."""
from __future__ import annotations

from typing import Any, Sequence

import torch


def as_args(dummy_input: Any) -> tuple:
    """A positional-argument tuple from one input or a list/tuple of inputs."""
    return tuple(dummy_input) if isinstance(dummy_input, (list, tuple)) else (dummy_input,)


def example_input(dummy_input: Any, input_shape: Sequence[int] | None, device: Any = None) -> Any:
    """``dummy_input`` if given, else a random tensor of ``input_shape`` (for ONNX export)."""
    if dummy_input is None:
        if input_shape is None:
            raise ValueError("export_model(onnx_path=...) needs input_shape or dummy_input")
        dummy_input = torch.randn(*input_shape)
    return dummy_input.to(device) if device is not None else dummy_input
