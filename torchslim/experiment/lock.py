"""One manager per experiment: an exclusive ``flock`` on ``<experiment>/manager.lock``.

The kernel releases the lock the instant the holder dies (even by ``kill -9``, before it
is reaped), so "is a manager running?" is answered by the lock, never by a pid that may
be a zombie or reused. Viewers test the lock without taking it for long and without
writing anything.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "manager.lock"
# a viewer's probe holds a shared lock for microseconds; retry this long before giving up
_PROBE_RACE_S = 0.25


class ExperimentLocked(Exception):
    """Another process manages this experiment."""


class ManagerLock:
    """The exclusive lock of one experiment folder (``acquire`` / ``release``, or ``with``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "ManagerLock":
        """Take the lock now or raise :class:`ExperimentLocked` (never waits)."""
        if self.fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        give_up = time.monotonic() + _PROBE_RACE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < give_up:
                    time.sleep(0.01)
                    continue
                os.close(fd)
                raise ExperimentLocked(str(self.path)) from None
            except BaseException:
                os.close(fd)
                raise
        # the holder's pid, for humans reading the folder (liveness never depends on it)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> "ManagerLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def manager_running(folder: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the manager lock of the experiment in ``folder``."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock we may just have taken
    return False
