"""The ``local`` training service: trial commands as subprocesses, functions as threads.

Nothing here polls. Each trial reports through a pipe whose read end sits in a selector
next to the process's pidfd (readable the moment the process exits), so the runner wakes
exactly when a result or an exit happens.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from torchslim.experiment.procgroup import Reaper, group_alive, signal_group
from torchslim.experiment.services.base import (
    WAKEUP, LineDecoder, Service, TrialEvent, TrialSpec, call_trial_function,
)

KILL_GRACE_S = 3.0  # SIGTERM first; SIGKILL the process group if it is still there after this


@dataclass
class _Running:
    spec: TrialSpec
    decoder: LineDecoder
    read_fd: int | None
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    gpus: list[str] = field(default_factory=list)
    kill_deadline: float | None = None


def _visible_gpus() -> list[str]:
    """GPU indices this process may use (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class LocalService(Service):
    """Runs trials on this machine."""

    def __init__(self, gpu_number: int = 0) -> None:
        self.selector = selectors.DefaultSelector()
        self.running: dict[int, _Running] = {}
        self.ready: list[TrialEvent] = []  # events produced outside wait() (abandoned threads)
        # groups whose leader (the trial's shell) exited while members live on
        self.reaper = Reaper()
        # each concurrent trial gets its own GPUs; only looked up when trials want some
        self.free_gpus = _visible_gpus() if gpu_number > 0 else []

    def can_start(self, gpu_number: int) -> bool:
        return len(self.free_gpus) >= gpu_number

    def set_wakeup_fd(self, fd: int) -> None:
        self.selector.register(fd, selectors.EVENT_READ, ("wakeup", None))

    def start(self, spec: TrialSpec) -> int | None:
        spec.log_dir.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        entry = _Running(spec, LineDecoder(spec.sequence), read_fd)
        if spec.gpu_number:
            entry.gpus, self.free_gpus = (self.free_gpus[: spec.gpu_number],
                                          self.free_gpus[spec.gpu_number:])
        try:
            if spec.function is not None:
                self._start_thread(entry, write_fd)
            else:
                self._start_process(entry, write_fd)
        except BaseException:
            os.close(read_fd)
            self.free_gpus.extend(entry.gpus)
            raise
        self.running[spec.sequence] = entry
        self.selector.register(read_fd, selectors.EVENT_READ, ("metrics", spec.sequence))
        if entry.pidfd is not None:
            self.selector.register(entry.pidfd, selectors.EVENT_READ, ("exit", spec.sequence))
        return entry.proc.pid if entry.proc else None

    def _start_process(self, entry: _Running, write_fd: int) -> None:
        spec = entry.spec
        try:
            with open(spec.stdout_path, "wb") as out, open(spec.stderr_path, "wb") as err:
                entry.proc = subprocess.Popen(
                    spec.command, shell=True, cwd=spec.cwd, stdout=out, stderr=err,
                    stdin=subprocess.DEVNULL, pass_fds=(write_fd,), start_new_session=True,
                    env=spec.environment(write_fd, entry.gpus if spec.gpu_number else None),
                )
        finally:
            os.close(write_fd)  # the child holds it now; EOF comes when the trial is done
        try:
            entry.pidfd = os.pidfd_open(entry.proc.pid)
        except (AttributeError, OSError):
            entry.pidfd = None  # old kernel: metrics-pipe EOF marks the end instead

    def _start_thread(self, entry: _Running, write_fd: int) -> None:
        spec = entry.spec

        def sink(message: dict[str, Any]) -> None:
            os.write(write_fd, (json.dumps(message) + "\n").encode())

        def target() -> None:
            try:
                code, error = call_trial_function(spec.function, spec.context(sink),
                                                   spec.stderr_path)
                sink({"type": "exit", "code": code, "error": error})
            except OSError:
                pass  # the runner abandoned this trial and closed the pipe
            finally:
                os.close(write_fd)

        threading.Thread(target=target, name=f"trial-{spec.trial_id}", daemon=True).start()

    def wait(self, timeout: float | None) -> list[TrialEvent]:
        events, self.ready = self.ready, []
        deadlines = [e.kill_deadline for e in self.running.values() if e.kill_deadline]
        if self.reaper.next_deadline() is not None:
            deadlines.append(self.reaper.next_deadline())
        if deadlines:
            until = max(min(deadlines) - time.monotonic(), 0.0)
            timeout = until if timeout is None else min(timeout, until)
        if events:
            timeout = 0
        for key, _ in self.selector.select(timeout):
            kind, seq = key.data
            if kind == "wakeup":
                _drain(key.fd)
                events.append(TrialEvent(WAKEUP, "wakeup"))
            elif seq in self.running:
                events.extend(self._on_ready(kind, self.running[seq]))
        self._escalate_kills()
        self.reaper.tick()
        return events

    def _on_ready(self, kind: str, entry: _Running) -> list[TrialEvent]:
        if kind == "metrics":
            data = _read(entry.read_fd)
            events = entry.decoder.feed(data or b"")
            if not data:  # EOF: every writer is gone
                self._close_fd(entry, "read_fd")
                if entry.pidfd is None:
                    events.append(self._finish(entry))
            return events
        # the process exited: whatever is still in the pipe was written before that
        events = []
        if entry.read_fd is not None:
            os.set_blocking(entry.read_fd, False)
            events = entry.decoder.feed(_read(entry.read_fd, drain=True))
        events.append(self._finish(entry))
        return events

    def _finish(self, entry: _Running) -> TrialEvent:
        spec = entry.spec
        del self.running[spec.sequence]
        self.free_gpus.extend(entry.gpus)
        self._close_fd(entry, "read_fd")
        self._close_fd(entry, "pidfd")
        if entry.proc is None:  # function trial: its own exit message says how it went
            return entry.decoder.exit_event or TrialEvent(spec.sequence, "exit", None,
                                                          "function trial ended without status")
        code = entry.proc.wait()
        pgid = entry.proc.pid
        if group_alive(pgid):
            # the shell is gone but something it started is not: that is still this trial,
            # and it must not outlive it (SIGTERM now, SIGKILL when the grace is up)
            self.reaper.terminate(pgid, KILL_GRACE_S, entry.kill_deadline)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return TrialEvent(spec.sequence, "exit", code, f"killed by signal {name}")
        error = None if code == 0 else f"exit code {code} (see {spec.stderr_path})"
        return TrialEvent(spec.sequence, "exit", code, error)

    def _close_fd(self, entry: _Running, attr: str) -> None:
        fd = getattr(entry, attr)
        if fd is not None:
            self.selector.unregister(fd)
            os.close(fd)
            setattr(entry, attr, None)

    def kill(self, sequence: int) -> None:
        entry = self.running.get(sequence)
        if entry is None:
            return
        if entry.proc is None:
            # a thread cannot be killed: stop listening; it finishes on its own in background
            self.ready.append(TrialEvent(sequence, "exit", None, "abandoned (function trial)"))
            self.free_gpus.extend(entry.gpus)
            self._close_fd(entry, "read_fd")
            del self.running[sequence]
            return
        signal_group(entry.proc.pid, signal.SIGTERM)
        if entry.kill_deadline is None:
            entry.kill_deadline = time.monotonic() + KILL_GRACE_S

    def _escalate_kills(self) -> None:
        now = time.monotonic()
        for entry in self.running.values():
            if entry.kill_deadline is not None and now >= entry.kill_deadline and entry.proc:
                signal_group(entry.proc.pid, signal.SIGKILL)
                entry.kill_deadline = None

    def close(self) -> None:
        for seq in list(self.running):
            entry = self.running.pop(seq)
            if entry.proc is not None:
                signal_group(entry.proc.pid, signal.SIGKILL)
                entry.proc.wait()
            self._close_fd(entry, "read_fd")
            self._close_fd(entry, "pidfd")
        self.reaper.finish()
        self.selector.close()


def _read(fd: int | None, drain: bool = False) -> bytes:
    if fd is None:
        return b""
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        chunks.append(data)
        if not data or not drain:
            break
    return b"".join(chunks)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
