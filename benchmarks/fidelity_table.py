"""A tabular multi-fidelity benchmark from real training: LeNet5 learning curves on MNIST.

Every configuration of a small SGD hyper-parameter grid trains LeNet5 for ``R`` epochs on
2,000 images of the embedded MNIST's fit split (seed 0); the validation accuracy (1,000
images carved out of the training part) is recorded after every epoch, and the test accuracy
(2,000 images) after the last. A tuner's trial with budget b then reads the validation
accuracy after b epochs (what a trial that trains b epochs would report) and costs b epochs;
the table makes many tuner seeds cheap, as tabular benchmarks (NAS-Bench, HPOBench) do.

Written to benchmarks/results/fidelity_table.json by ``python benchmarks/fidelity_table.py``
(384 configurations: about 100 s with ``--workers 16`` on a quiet 16-core machine, which is
where the stored table was made, torch 2.11; about an hour on one loaded core).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_io import RESULTS, machine  # noqa: E402

EPOCHS = 9
TRAIN_IMAGES = 2000
GRID = {
    "lr": [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
    "momentum": [0.0, 0.5, 0.9, 0.97],
    "batch_size": [16, 32, 64, 128],
    "weight_decay": [0.0, 0.0001, 0.001],
}
SPACE = {name: {"_type": "choice", "_value": values} for name, values in GRID.items()}
PATH = RESULTS / "fidelity_table.json"


def key(params: dict) -> str:
    return json.dumps({k: params[k] for k in GRID}, sort_keys=True)


def curve(config: dict) -> dict:
    """Validation accuracy after each epoch, test accuracy after the last."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from torchslim.auto.mnist import mnist_splits
    from torchslim.models import LeNet5
    from torchslim.utils.training import evaluate_accuracy, train_epochs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    fit, val, test = mnist_splits(0)
    loader = DataLoader(Subset(fit, range(TRAIN_IMAGES)), batch_size=config["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model = LeNet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                                weight_decay=config["weight_decay"])
    val_curve = []
    for _ in range(EPOCHS):
        train_epochs(model, loader, 1, optimizer=optimizer)
        acc = evaluate_accuracy(model, val)
        val_curve.append(acc if acc == acc else 0.0)  # a diverged run (NaN) scores 0
    return {"config": config, "val": val_curve, "test": evaluate_accuracy(model, test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only the first N configurations (a smoke run, not saved)")
    parser.add_argument("--quiet-machine", action="store_true", help="label the run as taken on a quiet machine")
    args = parser.parse_args()
    configs = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())][: args.limit]
    t0 = time.perf_counter()
    if args.workers > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(args.workers) as pool:
            rows = pool.map(curve, configs)
    else:
        rows = []
        for i, config in enumerate(configs):
            rows.append(curve(config))
            print(f"{i + 1}/{len(configs)} {config} val {rows[-1]['val'][-1]:.1f}", flush=True)
    if args.limit:
        print(rows)
        return
    PATH.write_text(json.dumps({"machine": machine(shared=not args.quiet_machine), "epochs": EPOCHS,
                                "train_images": TRAIN_IMAGES, "grid": GRID, "seconds": time.perf_counter() - t0,
                                "rows": rows}, indent=0))
    print(f"wrote {PATH} ({len(rows)} configurations, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
