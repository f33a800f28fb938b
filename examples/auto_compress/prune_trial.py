"""One auto-compression trial: prune a pretrained LeNet as the tuner says, fine-tune, score.

Parameters (from ``torchslim.get_next_parameter()``, see search_space.json):
``prune_method`` = {'_name': 'agp' | 'level' | 'l1', 'conv1_sparsity', 'conv2_sparsity',
'fc1_sparsity'}. Reports the test accuracy after each fine-tuning epoch, then
``{'default': score, ...}`` with score = accuracy (%) - PENALTY * remaining-parameter share,
so the tuner trades accuracy against size.

Run by hand (no experiment) it uses the defaults below and prints its results.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import torch

import torchslim
from torchslim.datasets import load_mnist
from torchslim.models import LeNet
from torchslim.pruning import AGPPruner, L1NormPruner, LevelPruner
from torchslim.utils.training import evaluate_accuracy, train_epochs

PENALTY = 10.0          # accuracy points per 100% of parameters kept
FINETUNE_EPOCHS = 1
AGP_STEPS = 4
BATCH_SIZE = 64
PRETRAIN_EPOCHS = 3
LAYERS = ("conv1", "conv2", "fc1")
CACHE = Path(__file__).resolve().parent / ".cache" / "lenet_dense.pt"
DEFAULTS = {"prune_method": {"_name": "level", "conv1_sparsity": 0.5, "conv2_sparsity": 0.5,
                             "fc1_sparsity": 0.8}}


def pretrained_lenet(train) -> LeNet:
    """The dense LeNet, trained once and shared by all trials (a lock keeps concurrent
    trials from training it twice)."""
    CACHE.parent.mkdir(exist_ok=True)
    with open(CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not CACHE.exists():
            model = train_epochs(LeNet(), train, PRETRAIN_EPOCHS, lr=1e-3, seed=0)
            torch.save(model.state_dict(), CACHE.with_suffix(".tmp"))
            os.replace(CACHE.with_suffix(".tmp"), CACHE)
    model = LeNet()
    model.load_state_dict(torch.load(CACHE))
    return model


def remaining_parameters(model: torch.nn.Module, masks: dict) -> int:
    """Parameters left after pruning: a pruned channel/weight costs nothing once the model
    is sped up (counted from the masks: non-zero weights plus all biases)."""
    total = 0
    for name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            mask = masks.get(name, {}).get(pname)
            total += int(mask.sum()) if mask is not None else param.numel()
    return total


def main() -> None:
    torch.set_num_threads(1)  # trials run side by side: one core each
    torch.manual_seed(0)
    params = torchslim.get_next_parameter() or DEFAULTS
    method = params["prune_method"]
    name = method["_name"]
    config_list = [{"op_names": [layer], "sparse_ratio": method[f"{layer}_sparsity"]}
                   for layer in LAYERS]
    train, test = load_mnist()
    model = pretrained_lenet(train)
    dense = sum(p.numel() for p in model.parameters())
    start = time.time()

    if name == "agp":
        # gradual: AGP's cubic schedule raises sparsity in AGP_STEPS steps during the first
        # half of the fine-tuning epoch; the rest of the epoch recovers
        pruner = AGPPruner(LevelPruner(model, config_list), interval_steps=1, total_times=AGP_STEPS)
        pruner.compress()
        interval = len(train) // BATCH_SIZE // (2 * AGP_STEPS)
        steps = iter(range(1, 10**9))

        def after_step() -> None:
            step = next(steps)
            if step % interval == 0 and step // interval < AGP_STEPS:
                pruner.update_epoch(step // interval)
    else:
        pruner = (LevelPruner if name == "level" else L1NormPruner)(model, config_list)
        pruner.compress()
        after_step = None
    for epoch in range(FINETUNE_EPOCHS):
        train_epochs(model, train, 1, lr=5e-4, batch_size=BATCH_SIZE, seed=epoch + 1,
                     after_step=after_step)
        torchslim.report_intermediate_result(evaluate_accuracy(model, test))
    masks = pruner.get_masks()
    accuracy = evaluate_accuracy(model, test)
    kept = remaining_parameters(model, masks)
    score = accuracy - PENALTY * kept / dense
    latency = measured_latency_ms(pruner.unwrap_model(), masks)
    torchslim.report_final_result({
        "default": score, "accuracy": accuracy, "parameters": kept, "dense_parameters": dense,
        "parameter_reduction": 1 - kept / dense, "latency_ms": latency, "method": name,
        "seconds": time.time() - start,
    })


def measured_latency_ms(model: torch.nn.Module, masks: dict, runs: int = 50) -> float:
    """Median CPU latency (ms, batch 1, one thread) after speedup shrinks what the masks
    allow (whole channels; unstructured zeros stay and cost time)."""
    from torchslim.speedup import ModelSpeedup

    model.eval()
    x = torch.randn(1, 1, 28, 28)
    try:
        ModelSpeedup(model, x, masks).speedup_model()
    except Exception as exc:  # the measured model is then the masked one; say so in the log
        print(f"speedup skipped: {type(exc).__name__}: {exc}")
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


if __name__ == "__main__":
    main()
