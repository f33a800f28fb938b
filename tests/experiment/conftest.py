"""Shared fixtures: an isolated experiments folder and small trial scripts."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from torchslim.experiment import store as st


@pytest.fixture
def exp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Experiments go to a temporary folder (via $TORCHSLIM_EXPERIMENTS_DIR)."""
    folder = tmp_path / "experiments"
    monkeypatch.setenv(st.ENV_EXPERIMENTS_DIR, str(folder))
    return folder


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A trial code folder with trial.py: reports x*scale as final (and each step), can
    sleep, fail or hang depending on its parameters."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "trial.py").write_text(textwrap.dedent("""
        import sys, time
        import torchslim
        p = torchslim.get_next_parameter()
        for step in range(int(p.get("steps", 0))):
            torchslim.report_intermediate_result(p["x"] * (step + 1))
            time.sleep(float(p.get("step_sleep", 0)))
        time.sleep(float(p.get("sleep", 0)))
        if p.get("fail"):
            print("failing on purpose", file=sys.stderr)
            sys.exit(3)
        print("params", p)
        torchslim.report_final_result(p["x"])
    """))
    return folder




def poll(predicate: Callable[[], Any], what: str = "the condition", timeout: float = 30.0) -> Any:
    """Call ``predicate`` until it returns something truthy (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling another process's files or database
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """:func:`poll`, for tests that wait on another process (no fixed sleeps)."""
    return poll
