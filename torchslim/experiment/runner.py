"""The scheduler loop: ask the tuner, start trials, record what they report.

Crash safety comes from ordering: a trial's row is committed before its process starts,
its result is committed before the tuner or anyone else hears of it, and a trial still
RUNNING in the database when the runner dies is simply run again (same sequence, same
parameters) on resume, so the trial count never grows past ``max_trial_number``.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torchslim.experiment import store as st
from torchslim.experiment.assessor import create_assessor
from torchslim.experiment.config import ExperimentConfig
from torchslim.experiment.searchspace import SearchSpace
from torchslim.experiment.services.base import WAKEUP, Service, TrialEvent, TrialSpec
from torchslim.experiment.tuners import NoMoreTrials, create_tuner

Listener = Callable[[str, "Runner", int | None], None]

# how long a stop waits for killed trials to exit before giving up on them
_STOP_WAIT_S = 10.0
_REQUEUE = "REQUEUE"  # forced outcome: the trial goes back to WAITING (stop, deadline)


def trial_id_for(sequence: int) -> str:
    return f"trial_{sequence:04d}"


def metric_value(metric: Any) -> float | None:
    """The number a tuner optimises: the metric, or its 'default' entry."""
    if isinstance(metric, dict):
        metric = metric.get("default")
    return None if metric is None else float(metric)


@dataclass
class _Active:
    spec: TrialSpec
    started: float
    deadline: float | None
    history: list[float] = field(default_factory=list)
    final: Any = None
    forced: tuple[str, str] | None = None  # (status, error) decided by the runner


class Runner:
    """Runs one experiment (new or resumed) until its budget is spent or it is stopped."""

    def __init__(self, store: st.ExperimentStore, experiment_id: str, config: ExperimentConfig,
                 service: Service, listener: Listener | None = None) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.config = config
        self.service = service
        self.listener = listener
        self.space = SearchSpace.parse(config.search_space)
        self.tuner = create_tuner(config.tuner, self.space, config.tuner_args)
        self.assessor = create_assessor(config.assessor, config.assessor_args,
                                        config.optimize_mode)
        self.running: dict[int, _Active] = {}
        self.queue: deque[st.TrialRecord] = deque()
        self.count = 0
        self.exhausted = False
        self.stop_reason: str | None = None
        self.counts: Counter[str] = Counter()
        self.best: tuple[float, int] | None = None  # (value, sequence)
        self.started = time.monotonic()
        self.elapsed_before = 0.0
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    # ---- public -----------------------------------------------------------------------
    def request_stop(self, reason: str = "stopped by user") -> None:
        """Ask the loop to stop (thread- and signal-safe)."""
        self.stop_reason = reason
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def run(self) -> str:
        """Run to the end; returns the final experiment status."""
        info = self.store.experiment()
        self.elapsed_before = float(info.get("elapsed") or 0.0)
        self.started = time.monotonic()
        self.store.update_experiment(status="RUNNING", pid=os.getpid(), started=time.time(),
                                     ended=None, message=None)
        self.service.set_wakeup_fd(self._wake_r)
        restore = self._install_signals()
        status, message = "ERROR", "crashed"
        try:
            self._restore()
            self._emit("start")
            message = self._loop()
            status = "STOPPED" if self.stop_reason else "DONE"
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._cancel_running()
            restore()
            self.service.close()
            self.store.update_experiment(status=status, message=message, pid=None,
                                         ended=time.time(), elapsed=self.elapsed())
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._emit("end")
        return status

    # ---- setup ------------------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # only the main thread may set handlers; request_stop works

        def handler(signum: int, frame: Any) -> None:
            self.request_stop(f"stopped by {signal.Signals(signum).name}")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        old_fd = signal.set_wakeup_fd(self._wake_w)

        def restore() -> None:
            signal.set_wakeup_fd(old_fd)
            for s, h in previous.items():
                signal.signal(s, h)

        return restore

    def _restore(self) -> None:
        """Teach the tuner and assessor what earlier runs found; re-queue unfinished trials."""
        for rec in self.store.trials(statuses=st.FINISHED_STATUSES):
            self.tuner.observe(rec.sequence, rec.raw)
            self.tuner.receive(rec.sequence, self._feedback(rec.status, rec.metric,
                                                            rec.intermediate))
            if self.assessor:
                self.assessor.trial_end(rec.intermediate, rec.status == st.SUCCEEDED)
            self._count(rec.status, rec.sequence, rec.value)
        _kill_leftovers(self.store.trials(statuses=(st.RUNNING,), with_intermediate=False),
                        self.experiment_id)
        for rec in self.store.requeue_unfinished():
            self.tuner.observe(rec.sequence, rec.raw)
            self.queue.append(rec)
        self.count = self.store.count()

    # ---- loop -------------------------------------------------------------------------
    def _loop(self) -> str:
        cfg = self.config
        while True:
            if self.stop_reason:
                return self.stop_reason
            if cfg.max_experiment_duration and self.elapsed() >= cfg.max_experiment_duration:
                return "maxExperimentDuration reached"
            self._fill()
            if not self.running:
                if self.exhausted:
                    return "search space exhausted"
                return "maxTrialNumber reached"
            for event in self.service.wait(self._next_timeout()):
                self._handle(event)
            self._check_timeouts()

    def _next_timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [a.deadline for a in self.running.values() if a.deadline and not a.forced]
        if self.config.max_experiment_duration:
            deadlines.append(now + self.config.max_experiment_duration - self.elapsed())
        return max(min(deadlines) - now, 0.0) if deadlines else None

    def _budget_left(self) -> bool:
        limit = self.config.max_trial_number
        return not self.exhausted and (limit is None or self.count < limit)

    def _fill(self) -> None:
        gpus = self.config.trial_gpu_number
        while len(self.running) < self.config.trial_concurrency and self.service.can_start(gpus):
            if self.queue:
                rec = self.queue.popleft()
                self._launch(rec.sequence, rec.trial_id, rec.parameters)
                continue
            if not self._budget_left():
                return
            try:
                proposal = self.tuner.generate(self.count)
            except NoMoreTrials:
                self.exhausted = True
                return
            if proposal is None:  # the tuner waits for a result first
                return
            params, raw = proposal
            seq, self.count = self.count, self.count + 1
            self.store.add_trial(seq, trial_id_for(seq), params, raw)
            self._launch(seq, trial_id_for(seq), params)

    def _launch(self, seq: int, trial_id: str, params: dict[str, Any]) -> None:
        cfg = self.config
        spec = TrialSpec(
            sequence=seq, trial_id=trial_id, experiment_id=self.experiment_id,
            parameters=params, log_dir=self.store.folder / "trials" / trial_id,
            cwd=cfg.trial_code_directory, command=cfg.trial_command,
            function=cfg.trial_function, gpu_number=cfg.trial_gpu_number,
        )
        self.store.trial_started(seq, str(spec.stdout_path), str(spec.stderr_path))
        now = time.monotonic()
        deadline = now + cfg.max_trial_duration if cfg.max_trial_duration else None
        active = _Active(spec, now, deadline)
        try:
            pid = self.service.start(spec)
        except OSError as exc:  # e.g. the code directory vanished: this trial fails, not us
            self.running[seq] = active
            self._finish(active, TrialEvent(seq, "exit", None, f"could not start: {exc}"))
            return
        self.running[seq] = active
        if pid is not None:
            self.store.set_trial_pid(seq, pid)
        self._emit("trial_start", seq)

    def _handle(self, event: TrialEvent) -> None:
        active = self.running.get(event.sequence)
        if event.sequence == WAKEUP or active is None:
            return
        if event.kind == "intermediate":
            active.history.append(metric_value(event.value))
            self.store.add_intermediate(event.sequence, len(active.history) - 1, event.value)
            self._emit("intermediate", event.sequence)
            if (self.assessor and active.forced is None
                    and self.assessor.should_stop(active.history)):
                active.forced = (st.EARLY_STOPPED, "stopped early by the Medianstop assessor")
                self.service.kill(event.sequence)
        elif event.kind == "final":
            active.final = event.value
        elif event.kind == "exit":
            self._finish(active, event)

    def _finish(self, active: _Active, event: TrialEvent) -> None:
        seq = active.spec.sequence
        del self.running[seq]
        if active.forced and active.forced[0] == _REQUEUE:
            self.store.requeue_unfinished()  # only this one can be RUNNING now
            return
        ok = event.value == 0 and event.error is None
        if active.forced and not (ok and active.final is not None):
            status, error = active.forced
        else:
            status, error = (st.SUCCEEDED if ok else st.FAILED), event.error
        self.store.trial_finished(seq, status, active.final, event.value, error)
        value = self._feedback(status, active.final, active.history)
        self.tuner.receive(seq, value)
        if self.assessor:
            self.assessor.trial_end(active.history, status == st.SUCCEEDED)
        self._count(status, seq, metric_value(active.final) if status == st.SUCCEEDED else None)
        self._emit("trial_end", seq)

    @staticmethod
    def _feedback(status: str, final: Any, history: list[float]) -> float | None:
        # an early-stopped trial still tells the tuner something: its last result
        if status == st.SUCCEEDED:
            return metric_value(final)
        if status == st.EARLY_STOPPED and history:
            return history[-1]
        return None

    def _count(self, status: str, seq: int, value: float | None) -> None:
        self.counts[status] += 1
        if value is None:
            return
        better = (self.best is None or
                  (value > self.best[0] if self.config.optimize_mode == "maximize"
                   else value < self.best[0]))
        if better:
            self.best = (value, seq)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for seq, active in list(self.running.items()):
            if active.deadline and now >= active.deadline and active.forced is None:
                active.forced = (st.FAILED, f"timed out after {self.config.max_trial_duration:g}s "
                                            f"(maxTrialDuration)")
                self.service.kill(seq)

    def _cancel_running(self) -> None:
        """Kill what still runs and put it back in the queue (stop, deadline, error)."""
        for seq, active in list(self.running.items()):
            active.forced = (_REQUEUE, "")
            self.service.kill(seq)
        give_up = time.monotonic() + _STOP_WAIT_S
        while self.running and time.monotonic() < give_up:
            for event in self.service.wait(max(give_up - time.monotonic(), 0.0)):
                if event.kind == "exit":
                    self._handle(event)
        if self.running:
            self.store.requeue_unfinished()
            self.running.clear()

    def _emit(self, kind: str, seq: int | None = None) -> None:
        if self.listener is not None:
            self.listener(kind, self, seq)


def _kill_leftovers(records: list[st.TrialRecord], experiment_id: str) -> None:
    """Kill trial processes a crashed runner left behind (only if they are really ours)."""
    for rec in records:
        if not rec.pid:
            continue
        try:
            environ = Path(f"/proc/{rec.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = {f"TORCHSLIM_TRIAL_ID={rec.trial_id}".encode(),
                f"TORCHSLIM_EXPERIMENT_ID={experiment_id}".encode()}
        if mine <= set(environ):
            try:
                os.killpg(rec.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
