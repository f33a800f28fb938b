"""docs/custom_pruner.md: every Python example on the page runs and its asserts hold."""
from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "custom_pruner.md"


def test_custom_pruner_page_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    # the headline example stays short enough to read at a glance
    assert len([line for line in blocks[0].splitlines() if line.strip()]) <= 20
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert "fc1   requested 0.60 achieved 0.60" in capsys.readouterr().out
