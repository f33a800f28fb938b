"""The ``ray`` training service: each trial is a Ray task on a cluster given by address.

The task runs the trial with :class:`LocalService` on whichever node Ray picks and streams
its events back as they happen (a Ray streaming generator), so intermediate results, the
assessor and timeouts behave as they do locally. Trial logs are written on that node (the
same paths as locally: use a shared folder for a multi-node cluster), and torchslim must be
importable there (we put this checkout on the workers' PYTHONPATH).
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from torchslim.errors import require
from torchslim.experiment.services.base import (
    _PACKAGE_ROOT, WAKEUP, Service, TrialEvent, TrialSpec,
)
from torchslim.experiment.services.local import LocalService

_WAIT_SLICE_S = 0.2  # ray.wait cannot watch our signal fd: look at it this often


def run_trial_streaming(spec: TrialSpec) -> Iterator[list[TrialEvent]]:
    """Runs on a Ray worker: the trial's events, batch by batch, ending with its exit."""
    service = LocalService(spec.gpu_number)
    try:
        service.start(spec)
        while True:
            events = service.wait(None)
            if events:
                yield events
            if any(e.kind == "exit" for e in events):
                return
    finally:
        service.close()  # a cancelled task kills its trial's process group on the way out


class RayService(Service):
    """Runs trials as Ray tasks (``address``: 'HOST:PORT', 'auto', or None for a local Ray)."""

    def __init__(self, address: str | None = None) -> None:
        self.ray = require("ray", "ray", "The ray training service")
        self.owned = not self.ray.is_initialized()
        if self.owned:
            self.ray.init(
                address=address, log_to_driver=False, include_dashboard=False,
                configure_logging=False,
                runtime_env={"env_vars": {"PYTHONPATH": _PACKAGE_ROOT}},
            )
        self.task = self.ray.remote(num_returns="streaming", max_retries=0)(run_trial_streaming)
        self.streams: dict[Any, int] = {}
        self.ready: list[TrialEvent] = []
        self.wakeup_fd: int | None = None

    def set_wakeup_fd(self, fd: int) -> None:
        self.wakeup_fd = fd

    def start(self, spec: TrialSpec) -> int | None:
        stream = self.task.options(num_cpus=1, num_gpus=spec.gpu_number).remote(spec)
        self.streams[stream] = spec.sequence
        return None

    def wait(self, timeout: float | None) -> list[TrialEvent]:
        events, self.ready = self.ready, []
        if self.streams:
            wait_s = _WAIT_SLICE_S if timeout is None else min(timeout, _WAIT_SLICE_S)
            ready, _ = self.ray.wait(list(self.streams), num_returns=1,
                                     timeout=0 if events else wait_s)
            if ready and len(self.streams) > 1:  # collect whatever else is ready too
                ready, _ = self.ray.wait(list(self.streams), num_returns=len(self.streams),
                                         timeout=0)
            for stream in ready:
                events.extend(self._next(stream))
        if self.wakeup_fd is not None:
            try:
                if os.read(self.wakeup_fd, 4096):
                    events.append(TrialEvent(WAKEUP, "wakeup"))
            except BlockingIOError:
                pass
        return events

    def _next(self, stream: Any) -> list[TrialEvent]:
        seq = self.streams[stream]
        try:
            events = self.ray.get(next(stream))
        except StopIteration:
            events = [TrialEvent(seq, "exit", None, "the Ray task ended without an exit status")]
        except self.ray.exceptions.RayError as exc:
            reason = "cancelled" if "Cancel" in type(exc).__name__ or "Cancel" in str(exc)[:200] \
                else f"Ray task failed: {str(exc).splitlines()[0][:300]}"
            events = [TrialEvent(seq, "exit", None, reason)]
        if any(e.kind == "exit" for e in events):
            del self.streams[stream]
        return events

    def kill(self, sequence: int) -> None:
        for stream, seq in self.streams.items():
            if seq == sequence:
                self.ray.cancel(stream)  # KeyboardInterrupt in the task: it kills its trial

    def close(self) -> None:
        for stream in list(self.streams):
            self.ray.cancel(stream, force=True)
        self.streams.clear()
        if self.owned:
            self.ray.shutdown()
