"""Collect every benchmark's latest output (benchmarks/results/*.md) into benchmarks/RESULTS.md."""
from __future__ import annotations

import platform
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["demo", "pruning", "speedup", "quantization", "experiments"]


def main() -> None:
    parts = sorted((HERE / "results").glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    header = [
        "# Benchmark results",
        "",
        "Latest output of each script in `benchmarks/` (regenerate a section by re-running its script, then",
        "`python benchmarks/assemble_results.py`). Ratios are measured side by side in one run; absolute",
        f"times depend on the machine (these: {platform.machine()}, 2 CPU cores, torch threads pinned to 2).",
        "",
    ]
    body = [p.read_text().strip() + "\n" for p in parts]
    (HERE / "RESULTS.md").write_text("\n".join(header) + "\n" + "\n".join(body))
    print(f"wrote {HERE / 'RESULTS.md'} from {len(parts)} sections")


if __name__ == "__main__":
    main()
