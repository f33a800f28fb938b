"""Model statistics: parameters, non-zero parameters, MACs, CPU latency, size on disk."""
from __future__ import annotations

import io
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from torchslim.utils.inputs import as_args


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, dummy_input: Any) -> int:
    """Multiply-accumulates of one forward pass (aten-level FLOP count / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(*as_args(dummy_input))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def measure_latency(
    fn: Callable[[], Any] | nn.Module,
    dummy_input: Any = None,
    *,
    threads: int | None = 2,
    warmup: int = 5,
    repeats: int = 30,
    min_time: float = 0.0,
) -> float:
    """Wall time of one call in milliseconds (warm-up excluded, threads pinned).

    Returns the median of the fastest quarter of the timed calls: stable when other
    processes share the CPU, and still a typical (not a lucky single) call.
    """
    if isinstance(fn, nn.Module):
        model, args = fn.eval(), as_args(dummy_input)

        def fn() -> Any:  # noqa: F811 - wraps the module call
            return model(*args)

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            times = []
            start = time.perf_counter()
            while len(times) < repeats or time.perf_counter() - start < min_time:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    fastest = sorted(times)[: max(1, len(times) // 4)]
    return statistics.median(fastest) * 1000.0


def state_dict_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())`` in bytes."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
