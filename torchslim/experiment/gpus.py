"""GPUs for trials, as NNI's local training service hands them out.

A trial asking for ``trialGpuNumber`` GPUs gets that many in ``CUDA_VISIBLE_DEVICES``,
chosen round-robin among the least loaded; a GPU takes at most ``maxTrialNumberPerGpu``
trials at once, and with ``useActiveGpu: false`` (NNI's default) a GPU another process
computes on is skipped until it is free. A request the machine cannot meet is refused when
the experiment is created, never turned into a "DONE" with zero trials.

Detection is injectable: ``TORCHSLIM_GPUS`` (``"0,1"``; ``"0*,1"`` marks GPU 0 busy with
another process; ``""`` none) overrides ``CUDA_VISIBLE_DEVICES`` and ``nvidia-smi``, so all
of this is testable on a machine without a GPU. Stdlib only.
"""
from __future__ import annotations

import os
import subprocess
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

from torchslim.errors import ConfigError

ENV_GPUS = "TORCHSLIM_GPUS"
REFRESH_S = 5.0  # how often busy GPUs are looked at again while trials wait for one


@dataclass(frozen=True)
class Gpu:
    index: str
    active: bool = False  # another process computes on it


Detector = Callable[[], list[Gpu]]


def detect_gpus() -> list[Gpu]:
    """The GPUs trials may use: ``TORCHSLIM_GPUS``, else ``CUDA_VISIBLE_DEVICES`` (all
    idle), else what ``nvidia-smi`` lists (busy = has compute processes)."""
    forced = os.environ.get(ENV_GPUS)
    if forced is not None:
        return [Gpu(g.strip().rstrip("*"), g.strip().endswith("*"))
                for g in forced.split(",") if g.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [Gpu(g.strip()) for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    rows = _smi(["--query-gpu=index,uuid", "--format=csv,noheader"])
    busy = {r[0] for r in _smi(["--query-compute-apps=gpu_uuid", "--format=csv,noheader"])}
    return [Gpu(r[0], r[1] in busy) for r in rows if len(r) >= 2]


def _smi(args: list[str]) -> list[list[str]]:
    try:
        out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


def check_gpu_request(gpu_number: int, concurrency: int, per_gpu: int = 1,
                      indices: Sequence[int | str] | None = None,
                      detector: Detector = detect_gpus) -> list[Gpu]:
    """The GPUs an experiment may use, or :class:`ConfigError` when the machine cannot run
    even one trial. Warns when ``concurrency`` exceeds what the GPUs allow at once."""
    if gpu_number <= 0:
        return []
    gpus = detector()
    if indices is not None:
        wanted = {str(i) for i in indices}
        unknown = sorted(wanted - {g.index for g in gpus})
        if unknown:
            raise ConfigError(f"trainingService.gpuIndices names GPU(s) {unknown} this machine "
                              f"does not have; it has: {[g.index for g in gpus] or 'none'}")
        gpus = [g for g in gpus if g.index in wanted]
    if len(gpus) < gpu_number:
        found = f"{len(gpus)} GPU(s) ({', '.join(g.index for g in gpus)})" if gpus else "no GPU"
        raise ConfigError(
            f"trialGpuNumber is {gpu_number} but this machine offers {found} to trials "
            f"(nvidia-smi / CUDA_VISIBLE_DEVICES{' / gpuIndices' if indices is not None else ''}); "
            f"set trialGpuNumber: 0 to run on the CPU")
    slots = len(gpus) // gpu_number * per_gpu
    if concurrency > slots:
        warnings.warn(f"trialConcurrency {concurrency} but {len(gpus)} GPU(s) x "
                      f"maxTrialNumberPerGpu {per_gpu} fit {slots} trial(s) of {gpu_number} "
                      f"GPU(s) at once; the others wait", stacklevel=2)
    return gpus


class GpuPool:
    """Hands out GPUs round-robin with a per-GPU limit; skips busy ones unless allowed."""

    def __init__(self, gpus: Sequence[Gpu], per_gpu: int = 1, use_active: bool = False,
                 detector: Detector = detect_gpus) -> None:
        self.order = [g.index for g in gpus]
        self.load = {g.index: 0 for g in gpus}
        self.active = {g.index for g in gpus if g.active}
        self.per_gpu = per_gpu
        self.use_active = use_active
        self.detector = detector
        self.cursor = 0
        self.refreshed = time.monotonic()

    def _usable(self) -> list[str]:
        n = len(self.order)
        rotated = [self.order[(self.cursor + i) % n] for i in range(n)]
        free = [g for g in rotated if self.load[g] < self.per_gpu
                and (self.use_active or g not in self.active or self.load[g] > 0)]
        return sorted(free, key=lambda g: self.load[g])  # stable: round-robin among equals

    def can_take(self, n: int) -> bool:
        if n <= 0:
            return True
        if len(self._usable()) < n and self.active and not self.use_active:
            self._refresh()
        return len(self._usable()) >= n

    def take(self, n: int) -> list[str]:
        chosen = self._usable()[:n] if n > 0 else []
        for g in chosen:
            self.load[g] += 1
        if chosen:
            self.cursor = (self.order.index(chosen[-1]) + 1) % len(self.order)
        return chosen

    def release(self, gpus: Sequence[str]) -> None:
        for g in gpus:
            self.load[g] = max(self.load[g] - 1, 0)

    def waiting_on_busy(self) -> bool:
        """Whether only GPUs busy with other processes keep a trial from starting."""
        return bool(self.active) and not self.use_active

    def _refresh(self) -> None:
        if time.monotonic() - self.refreshed < REFRESH_S:
            return
        self.refreshed = time.monotonic()
        now = {g.index: g.active for g in self.detector()}
        # a GPU our own trials use looks busy: only GPUs without our trials are re-judged
        self.active = {g for g in self.order if now.get(g, False) and self.load[g] == 0}
