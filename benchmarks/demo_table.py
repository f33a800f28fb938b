"""The demo's before/after table (what `torchslim demo` prints), saved as results/demo.json + .md.

    python benchmarks/demo_table.py [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_io import machine, save  # noqa: E402


def render(d: dict) -> str:
    lines = [
        "## Demo (`torchslim demo`)",
        "",
        f"Written by `benchmarks/demo_table.py` from `results/demo.json`. {d['machine']}. LeNet on the embedded "
        f"MNIST split ({d['train']:,} train / 2,000 test), 3 epochs, L1NormPruner at 50% of conv1, conv2, fc1, "
        f"2 fine-tuning epochs, ModelSpeedup, PTQ and 1-epoch QAT deployed as real int8; one seed (a demo, not "
        f"an accuracy claim); whole run {d['seconds']:.0f} s.",
        "",
        "| stage | params | non-zero | MACs | accuracy % | ms / batch of 64 | size KB | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        batch = f"{r['batch_latency_ms']:.2f}" if r.get("batch_latency_ms") is not None else "-"
        lines.append(f"| {r['stage']} | {r['params']:,} | {r['nonzero_params']:,} | {r['macs'] / 1e6:.2f}M "
                     f"| {r['accuracy']:.2f} | {batch} | {r['size_kb']:.1f} | {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 training images")
    args = parser.parse_args()
    from torchslim.demo import run_demo

    with tempfile.TemporaryDirectory() as out:
        result = run_demo(out, quick=args.quick, progress=False)
    rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "extra"} for r in result.rows]
    data = {"machine": machine(shared=True), "quick": args.quick, "train": 1000 if args.quick else 8000,
            "seconds": result.seconds, "rows": rows}
    save("demo", data, render(data))
    print(render(data))


if __name__ == "__main__":
    main()
