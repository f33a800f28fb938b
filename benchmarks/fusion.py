"""Fusion benchmark: prune + int8 + distill in one training run (the seeds' pipeline).

1. Structural run (``examples/fusion/pqd_fuse.py``): ResNet-18, random init, 32x32 random
   batches: parameters after 50% conv sparsity with BN align (seed: 2,801,450), outputs
   verified, calibration carried through speedup, int8 deployed, dense vs fused latency.
2. Accuracy run on the embedded MNIST (train 7,000 / validation 1,000 / test 2,000): a trained
   LeNet teacher; the student starts from the teacher, AGP(Taylor) prunes 80% of conv1, conv2
   and fc1 while QAT trains, then speedup, calibration carried, int8 simulated (and deployed
   for the chosen runs). With distillation (DynamicLayerwiseDistiller, the teacher's
   tensors) vs the same student without it; each variant's settings (learning rate, and the
   distillation targets) chosen on the validation split, the test split read once per choice.

Writes ``benchmarks/results/fusion.json`` and renders ``benchmarks/results/fusion.md`` from it.
Run: ``nice -n 10 python benchmarks/fusion.py`` (``--seeds 3``, ``--steps 200``).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from torchslim import TorchEvaluator
from torchslim.datasets import load_mnist
from torchslim.distillation import DynamicLayerwiseDistiller
from torchslim.models import LeNet
from torchslim.pruning import AGPPruner, TaylorPruner
from torchslim.quantization import QATQuantizer, Quantizer, deploy
from torchslim.speedup import ModelSpeedup

HERE = Path(__file__).parent
RESULTS = HERE / "results"
P_CONFIG = [{"op_names": ["conv1", "conv2", "fc1"], "sparse_ratio": 0.8}]
Q_CONFIG = [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"], "quant_dtype": "int8"}]
DISTILL = {  # choices for the distilled variant (picked on validation)
    "logits-kl": [{"op_names": ["fc2"], "lambda": 1.0, "apply_method": "kl", "temperature": 4.0}],
    "layers-mse": [{"op_names": ["conv2", "fc1", "fc2"], "lambda": 0.1, "apply_method": "mse"}],
}
LRS = (1e-3, 3e-4)


def splits() -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    train, test = load_mnist()
    x, y = train.tensors
    return TensorDataset(x[:7000], y[:7000]), TensorDataset(x[7000:], y[7000:]), test


def loop(loader: DataLoader):
    def train(model, optimizer, training_step, lr_scheduler, max_steps, max_epochs):
        steps = 0
        model.train()
        while max_steps is None or steps < max_steps:
            for batch in loader:
                optimizer.zero_grad()
                training_step(batch, model).backward()
                optimizer.step()
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    return

    return train


def step(batch, model):
    return F.cross_entropy(model(batch[0]), batch[1])


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: TensorDataset) -> float:
    model.eval()
    x, y = data.tensors
    correct = sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(x), 500))
    return 100.0 * correct / len(x)


def train_teacher(train: TensorDataset, seed: int, epochs: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = LeNet()
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loop(loader)(model, opt, step, None, epochs * len(loader), None)
    return model.eval()


def student_run(teacher: torch.nn.Module, train: TensorDataset, seed: int, lr: float, distill: str | None,
                steps: int) -> dict[str, Any]:
    """Prune + QAT (+ distill) in one run, then speedup, carried calibration, simulated int8."""
    torch.manual_seed(seed)
    model = copy.deepcopy(teacher).train()
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed + 1))
    evaluator = TorchEvaluator(loop(loader), torch.optim.Adam(model.parameters(), lr), step)
    interval = max(1, steps // 10)
    scheduled = AGPPruner(TaylorPruner(model, P_CONFIG, evaluator, training_steps=interval), interval, 5)
    quantizer = QATQuantizer.from_compressor(scheduled, Q_CONFIG, quant_start_step=interval * 5)
    last: Any = quantizer
    if distill is not None:
        last = DynamicLayerwiseDistiller.from_compressor(quantizer, DISTILL[distill], teacher,
                                                         lambda batch, t: t(batch[0]), 1.0)
    last.compress(max_steps=steps)
    last.unwrap_model()
    if distill is not None:
        last.unwrap_teacher_model()
    speedup = ModelSpeedup(model, torch.randn(2, 1, 28, 28), scheduled.get_masks())
    speedup.speedup_model()
    calibration = speedup.channel_map.reindex(quantizer.get_calibration_config())
    Quantizer(model, Q_CONFIG).update_calibration_config(calibration)  # int8 simulated on the shrunk model
    return {"model": model, "calibration": calibration, "params": sum(p.numel() for p in model.parameters())}


def accuracy_run(seeds: int, steps: int) -> dict[str, Any]:
    train, val, test = splits()
    variants = {"without distillation": [(lr, None) for lr in LRS],
                "with distillation": [(lr, d) for lr in LRS for d in DISTILL]}
    runs: list[dict[str, Any]] = []
    models: dict[tuple, Any] = {}
    teachers = []
    t0 = time.perf_counter()
    for seed in range(seeds):
        teacher = train_teacher(train, seed)
        teachers.append({"seed": seed, "val": accuracy(teacher, val), "test": accuracy(teacher, test),
                         "params": sum(p.numel() for p in teacher.parameters())})
        for variant, choices in variants.items():
            for lr, distill in choices:
                out = student_run(teacher, train, seed, lr, distill, steps)
                key = (variant, lr, distill, seed)
                models[key] = out
                runs.append({"variant": variant, "lr": lr, "distill": distill, "seed": seed, "params": out["params"],
                             "val": accuracy(out["model"], val)})
                print(f"seed {seed} {variant:22s} lr={lr:g} {distill or '-':10s} val {runs[-1]['val']:.2f}%",
                      flush=True)
    chosen = {}
    for variant, choices in variants.items():
        def mean_val(choice):
            return statistics.mean(r["val"] for r in runs if r["variant"] == variant and (r["lr"], r["distill"]) == choice)

        lr, distill = max(choices, key=mean_val)
        tests, int8_tests = [], []
        for seed in range(seeds):  # the test split, once per chosen setting
            out = models[(variant, lr, distill, seed)]
            tests.append(accuracy(out["model"], test))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                int8 = deploy(out["model"], out["calibration"], example_input=test.tensors[0][:64], backend="x86")
            int8_tests.append(accuracy(int8, test))
        chosen[variant] = {"lr": lr, "distill": distill, "val_mean": mean_val((lr, distill)), "test": tests,
                           "int8_test": int8_tests, "params": models[(variant, lr, distill, 0)]["params"]}
    return {"teachers": teachers, "runs": runs, "chosen": chosen, "seeds": seeds, "steps": steps,
            "wall_s": time.perf_counter() - t0}


def structural_run() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("pqd_fuse", HERE.parent / "examples" / "fusion" / "pqd_fuse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run()


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def render(data: dict[str, Any]) -> str:
    lines = ["## Fusion: prune + int8 + distill in one run (`benchmarks/fusion.py`)", ""]
    s = data.get("structural")
    if s:
        lat = s["latency_ms_batch1_1thread"]
        lines += [
            "Structural run (`examples/fusion/pqd_fuse.py`): torchvision ResNet-18, random init, 32x32 random batches;",
            "TaylorPruner under AGPPruner (50% of every conv, BatchNorms aligned) → QAT → DynamicLayerwiseDistiller,",
            f"one `compress()` ({s['schedule']['interval_steps'] * s['schedule']['total_times'] + s['schedule']['finetune_steps']} steps), "
            "then speedup with `scheduled_pruner.get_masks()` after `unwrap_model()`.",
            "",
            "| | value |", "|---|---|",
            f"| parameters dense → fused | {s['dense_params']:,} → **{s['fused_params']:,}** (seed: {s['seed_params']:,}) |",
            f"| speedup check: shrunk vs masked, max abs diff | {s['speedup_max_abs_diff']:.2g} |",
            f"| carried calibration: shrunk int8-sim vs fused model before speedup, rel. error | {s['carried_vs_fused_rel_err']:.2g} (argmax agree {s['carried_vs_fused_argmax_agree']:.0%}) |",
            f"| int8 deployed (x86) vs int8-sim, rel. error | {s['int8_vs_sim_rel_err']:.3f} |",
            f"| latency batch 1, 1 thread: dense fp32 / fused fp32 / fused int8 (ms, median) | {lat['dense fp32']:.1f} / {lat['fused fp32 (shrunk)']:.1f} / {lat['fused int8']:.1f} |",
            f"| fused int8 vs dense fp32 | **{s['int8_speedup_vs_dense']:.2f}x** faster |",
            "",
        ]
    a = data.get("accuracy")
    if a:
        t = a["teachers"]
        lines += [
            f"Accuracy run, embedded MNIST (train 7,000 / validation 1,000 / test 2,000), {a['seeds']} seeds, "
            f"{a['steps']} training steps per student. Teacher: LeNet ({t[0]['params']:,} params), "
            f"test {_ms([x['test'] for x in t])}%. Student = the teacher pruned 80% (conv1, conv2, fc1; "
            "AGP over Taylor scores) + QAT int8 in one run, then shrunk by speedup with the calibration carried "
            "over. Settings chosen on validation (mean over seeds); test read once for the chosen setting.",
            "",
            "| student | params | chosen (lr, distillation) | val % | test % (int8 simulated) | test % (int8 deployed, x86) |",
            "|---|---|---|---|---|---|",
        ]
        for variant, c in a["chosen"].items():
            lines.append(f"| {variant} | {c['params']:,} | {c['lr']:g}, {c['distill'] or '-'} | {c['val_mean']:.2f} | "
                         f"**{_ms(c['test'])}** | {_ms(c['int8_test'])} |")
        if {"with distillation", "without distillation"} <= set(a["chosen"]):
            on, off = a["chosen"]["with distillation"], a["chosen"]["without distillation"]
            diffs = [x - y for x, y in zip(on["test"], off["test"])]
            lines += ["", f"With − without distillation, per seed (test, int8 simulated): "
                          f"{', '.join(f'{d:+.2f}' for d in diffs)} points (mean {statistics.mean(diffs):+.2f})."]
        lines += ["", f"Wall time {a['wall_s']:.0f} s."]
    lines += ["", f"Machine: {data['machine']}; shared with other jobs while measured (load average "
                  f"{data['loadavg']}), so absolute times are noisy; latencies are medians of interleaved rounds.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--skip-structural", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--render-only", action="store_true", help="re-render fusion.md from fusion.json")
    args = parser.parse_args()
    if args.render_only:
        (RESULTS / "fusion.md").write_text(render(json.loads((RESULTS / "fusion.json").read_text())))
        return
    torch.set_num_threads(1)
    path = RESULTS / "fusion.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if not args.skip_structural:
        data["structural"] = structural_run()
    if not args.skip_accuracy:
        data["accuracy"] = accuracy_run(args.seeds, args.steps)
    data["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, 1 thread"
    data["loadavg"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    (RESULTS / "fusion.md").write_text(render(data))
    print(render(data))


if __name__ == "__main__":
    main()
