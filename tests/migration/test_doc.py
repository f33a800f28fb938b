"""docs/nni.md: the migrate example shows exactly what torchslim migrate prints for its script."""
from __future__ import annotations

import re
from pathlib import Path

from torchslim.migration import migrate_source

DOC = Path(__file__).resolve().parents[2] / "docs" / "nni.md"


def test_doc_diff_is_migrate_output():
    text = DOC.read_text(encoding="utf-8")
    script = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    diff = re.search(r"```diff\n(.*?)```", text, flags=re.S).group(1)
    assert migrate_source(script, "train.py").diff() == diff
