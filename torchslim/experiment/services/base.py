"""What a training service is, and the pieces every service shares.

A service starts trials and turns what they do into :class:`TrialEvent` s: results as they
are reported, then one ``exit``. The runner owns all decisions (budget, early stop,
timeouts) and the database; services only run things.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torchslim.experiment import trial as trial_api
from torchslim.experiment.messages import MAX_LINE_BYTES, MessageError, parse_message

# the folder holding the torchslim package: trials import the same torchslim as the runner
_PACKAGE_ROOT = str(Path(trial_api.__file__).resolve().parents[2])


@dataclass
class TrialSpec:
    """One trial to run."""

    sequence: int
    trial_id: str
    experiment_id: str
    parameters: dict[str, Any]
    log_dir: Path
    cwd: str
    command: str | None = None
    function: Callable[..., Any] | None = None
    gpu_number: int = 0

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / "stdout"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "stderr"

    def context(self, sink: Callable[[dict[str, Any]], None]) -> trial_api.TrialContext:
        return trial_api.TrialContext(self.experiment_id, self.trial_id, self.sequence,
                                      self.parameters, sink)

    def environment(self, metrics_fd: int | None, gpus: list[str] | None = None) -> dict[str, str]:
        """The trial process's environment: ours plus the trial API's variables."""
        env = dict(os.environ)
        # `python` and `import torchslim` in a trial command mean what they mean for us
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env[trial_api.ENV_EXPERIMENT_ID] = self.experiment_id
        env[trial_api.ENV_TRIAL_ID] = self.trial_id
        env[trial_api.ENV_SEQUENCE] = str(self.sequence)
        env[trial_api.ENV_PARAMETERS] = json.dumps(self.parameters)
        if metrics_fd is not None:
            env[trial_api.ENV_METRICS_FD] = str(metrics_fd)
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return env


@dataclass
class TrialEvent:
    """Something a trial did: ``intermediate`` / ``final`` (value = metric), ``exit``
    (value = exit code, None when unknown; error = why it failed) or ``invalid`` (it sent
    a malformed message; error = why)."""

    sequence: int
    kind: str
    value: Any = None
    error: str | None = None


WAKEUP = -1  # sequence of the event telling the runner a signal arrived


@dataclass
class LineDecoder:
    """Turns the bytes of a trial's metrics pipe into events, one JSON line each."""

    sequence: int
    buffer: bytes = b""
    exit_event: TrialEvent | None = None  # a function trial's own exit message

    def feed(self, data: bytes) -> list[TrialEvent]:
        """Events of the complete lines in ``data``; a bad line becomes an ``invalid`` event
        (the runner fails the trial with its reason), never an exception."""
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        out = []
        if len(self.buffer) > MAX_LINE_BYTES:
            lines.append(self.buffer)  # refused by parse_message for its length
            self.buffer = b""
        for line in lines:
            if not line.strip():
                continue
            try:
                kind, value, error = parse_message(line)
            except MessageError as exc:
                out.append(TrialEvent(self.sequence, "invalid", None,
                                      f"invalid message from the trial: {exc}"))
                continue
            if kind == "exit":
                self.exit_event = TrialEvent(self.sequence, "exit", value, error)
            else:
                out.append(TrialEvent(self.sequence, kind, value))
        return out


def call_trial_function(fn: Callable[..., Any], ctx: trial_api.TrialContext,
                        stderr_path: Path | None) -> tuple[int, str | None]:
    """Run a function trial in ``ctx``; returns (exit code, error).

    The function gets the parameters if it takes an argument; a number or dict it returns
    counts as the final result (when it reported none).
    """
    finals: list[Any] = []
    sink = ctx.sink

    def tracking_sink(message: dict[str, Any]) -> None:
        if message["type"] == "final":
            finals.append(message["value"])
        if sink is not None:
            sink(message)

    ctx.sink = tracking_sink
    try:
        takes_params = _takes_argument(fn)
        result = trial_api.run_in_context(ctx, fn, *([ctx.parameters] if takes_params else []))
        if result is not None and not finals:
            trial_api.run_in_context(ctx, trial_api.report_final_result, result)
        return 0, None
    except BaseException as exc:  # the trial's failure must not take the experiment down
        if stderr_path is not None:
            stderr_path.write_text(traceback.format_exc())
        return 1, f"{type(exc).__name__}: {exc}"


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


class Service(ABC):
    """A place trials run."""

    def can_start(self, gpu_number: int) -> bool:
        """Whether resources allow starting a trial wanting ``gpu_number`` GPUs now."""
        return True

    @abstractmethod
    def start(self, spec: TrialSpec) -> int | None:
        """Start a trial; returns its process id when there is one."""

    @abstractmethod
    def wait(self, timeout: float | None) -> list[TrialEvent]:
        """Block until something happens (or ``timeout`` seconds); return the events."""

    @abstractmethod
    def kill(self, sequence: int) -> None:
        """Stop a running trial; its ``exit`` event follows."""

    def set_wakeup_fd(self, fd: int) -> None:
        """A fd that becomes readable when the runner must look up (signals)."""

    def close(self) -> None:
        """Release resources (running trials must have been killed and reaped)."""
