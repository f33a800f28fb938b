"""Progress while an experiment runs: a live rich table on a terminal, plain lines elsewhere."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from torchslim.experiment import store as st


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def summary_line(runner: Any) -> str:
    """One line: counts, best so far, elapsed."""
    budget = runner.config.max_trial_number
    done = sum(runner.counts.values())
    parts = [f"trials {done}/{budget if budget else '∞'}", f"running {len(runner.running)}"]
    parts += [f"{k.lower()} {v}" for k, v in sorted(runner.counts.items())]
    if runner.best:
        parts.append(f"best {_fmt(runner.best[0])} ({runner_trial_id(runner.best[1])})")
    parts.append(f"elapsed {runner.elapsed():.1f}s")
    return " | ".join(parts)


def runner_trial_id(seq: int) -> str:
    from torchslim.experiment.runner import trial_id_for

    return trial_id_for(seq)


class PlainProgress:
    """A line per finished trial and at start/end (for CI logs and pipes)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, kind: str, runner: Any, seq: int | None) -> None:
        if kind == "start":
            self._print(f"experiment {runner.experiment_id}: started ({runner.config.tuner}, "
                        f"concurrency {runner.config.trial_concurrency})")
        elif kind == "trial_end" and seq is not None:
            rec = next(iter(runner.store.trials(sequences=[seq])), None)
            if rec is not None:
                extra = f" value={_fmt(rec.value)}" if rec.value is not None else ""
                extra += f" error={rec.error}" if rec.error else ""
                self._print(f"{rec.trial_id} {rec.status}{extra} params={rec.parameters}")
            self._print("  " + summary_line(runner))
        elif kind == "end":
            self._print(f"experiment {runner.experiment_id}: finished ({summary_line(runner)})")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichProgress:
    """A live table of running and recent trials, redrawn on every event (rate-limited)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.recent: list[st.TrialRecord] = []
        self.last_draw = 0.0

    def __call__(self, kind: str, runner: Any, seq: int | None) -> None:
        if kind == "start":
            self.live.start()
        if kind == "trial_end" and seq is not None:
            self.recent = (runner.store.trials(sequences=[seq]) + self.recent)[:8]
        now = time.monotonic()
        if kind in ("start", "end") or now - self.last_draw > 0.1:
            self.last_draw = now
            self.live.update(self._render(runner), refresh=True)
        if kind == "end":
            self.live.stop()

    def _render(self, runner: Any) -> Any:
        from rich.table import Table

        table = Table(title=f"experiment {runner.experiment_id} — {summary_line(runner)}",
                      title_justify="left")
        for col in ("trial", "status", "value", "seconds", "parameters"):
            table.add_column(col)
        now = time.monotonic()
        for s, active in sorted(runner.running.items()):
            last = active.history[-1] if active.history else None
            table.add_row(active.spec.trial_id, "RUNNING", _fmt(last), f"{now - active.started:.1f}",
                          _short(active.spec.parameters))
        for rec in self.recent:
            table.add_row(rec.trial_id, rec.status, _fmt(rec.value),
                          _fmt(rec.duration), _short(rec.parameters))
        return table


def _short(params: dict[str, Any], width: int = 70) -> str:
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def make_progress(mode: str = "auto") -> Callable[[str, Any, int | None], None]:
    """'rich', 'plain' or 'auto' (rich on an interactive terminal outside CI)."""
    if mode not in ("auto", "rich", "plain"):
        from torchslim.errors import ConfigError

        raise ConfigError(f"progress is {mode!r}; allowed: auto, rich, plain")
    if mode == "auto":
        interactive = sys.stdout.isatty() and not os.environ.get("CI")
        mode = "rich" if interactive else "plain"
    if mode == "rich":
        try:
            return RichProgress()
        except ImportError:
            pass  # rich is optional: fall back to lines
    return PlainProgress()
