"""Collect every benchmark's latest output (benchmarks/results/*.md) into benchmarks/RESULTS.md."""
from __future__ import annotations

import platform
import re
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["demo", "pruning_mnist", "pruning_lenet5", "speedup_zoo", "speedup_extras", "quantization", "experiments",
         "experiment_overhead"]


def main() -> None:
    parts = sorted((HERE / "results").glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    header = [
        "# Benchmark results",
        "",
        "Latest output of each script in `benchmarks/`, rendered from the raw JSON it saves in `results/`",
        "(`python benchmarks/run_all.py` re-runs them and assembles this file; `--only NAME` re-runs one).",
        f"Ratios are measured side by side in one run; absolute times depend on the machine ({platform.machine()});",
        "each section says whether its machine was shared.",
        "",
    ]
    # a section's images sit beside it in results/: point RESULTS.md's links there
    body = [re.sub(r"\]\((?![a-z]+:|/|results/)([^)]+\.png)\)", r"](results/\1)", p.read_text().strip()) + "\n"
            for p in parts]
    (HERE / "RESULTS.md").write_text("\n".join(header) + "\n" + "\n".join(body))
    print(f"wrote {HERE / 'RESULTS.md'} from {len(parts)} sections")


if __name__ == "__main__":
    main()
