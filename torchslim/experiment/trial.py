"""The API trial code calls: get parameters, report results. Stdlib only, on purpose.

A trial started by an experiment finds its parameters in the environment
(``TORCHSLIM_TRIAL_PARAMETERS``, JSON) and reports by writing one JSON line per result to
the inherited pipe ``TORCHSLIM_METRICS_FD``: no database, no locks, nothing heavy to import,
and the runner learns about every result the moment it is written. A Python-function trial
runs with a :class:`TrialContext` set in a context variable instead.

Run by hand (no experiment around it), the functions still work: parameters default to
``{}`` and results are printed.
"""
from __future__ import annotations

import contextvars
import json
import math
import os
import sys
import time
from typing import Any, Callable

__all__ = [
    "get_next_parameter", "get_parameters", "get_current_parameter", "report_intermediate_result",
    "report_final_result", "get_trial_id", "get_experiment_id", "get_sequence_id", "TrialContext",
    "save_checkpoint", "load_checkpoint", "get_trial_budget",
]

ENV_EXPERIMENT_ID = "TORCHSLIM_EXPERIMENT_ID"
ENV_TRIAL_ID = "TORCHSLIM_TRIAL_ID"
ENV_SEQUENCE = "TORCHSLIM_TRIAL_SEQUENCE"
ENV_PARAMETERS = "TORCHSLIM_TRIAL_PARAMETERS"
ENV_METRICS_FD = "TORCHSLIM_METRICS_FD"

STANDALONE_ID = "STANDALONE"


class TrialContext:
    """Where a trial gets its parameters and sends its results.

    ``sink`` receives each message dict; None means "print it" (a standalone run). A plain
    class, not a dataclass: ``dataclasses`` pulls in ``inspect``, a cost every trial would pay.
    """

    __slots__ = ("experiment_id", "trial_id", "sequence", "parameters", "sink")

    def __init__(self, experiment_id: str = STANDALONE_ID, trial_id: str = STANDALONE_ID,
                 sequence: int = -1, parameters: dict[str, Any] | None = None,
                 sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.experiment_id = experiment_id
        self.trial_id = trial_id
        self.sequence = sequence
        self.parameters = {} if parameters is None else parameters
        self.sink = sink

    def send(self, kind: str, value: Any) -> None:
        message = {"type": kind, "value": value, "time": time.time()}
        if self.sink is None:
            print(f"[torchslim] {kind} result: {value}", flush=True)
        else:
            self.sink(message)


_CURRENT: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar(
    "torchslim_trial", default=None
)


def _fd_sink(fd: int) -> Callable[[dict[str, Any]], None]:
    def sink(message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        try:
            # one write per line: atomic on a pipe up to PIPE_BUF, so lines never interleave
            os.write(fd, data)
        except OSError as exc:  # the experiment went away; the trial should not crash
            print(f"[torchslim] could not report {message['type']} result "
                  f"{message['value']!r}: {exc}", file=sys.stderr, flush=True)

    return sink


def _from_environment() -> TrialContext:
    env = os.environ
    raw = env.get(ENV_PARAMETERS)
    try:
        parameters = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_PARAMETERS} is not valid JSON: {exc}") from exc
    fd = env.get(ENV_METRICS_FD)
    return TrialContext(
        experiment_id=env.get(ENV_EXPERIMENT_ID, STANDALONE_ID),
        trial_id=env.get(ENV_TRIAL_ID, STANDALONE_ID),
        sequence=int(env.get(ENV_SEQUENCE, "-1")),
        parameters=parameters,
        sink=_fd_sink(int(fd)) if fd else None,
    )


def current_context() -> TrialContext:
    """The running trial's context (set by the runner, else read from the environment)."""
    ctx = _CURRENT.get()
    if ctx is None:
        ctx = _from_environment()
        _CURRENT.set(ctx)  # parse the environment once per thread/context
    return ctx


def run_in_context(ctx: TrialContext, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` with ``ctx`` as the current trial (for in-process trials)."""
    def call() -> Any:
        _CURRENT.set(ctx)
        return fn(*args)

    return contextvars.copy_context().run(call)


def get_next_parameter() -> dict[str, Any]:
    """This trial's parameters (``{}`` when run by hand)."""
    return current_context().parameters


def get_parameters() -> dict[str, Any]:
    """Same as :func:`get_next_parameter` (the name used by NNI's auto-compression guide)."""
    return get_next_parameter()


def get_current_parameter(tag: str | None = None) -> Any:
    """This trial's parameters, or the one named ``tag``."""
    params = current_context().parameters
    return params if tag is None else params[tag]


def _plain(value: Any) -> Any:
    """``value`` with numpy / torch scalars turned into Python numbers (via ``.item()``),
    so ``np.float32(0.9)`` or a 0-d tensor is a result like ``0.9``."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, float)):  # also numpy's float64, a float subclass
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):  # e.g. an array of many values
            return value
    return value


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


def _check_metric(value: Any, what: str) -> Any:
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    value = _plain(value)
    if number(value):
        return value
    if isinstance(value, dict) and (number(value.get("default")) or (
            "default" not in value and any(number(v) for v in value.values()))):
        # without 'default': the experiment's objectives name the numbers
        if not _all_finite(value):
            raise ValueError(f"{what}: every number in the dict must be finite (JSON has no "
                             f"NaN/inf), got {value!r}")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: the dict must hold JSON data only ({exc})") from None
        return value
    raise ValueError(f"{what} must be a finite number or a dict with a numeric 'default' key "
                     f"(or of numeric objectives), got {value!r}")


def report_intermediate_result(metric: Any) -> None:
    """Report a per-epoch (or per-step) result; the assessor may stop the trial early."""
    current_context().send("intermediate", _check_metric(metric, "report_intermediate_result()"))


def report_final_result(metric: Any) -> None:
    """Report the trial's result (a number, or a dict whose 'default' the tuner optimises)."""
    current_context().send("final", _check_metric(metric, "report_final_result()"))


def get_trial_id() -> str:
    """This trial's id (``'STANDALONE'`` when run by hand)."""
    return current_context().trial_id


def get_experiment_id() -> str:
    """The experiment's id (``'STANDALONE'`` when run by hand)."""
    return current_context().experiment_id


def get_sequence_id() -> int:
    """This trial's 0-based sequence number in its experiment (-1 when run by hand)."""
    return current_context().sequence


def get_trial_budget(default: float | None = None) -> float | None:
    """The budget (epochs, steps...) a Hyperband/BOHB trial may use: ``TRIAL_BUDGET``."""
    return current_context().parameters.get("TRIAL_BUDGET", default)


def save_checkpoint(state: Any, name: str = "checkpoint.pkl") -> str | None:
    """Save ``state`` (pickled) where a PBT trial must save it (``save_checkpoint_dir``);
    returns the file, or None when the trial has no checkpoint folder (not a PBT trial).
    A torch user may instead ``torch.save`` into ``get_current_parameter('save_checkpoint_dir')``."""
    import pickle

    folder = current_context().parameters.get("save_checkpoint_dir")
    if not folder:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path + ".tmp", "wb") as f:
        pickle.dump(state, f)
    os.replace(path + ".tmp", path)  # a trial killed mid-save leaves the old file whole
    return path


def load_checkpoint(name: str = "checkpoint.pkl") -> Any:
    """The state a PBT trial resumes from (``load_checkpoint_dir``), or None (first generation)."""
    import pickle

    folder = current_context().parameters.get("load_checkpoint_dir")
    path = os.path.join(folder, name) if folder else None
    if path is None or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return pickle.load(f)
