"""The seeds' fused pipeline (NNI's ``pqd_fuse.py``) with torchslim, on CPU in minutes.

ResNet-18 (torchvision, random init, 10 classes) on 32x32 random batches:
TaylorPruner under AGPPruner (50% of every conv, BatchNorms aligned to their conv) →
``QATQuantizer.from_compressor`` → ``DynamicLayerwiseDistiller.from_compressor`` → ONE
``compress()`` → ``unwrap_model()`` / ``unwrap_teacher_model()`` → ``ModelSpeedup`` with
``scheduled_pruner.get_masks()`` → the calibration config carried onto the shrunk model
(``speedup.channel_map.reindex``; NNI's ``trans()`` over ``speedup.node_infos`` works too) →
``Quantizer(model, q_config_list).update_calibration_config(...)`` → int8 ``deploy`` →
latency of the dense float model vs the fused int8 one, side by side.

Run: ``python examples/fusion/pqd_fuse.py`` (``--steps`` scales the schedule; prints JSON).
The structural numbers do not depend on the data; random batches only keep it offline.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.models.resnet import resnet18

from torchslim import TorchEvaluator
from torchslim.distillation import DynamicLayerwiseDistiller
from torchslim.pruning import AGPPruner, TaylorPruner, auto_set_dependency_group_ids
from torchslim.quantization import Quantizer, QATQuantizer, deploy
from torchslim.speedup import ModelSpeedup


def random_batches(n: int, batch_size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch_size, 3, 32, 32, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
            for _ in range(n)]


def make_train(batches: list[Any]):
    """The seeds' ``train(model, optimizer, training_step, lr_scheduler, max_steps, max_epochs)``."""

    def train(model, optimizer, training_step, lr_scheduler, max_steps, max_epochs):
        max_steps = max_steps if max_steps else max_epochs * len(batches)
        steps = 0
        model.train()
        while steps < max_steps:
            for batch in batches:
                optimizer.zero_grad()
                loss = training_step(batch, model)
                loss.backward()
                optimizer.step()
                steps += 1
                if steps >= max_steps:
                    return

    return train


def training_step(batch, model):
    return F.cross_entropy(model(batch[0]), batch[1])


def teacher_predict(batch, teacher_model):
    return teacher_model(batch[0])


def configs(model: torch.nn.Module, dummy_input: torch.Tensor) -> tuple[list, list, list]:
    """The seeds' three config lists, as written there."""
    bn_list = [name for name, module in model.named_modules() if isinstance(module, torch.nn.BatchNorm2d)]
    p_config_list = [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}, *[{
        "op_names": [name], "target_names": ["_output_"],
        "target_settings": {"_output_": {
            "align": {"module_name": name.replace("bn", "conv") if "bn" in name else name.replace("downsample.1", "downsample.0"),
                      "target_name": "weight", "dims": [0]},
            "granularity": "per_channel"}},
    } for name in bn_list]]
    p_config_list = auto_set_dependency_group_ids(model, p_config_list, dummy_input)
    q_config_list = [
        {"op_types": ["Conv2d"], "quant_dtype": "int8", "target_names": ["_input_"], "granularity": "per_channel"},
        {"op_types": ["Conv2d"], "quant_dtype": "int8", "target_names": ["weight"], "granularity": "out_channel"},
        {"op_types": ["BatchNorm2d"], "quant_dtype": "int8", "target_names": ["_output_"], "granularity": "per_channel"},
    ]
    d_config_list = [{"op_types": ["Conv2d"], "lambda": 0.1, "apply_method": "mse"}]
    return p_config_list, q_config_list, d_config_list


def median_latency(fns: dict[str, Any], x: torch.Tensor, rounds: int = 7, reps: int = 5) -> dict[str, float]:
    """Median ms per call, the candidates interleaved round by round (fair on a shared machine)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(x)
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn(x)
                times[name].append((time.perf_counter() - t0) / reps * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def run(interval_steps: int = 2, total_times: int = 3, finetune_steps: int = 4, seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = resnet18(num_classes=10)
    batches = random_batches(8, seed=seed)
    dense_params = sum(p.numel() for p in model.parameters())
    teacher_model = copy.deepcopy(model)
    dense = copy.deepcopy(model).eval()
    dummy_input = torch.rand(8, 3, 32, 32)
    p_config_list, q_config_list, d_config_list = configs(model, dummy_input)

    t0 = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    evaluator = TorchEvaluator(make_train(batches), optimizer, training_step)
    sub_pruner = TaylorPruner(model, p_config_list, evaluator, training_steps=interval_steps)
    scheduled_pruner = AGPPruner(sub_pruner, interval_steps=interval_steps, total_times=total_times)
    quantizer = QATQuantizer.from_compressor(scheduled_pruner, q_config_list, quant_start_step=interval_steps)
    distiller = DynamicLayerwiseDistiller.from_compressor(quantizer, d_config_list, teacher_model, teacher_predict, 0.1)
    distiller.compress(max_steps=interval_steps * total_times + finetune_steps, max_epochs=None)
    check_x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(99))
    model.eval()
    with torch.no_grad():
        fused_out = model(check_x)  # masked + fake-quantized, before anything is unwrapped
    distill_losses = dict(distiller.last_losses)
    distiller.unwrap_model()
    distiller.unwrap_teacher_model()
    train_s = time.perf_counter() - t0

    masks = scheduled_pruner.get_masks()  # still the masks, after unwrap_model()
    speedup = ModelSpeedup(model, dummy_input, masks)
    model = speedup.speedup_model()  # raises if the shrunk model differs from the masked one
    params = sum(p.numel() for p in model.parameters())

    calibration_config = quantizer.get_calibration_config()  # taken before speedup: original channels
    calibration_config = speedup.channel_map.reindex(calibration_config)
    sim_quantizer = Quantizer(model, q_config_list)
    sim_quantizer.update_calibration_config(calibration_config)
    model.eval()
    with torch.no_grad():
        sim_out = model(check_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = deploy(model, calibration_config, example_input=check_x, backend="x86")
        with torch.no_grad():
            int8_out = int8(check_x)
    sim_quantizer.unwrap_model()
    shrunk_float = model.eval()

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm().clamp_min(1e-12))

    torch.set_num_threads(1)
    x1 = torch.randn(1, 3, 32, 32)
    latency = median_latency({"dense fp32": dense, "fused fp32 (shrunk)": shrunk_float, "fused int8": int8}, x1)
    return {
        "dense_params": dense_params, "fused_params": params, "seed_params": 2801450,
        "speedup_max_abs_diff": speedup.report.max_abs_diff if speedup.report else None,
        "shrunk_layers": len(speedup.channel_map),
        "carried_vs_fused_rel_err": rel(sim_out, fused_out),
        "carried_vs_fused_argmax_agree": float((sim_out.argmax(1) == fused_out.argmax(1)).float().mean()),
        "int8_vs_sim_rel_err": rel(int8_out, sim_out),
        "distill_losses": {f"{k[0]}:{k[1]}": v for k, v in list(distill_losses.items())[:3]},
        "train_s": train_s, "latency_ms_batch1_1thread": latency,
        "int8_speedup_vs_dense": latency["dense fp32"] / latency["fused int8"],
        "schedule": {"interval_steps": interval_steps, "total_times": total_times, "finetune_steps": finetune_steps},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval-steps", type=int, default=2)
    parser.add_argument("--total-times", type=int, default=3)
    parser.add_argument("--finetune-steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(run(args.interval_steps, args.total_times, args.finetune_steps), indent=2))


if __name__ == "__main__":
    main()
