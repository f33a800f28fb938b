"""Trials as process groups: signal them, see whether any member lives, finish them off.

Each command trial starts in its own session (so its own process group, id = the
shell's pid). Ending a trial means ending the *group*: a shell that dies on SIGTERM is
not the end of a Python child that ignores it. The rule everywhere: SIGTERM to the
group, a grace period, then SIGKILL to whatever of the group is left.

Linux-first (``/proc``); elsewhere the checks degrade to ``killpg(pgid, 0)``.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_PROC = Path("/proc")


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is gone."""
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, pgid) of one /proc entry, None if it vanished."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids of process group ``pgid``."""
    if not _PROC.is_dir():
        return [pgid] if signal_group(pgid, 0) else []
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        info = _stat(entry)
        if info and info[1] == pgid and info[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def experiment_groups(experiment_id: str, exclude: int | None = None) -> set[int]:
    """Process groups holding a process started as a trial of ``experiment_id`` (found by the
    ``TORCHSLIM_EXPERIMENT_ID`` in its environment; only our own user's are readable)."""
    if not _PROC.is_dir():
        return set()
    marker = f"TORCHSLIM_EXPERIMENT_ID={experiment_id}".encode()
    own = {os.getpid(), os.getpgrp()}
    groups = set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            info = _stat(entry)
            if info and info[0] not in ("Z", "X") and info[1] not in own and info[1] != exclude:
                groups.add(info[1])
    return groups


def terminate_groups(pgids: set[int] | list[int], grace: float) -> None:
    """SIGTERM each group, wait up to ``grace`` seconds for them to go, SIGKILL the rest."""
    alive = [g for g in pgids if signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    delay = 0.01
    while alive and time.monotonic() < deadline:
        time.sleep(delay)  # no event to wait on for processes that are not our children
        delay = min(delay * 2, 0.1)
        alive = [g for g in alive if group_alive(g)]
    for g in alive:
        signal_group(g, signal.SIGKILL)


class Reaper:
    """Groups being ended: SIGTERM sent, SIGKILL due at a deadline (non-blocking)."""

    def __init__(self) -> None:
        self.deadlines: dict[int, float] = {}

    def terminate(self, pgid: int, grace: float, deadline: float | None = None) -> None:
        """SIGTERM ``pgid`` now (once) and SIGKILL it at ``deadline`` (default now+grace)."""
        if pgid in self.deadlines:
            return
        if signal_group(pgid, signal.SIGTERM):
            self.deadlines[pgid] = deadline if deadline is not None else time.monotonic() + grace

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def tick(self) -> None:
        """SIGKILL groups past their deadline; forget groups that are gone."""
        now = time.monotonic()
        for pgid, deadline in list(self.deadlines.items()):
            if now >= deadline:
                signal_group(pgid, signal.SIGKILL)
                del self.deadlines[pgid]
            elif not group_alive(pgid):
                del self.deadlines[pgid]

    def finish(self) -> None:
        """Block until every group is gone or past its deadline (then SIGKILLed)."""
        delay = 0.01
        while self.deadlines:
            self.tick()
            if self.deadlines:
                time.sleep(min(delay, max(self.next_deadline() - time.monotonic(), 0.0)))
                delay = min(delay * 2, 0.1)
