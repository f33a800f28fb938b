"""Deployed int8 accuracy vs fp32 on the embedded MNIST, mean ± sd over 5 seeds.

Per seed: LeNet trained 2 epochs on the 8,000-image train split (fp32), PtqQuantizer calibration on
8 train batches (int8 affine inputs, per-channel symmetric int8 weights), static int8 deployed with
``backend='onnxruntime'`` and ``'x86'``; accuracy of the *deployed* models on the 2,000 test images
(touched once per model; no choice is made on it). Writes ``results/quantization_int8_mnist.json``
and renders ``results/quantization_int8_mnist.md``.
Run: ``nice -n 10 python benchmarks/int8_mnist_seeds.py [--seeds 5]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torchslim.datasets import load_mnist  # noqa: E402
from torchslim.models import LeNet  # noqa: E402
from torchslim.quantization import PtqQuantizer, deploy  # noqa: E402
from torchslim.quantization.demo import INT8_CONFIG  # noqa: E402
from torchslim.utils.training import evaluate_accuracy, train_epochs  # noqa: E402

RESULTS_DIR = Path(__file__).parent / "results"
NAME = "quantization_int8_mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, test = load_mnist()
    rows = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = LeNet()
        train_epochs(model, train, args.epochs, lr=1e-3)
        model.eval()
        fp32 = evaluate_accuracy(model, test)
        calib = DataLoader(train, batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(seed))
        example = next(iter(calib))[0]
        _, calibration = PtqQuantizer(model, INT8_CONFIG).compress(calib, max_steps=8)
        row = {"seed": seed, "fp32": fp32, "fake_quant": evaluate_accuracy(model.eval(), test)}
        for backend in ("onnxruntime", "x86"):
            row[backend] = evaluate_accuracy(deploy(model, calibration, example, backend=backend), test)
        rows.append(row)
        print(f"seed {seed} ({time.perf_counter() - t0:.0f} s): {row}", flush=True)

    def stats(key: str) -> tuple[float, float]:
        values = [r[key] for r in rows]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    summary = {key: stats(key) for key in ("fp32", "fake_quant", "onnxruntime", "x86")}
    deltas = {b: statistics.mean(r[b] - r["fp32"] for r in rows) for b in ("onnxruntime", "x86")}
    data = {"rows": rows, "summary": summary, "delta_vs_fp32": deltas, "epochs": args.epochs,
            "load_end": os.getloadavg()[0], "shared_machine": True}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{NAME}.json").write_text(json.dumps(data, indent=1))
    lines = ["## Deployed int8 accuracy on the embedded MNIST (benchmarks/int8_mnist_seeds.py)", "",
             f"LeNet, {args.epochs} epochs fp32 on the 8,000-image split, PTQ int8 (8 calibration batches), accuracy of the "
             f"deployed int8 models on the 2,000 held-out images; mean ± sd over {len(rows)} seeds (shared machine; "
             "accuracy does not depend on load).", "",
             "| model | accuracy % (mean ± sd) | Δ vs fp32 (mean of per-seed differences) |", "|---|---|---|"]
    for key, label in (("fp32", "fp32"), ("fake_quant", "fake-quant (simulated int8)"),
                       ("onnxruntime", "ours int8, onnxruntime backend"), ("x86", "ours int8, x86 backend")):
        mean, sd = summary[key]
        delta = f"{deltas[key]:+.2f} pt" if key in deltas else ""
        lines.append(f"| {label} | {mean:.2f} ± {sd:.2f} | {delta} |")
    ok = all(abs(d) <= 0.3 for d in deltas.values())
    lines += ["", f"Goal: deployed int8 within 0.3 pt of fp32 (mean of {len(rows)} seeds): **{'met' if ok else 'not met'}**."]
    (RESULTS_DIR / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
