"""The seeds' NAS example (``examples/nas/hello_nas.py``) run, then its top model retrained.

Search: the example as written (Random, 3 trials, 3 epochs each by default here 1), except
that trials score on a validation split (the last 1,000 of the 8,000 embedded training
images) instead of the test split. Retrain: the exported architecture, frozen, trained from
scratch for 3 epochs on all 8,000 training images, several seeds; the 2,000 test images are
touched once per seed. Writes ``benchmarks/results/nas_seed_example.json``.
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from torchslim.datasets import load_mnist
from torchslim.nas.evaluator import accuracy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEARCH_EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
RETRAIN_SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def main() -> None:
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("hello_nas", ROOT / "examples/nas/hello_nas.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    train, test = load_mnist()
    example.EPOCHS, example.TRAIN_IMAGES = SEARCH_EPOCHS, 7000
    # choices on a validation split: the example's "test" loader gets training images 7000+
    example.load_mnist = lambda: (train, Subset(train, range(7000, 8000)))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        exp = example.main(port=None, experiments_dir=folder)
        trials = [{"arch": t.parameters, "status": t.status, "val": t.value} for t in exp.trials()]
        top = exp.export_top_models(formatter="dict")[0]
    search_s = time.perf_counter() - start
    accs = []
    for seed in range(RETRAIN_SEEDS):
        torch.manual_seed(seed)
        model = example.MyModelSpace().freeze(top)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(train, batch_size=64, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        for _ in range(3):
            model.train()
            for x, y in loader:
                opt.zero_grad()
                torch.nn.functional.nll_loss(model(x), y).backward()
                opt.step()
        accs.append(accuracy(model, DataLoader(test, batch_size=500)))
        print(f"retrain seed {seed}: test accuracy {accs[-1]:.4f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "nas_seed_example.json").write_text(json.dumps({
        "trials": trials, "top": top, "search_seconds": search_s, "search_epochs": SEARCH_EPOCHS,
        "retrain_epochs": 3, "retrain_test_accuracy": accs,
        "retrain_mean": statistics.mean(accs),
        "retrain_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "machine": "shared 2-core CPU (other jobs running), 1 torch thread"}, indent=1))


if __name__ == "__main__":
    main()
