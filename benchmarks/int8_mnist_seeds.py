"""Deployed int8 accuracy vs fp32 on the embedded MNIST, mean ± sd over 5 seeds: LeNet and a trained MobileNetV2.

LeNet, per seed: trained 2 epochs on the 8,000-image train split (fp32), PtqQuantizer calibration on 8 train
batches (int8 affine inputs, per-channel symmetric int8 weights), static int8 deployed with
``backend='onnxruntime'`` and ``'x86'``; accuracy of the *deployed* models on the 2,000 test images (touched
once per model; no choice is made on it).

MobileNetV2 (torchvision ``mobilenet_v2(num_classes=10)``, random init, structure unmodified), per seed: the
MNIST images padded 28 -> 32 px with the background value and replicated to 3 channels, trained with a fixed
recipe (chosen on a validation split of the training images by ``--select-recipe``, never on the test split),
PTQ with int8_latency.py's ``CNN_CONFIG`` and BatchNorm folding on 8 calibration batches, deployed with both
backends; accuracy and relative logit error vs fp32 (``||out - ref|| / ||ref||`` over the test images) of the
fake-quant model, both deployed models and onnxruntime's stock ``quantize_static`` on the same batches; and the
noise gain of the float network (relative logit change under 0.1% Gaussian input noise, per unit of relative
input change) for the trained model, the same network untrained (BatchNorm calibrated) and the random-init
224 px MobileNetV2 exactly as int8_latency.py builds it.

Writes ``results/quantization_int8_mnist.json`` and renders ``results/quantization_int8_mnist.md``; finished
MobileNetV2 seeds are kept in the JSON and skipped on a rerun under the same protocol.
Run: ``nice -n 10 python benchmarks/int8_mnist_seeds.py [--seeds 5] [--models lenet,mobilenet_v2]``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_latency import CNN_CONFIG, build_model, ort_callable, ort_static_anchor, rel_err, set_bn_statistics  # noqa: E402
from torchslim.datasets import load_mnist  # noqa: E402
from torchslim.models import LeNet  # noqa: E402
from torchslim.quantization import PtqQuantizer, deploy  # noqa: E402
from torchslim.quantization.demo import INT8_CONFIG  # noqa: E402
from torchslim.quantization.int8.common import first_output  # noqa: E402
from torchslim.utils.onnx_export import export_onnx  # noqa: E402
from torchslim.utils.training import evaluate_accuracy, train_epochs  # noqa: E402

RESULTS_DIR = Path(__file__).parent / "results"
NAME = "quantization_int8_mnist"
NOISE = 1e-3  # relative input perturbation of the noise-gain measure
VAL_SIZE = 1000  # the last images of the 8,000-image train split, for --select-recipe only
RECIPES: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": "Adam", "lr": 1e-3, "schedule": "constant", "batch_size": 64},
    "sgd_cosine": {"optimizer": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 4e-5,
                   "schedule": "cosine", "batch_size": 64},
}
SELECT_EPOCHS = (4,)  # epoch budgets --select-recipe compares (what a 25-min, 5-seed run on the shared 2 cores allows)
RECIPE, EPOCHS = "sgd_cosine", 4  # the recipe --select-recipe picked on validation (see the JSON's recipe_selection)
CALIB_BATCHES, CALIB_BATCH_SIZE = 8, 256
MNV2_KEYS = {"fp32": "fp32", "fake_quant": "fake-quant (simulated int8)", "onnxruntime": "ours int8, onnxruntime backend",
             "x86": "ours int8, x86 backend", "ort_static": "stock onnxruntime quantize_static (QDQ, per-channel U8S8)"}


# --- LeNet -----------------------------------------------------------------------------------------
def run_lenet(seeds: int, epochs: int) -> dict:
    train, test = load_mnist()
    rows = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = LeNet()
        train_epochs(model, train, epochs, lr=1e-3)
        model.eval()
        fp32 = evaluate_accuracy(model, test)
        calib = DataLoader(train, batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(seed))
        example = next(iter(calib))[0]
        _, calibration = PtqQuantizer(model, INT8_CONFIG).compress(calib, max_steps=8)
        row = {"seed": seed, "fp32": fp32, "fake_quant": evaluate_accuracy(model.eval(), test)}
        for backend in ("onnxruntime", "x86"):
            row[backend] = evaluate_accuracy(deploy(model, calibration, example, backend=backend), test)
        rows.append(row)
        print(f"LeNet seed {seed} ({time.perf_counter() - t0:.0f} s): {row}", flush=True)
    summary = {key: mean_sd([r[key] for r in rows]) for key in ("fp32", "fake_quant", "onnxruntime", "x86")}
    deltas = {b: statistics.mean(r[b] - r["fp32"] for r in rows) for b in ("onnxruntime", "x86")}
    return {"rows": rows, "summary": summary, "delta_vs_fp32": deltas, "epochs": epochs,
            "load_end": os.getloadavg()[0], "shared_machine": True}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def lenet_markdown(data: dict) -> list[str]:
    rows, summary, deltas = data["rows"], data["summary"], data["delta_vs_fp32"]
    lines = ["## Deployed int8 accuracy on the embedded MNIST (benchmarks/int8_mnist_seeds.py)", "",
             f"LeNet, {data['epochs']} epochs fp32 on the 8,000-image split, PTQ int8 (8 calibration batches), accuracy of the "
             f"deployed int8 models on the 2,000 held-out images; mean ± sd over {len(rows)} seeds (shared machine; "
             "accuracy does not depend on load).", "",
             "| model | accuracy % (mean ± sd) | Δ vs fp32 (mean of per-seed differences) |", "|---|---|---|"]
    for key, label in (("fp32", "fp32"), ("fake_quant", "fake-quant (simulated int8)"),
                       ("onnxruntime", "ours int8, onnxruntime backend"), ("x86", "ours int8, x86 backend")):
        mean, sd = summary[key]
        delta = f"{deltas[key]:+.2f} pt" if key in deltas else ""
        lines.append(f"| {label} | {mean:.2f} ± {sd:.2f} | {delta} |")
    ok = all(abs(d) <= 0.3 for d in deltas.values())
    return lines + ["", f"Goal: deployed int8 within 0.3 pt of fp32 (mean of {len(rows)} seeds): **{'met' if ok else 'not met'}**."]


# --- MobileNetV2 on MNIST --------------------------------------------------------------------------
def to_rgb32(data: TensorDataset, px: int) -> TensorDataset:
    """28 px grey MNIST -> ``px`` px, 3 identical channels, padded with the (normalised) background value."""
    x, y = data.tensors
    pad = (px - x.shape[-1]) // 2
    x = F.pad(x, (pad, px - x.shape[-1] - pad) * 2, value=float(x.min()))
    return TensorDataset(x.expand(-1, 3, -1, -1).contiguous(), y)


def make_optimizer(model: torch.nn.Module, recipe: dict, epochs: int):
    kwargs = {k: recipe[k] for k in ("lr", "momentum", "nesterov", "weight_decay") if k in recipe}
    optimizer = getattr(torch.optim, recipe["optimizer"])(model.parameters(), **kwargs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs) if recipe["schedule"] == "cosine" else None
    return optimizer, scheduler


def init_mobilenet(seed: int) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.mobilenet_v2(num_classes=10)


def train_mobilenet(train: TensorDataset, seed: int, recipe_name: str, epochs: int,
                    on_epoch: Callable[[int, torch.nn.Module], None] | None = None) -> torch.nn.Module:
    recipe = RECIPES[recipe_name]
    model = init_mobilenet(seed)
    optimizer, scheduler = make_optimizer(model, recipe, epochs)
    loader = DataLoader(train, batch_size=recipe["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    for epoch in range(epochs):
        t0 = time.perf_counter()
        train_epochs(model, loader, 1, optimizer=optimizer)
        if scheduler is not None:
            scheduler.step()
        print(f"  {recipe_name} seed {seed}: epoch {epoch + 1}/{epochs} in {time.perf_counter() - t0:.0f} s", flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
    return model.eval()


@torch.no_grad()
def logits(fn: Callable, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([first_output(fn(x[i:i + batch])).float() for i in range(0, len(x), batch)])


@torch.no_grad()
def noise_gain(fn: Callable, x: torch.Tensor, seed: int) -> dict[str, float]:
    """Relative logit change under Gaussian input noise of relative size ``NOISE``, and that change per unit of
    relative input change (how much the network amplifies a small perturbation)."""
    delta = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * NOISE * x.pow(2).mean().sqrt()
    change = rel_err(logits(fn, x + delta), logits(fn, x))
    return {"logit_change": change, "gain": change / float(delta.norm() / x.norm())}


def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((out.argmax(dim=1) == y).float().mean())


def mobilenet_seed(seed: int, train: TensorDataset, test: TensorDataset, tmp: Path, recipe: str, epochs: int) -> dict:
    """One seed of the MobileNetV2 table: accuracies, relative logit errors and noise gains."""
    t0 = time.perf_counter()
    x_test, y_test = test.tensors
    calib_loader = DataLoader(train, batch_size=CALIB_BATCH_SIZE, shuffle=True,
                              generator=torch.Generator().manual_seed(1000 + seed))
    calib = [batch for batch, _ in zip(calib_loader, range(CALIB_BATCHES))]
    model = train_mobilenet(train, seed, recipe, epochs)
    fp32 = copy.deepcopy(model).eval()
    outs = {"fp32": logits(fp32, x_test)}
    quantized = copy.deepcopy(model)
    _, calibration = PtqQuantizer(quantized, CNN_CONFIG, bn_folding=True).compress(calib, max_steps=CALIB_BATCHES)
    outs["fake_quant"] = logits(quantized.eval(), x_test)
    example = calib[0][0]
    for backend in ("onnxruntime", "x86"):
        outs[backend] = logits(deploy(quantized, calibration, example, backend=backend), x_test)
    fp32_onnx = export_onnx(fp32, example, tmp / f"mnv2_{seed}_fp32.onnx")
    outs["ort_static"] = logits(ort_callable(ort_static_anchor(fp32_onnx, [(b[0],) for b in calib],
                                                               tmp / f"mnv2_{seed}_static.onnx")), x_test)
    untrained = init_mobilenet(seed)  # the same initial weights, BatchNorm calibrated, no training
    set_bn_statistics(untrained, [b[0] for b in calib])
    row = {"seed": seed, "accuracy": {k: accuracy(v, y_test) for k, v in outs.items()},
           "rel_err": {k: rel_err(v, outs["fp32"]) for k, v in outs.items() if k != "fp32"},
           "noise": {"trained": noise_gain(fp32, x_test, seed), "untrained": noise_gain(untrained, x_test, seed)},
           "seconds": time.perf_counter() - t0}
    return row


def select_recipe(train: TensorDataset, budgets: tuple[int, ...] = SELECT_EPOCHS) -> list[dict]:
    """Validation accuracy of each recipe and epoch budget (fit on the first 7,000 training images, validate on the
    last 1,000; seed 0). A constant-lr recipe is read after every epoch of one run up to the largest budget; a
    cosine one runs once per budget and is read at its end."""
    x, y = train.tensors
    fit, val = TensorDataset(x[:-VAL_SIZE], y[:-VAL_SIZE]), TensorDataset(x[-VAL_SIZE:], y[-VAL_SIZE:])
    results = []
    for name, recipe in RECIPES.items():
        runs = [max(budgets)] if recipe["schedule"] == "constant" else list(budgets)
        for epochs in runs:
            def record(epoch: int, model: torch.nn.Module, name: str = name, epochs: int = epochs) -> None:
                if RECIPES[name]["schedule"] == "constant" or epoch == epochs:
                    model.eval()
                    results.append({"recipe": name, "epochs": epoch,
                                    "val_accuracy": accuracy(logits(model, val.tensors[0]), val.tensors[1])})
                    model.train()
                    print(f"  validation: {results[-1]}", flush=True)

            train_mobilenet(fit, 0, name, epochs, on_epoch=record)
    return results


def run_mobilenet(seeds: int, px: int, previous: dict | None, recipe: str, epochs: int, save: Callable[[dict], None]) -> dict:
    train, test = (to_rgb32(d, px) for d in load_mnist())
    protocol = {"recipe": recipe, **RECIPES[recipe], "epochs": epochs, "px": px, "calib_batches": CALIB_BATCHES,
                "calib_batch_size": CALIB_BATCH_SIZE, "noise": NOISE}
    section = dict(previous or {})
    if section.get("protocol") != protocol:
        section = {"recipe_selection": section.get("recipe_selection")}
    section["protocol"] = protocol
    rows = {r["seed"]: r for r in section.get("rows", [])}
    if "random_224" not in section:
        model, make, _, description = build_model("mobilenet_v2", reduced=False)
        section["random_224"] = {"model": description, **noise_gain(model, make(8, 1)[0], 0)}
        print(f"random-init {description}: {section['random_224']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            if seed in rows:
                print(f"MobileNetV2 seed {seed}: kept from the previous run", flush=True)
                continue
            rows[seed] = mobilenet_seed(seed, train, test, Path(tmp), recipe, epochs)
            r = rows[seed]
            print(f"MobileNetV2 seed {seed} ({r['seconds']:.0f} s): accuracy {r['accuracy']}, rel. error "
                  f"{ {k: round(v, 4) for k, v in r['rel_err'].items()} }, noise {r['noise']}", flush=True)
            section["rows"] = [rows[s] for s in sorted(rows)]
            section["load_end"], section["threads"] = os.getloadavg()[0], torch.get_num_threads()
            save(section)
    section["rows"] = [rows[s] for s in sorted(rows) if s < seeds]
    return section


def fmt(values: list[float], pattern: str = "{:.2f}") -> str:
    mean, sd = mean_sd(values)
    return f"{pattern.format(mean)} ± {pattern.format(sd)}"


def mobilenet_markdown(section: dict) -> list[str]:
    rows, p = section["rows"], section["protocol"]
    recipe = ", ".join(f"{k} {v}" for k, v in p.items() if k not in ("recipe", "epochs", "px", "calib_batches",
                                                                       "calib_batch_size", "noise"))
    lines = ["", "### MobileNetV2 trained on the embedded MNIST", "",
             f"torchvision `mobilenet_v2(num_classes=10)` (structure unmodified, random init), MNIST padded 28 → {p['px']} px "
             f"and replicated to 3 channels, trained {p['epochs']} epochs on the 8,000-image split ({recipe}; recipe "
             f"'{p['recipe']}' chosen on a {VAL_SIZE}-image validation split of the training images, seed 0, see below). "
             f"PTQ: int8_latency.py's CNN config (int8 affine layer inputs, per-channel symmetric int8 weights on "
             f"Conv2d/Linear), BatchNorm folded, {p['calib_batches']} calibration batches of {p['calib_batch_size']} "
             f"training images; the stock onnxruntime flow calibrates on the same batches. Accuracy and relative logit "
             f"error vs fp32 (`||out - ref|| / ||ref||` over all 2,000 test images); mean ± sd over {len(rows)} seeds "
             f"(shared 2-core machine; the numbers do not depend on load).", "",
             "| model | accuracy % (mean ± sd) | Δ vs fp32 (mean of per-seed differences) | rel. logit error vs fp32 (mean ± sd) |",
             "|---|---|---|---|"]
    deltas = {k: statistics.mean(r["accuracy"][k] - r["accuracy"]["fp32"] for r in rows) for k in MNV2_KEYS if k != "fp32"}
    errors = {k: [r["rel_err"][k] for r in rows] for k in deltas}
    for key, label in MNV2_KEYS.items():
        delta = f"{deltas[key]:+.2f} pt" if key in deltas else ""
        error = fmt(errors[key], "{:.4f}") if key in errors else ""
        lines.append(f"| {label} | {fmt([r['accuracy'][key] for r in rows])} | {delta} | {error} |")
    ours = ("onnxruntime", "x86")
    ok = all(abs(deltas[k]) <= 0.3 and statistics.mean(errors[k]) <= 0.1 for k in ours)
    worst = max(statistics.mean(errors[k]) for k in ours)
    lines += ["", f"Goal: deployed int8 (both backends) within 0.3 pt of fp32 and relative logit error ≤ 0.1 (means of "
                  f"{len(rows)} seeds; worst Δ {max(abs(deltas[k]) for k in ours):.2f} pt, worst error {worst:.4f}): "
                  f"**{'met' if ok else 'not met'}**.", "",
              f"Noise gain of the float network: relative logit change under Gaussian input noise of relative size "
              f"{NOISE:g} (`||f(x + δ) - f(x)|| / ||f(x)||`), and that change divided by `||δ|| / ||x||`. A network "
              "that amplifies a perturbation N-fold turns int8 rounding of its inputs and weights into a logit error "
              "about N times as large.", "",
              "| float network | relative logit change | gain |", "|---|---|---|"]
    r224 = section["random_224"]
    lines.append(f"| random-init MobileNetV2 at 224 px, BatchNorm calibrated on random batches "
                 f"(int8_latency.py's model; 1 model, 8 random images) | {100 * r224['logit_change']:.3f} % | {r224['gain']:.2f}x |")
    for key, label in (("untrained", f"the MNIST MobileNetV2 at {p['px']} px before training (same initial weights, "
                                     "BatchNorm calibrated on the calibration batches)"),
                       ("trained", f"the MNIST MobileNetV2 at {p['px']} px, trained")):
        lines.append(f"| {label}; test images, {len(rows)} seeds | "
                     f"{fmt([100 * r['noise'][key]['logit_change'] for r in rows], '{:.3f}')} % "
                     f"| {fmt([r['noise'][key]['gain'] for r in rows], '{:.2f}')}x |")
    selection = section.get("recipe_selection")
    if selection:
        lines += ["", f"Recipe selection (validation accuracy, first 7,000 training images fit, last {VAL_SIZE} "
                      "validate, seed 0; test split untouched):", "", "| recipe | epochs | validation accuracy % |", "|---|---|---|"]
        lines += [f"| {s['recipe']} ({', '.join(f'{k} {v}' for k, v in RECIPES[s['recipe']].items())}) | {s['epochs']} | "
                  f"{s['val_accuracy']:.2f} |" for s in selection]
    seconds = [r["seconds"] for r in rows]
    lines += ["", f"Run time per seed (training, calibration, 3 int8 builds, evaluation; {section.get('threads', 2)} threads on the "
                  f"2-core machine shared with other jobs, load average {section.get('load_end', 0):.1f} at the end): "
                  f"{statistics.mean(seconds):.0f} s mean, {sum(seconds) / 60:.1f} min for {len(rows)} seeds. Input size "
                  f"(32 px) and epoch budget ({', '.join(map(str, SELECT_EPOCHS))}) were capped so that 5 seeds fit a "
                  "25-minute run on 2 idle threads (an epoch takes ~30 s on 1 idle thread); 32 px trains well, so the "
                  "4x dearer 64 px was not needed. A longer-trained model would be more accurate in fp32, which is not "
                  "what this table is about."]
    return lines


def render(data: dict) -> str:
    lines = lenet_markdown(data) if "rows" in data else ["## Deployed int8 accuracy on the embedded MNIST"]
    if data.get("mobilenet_v2", {}).get("rows"):
        lines += mobilenet_markdown(data["mobilenet_v2"])
    return "\n".join(lines) + "\n"


def write(data: dict) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{NAME}.json").write_text(json.dumps(data, indent=1))
    (RESULTS_DIR / f"{NAME}.md").write_text(render(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="LeNet training epochs")
    parser.add_argument("--models", default="lenet,mobilenet_v2",
                        help="comma-separated subset of lenet,mobilenet_v2 (the other's results are kept from the JSON)")
    parser.add_argument("--px", type=int, default=32, help="MobileNetV2 input size (MNIST padded to it)")
    parser.add_argument("--mobilenet-epochs", type=int, default=EPOCHS)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=RECIPE)
    parser.add_argument("--select-recipe", action="store_true",
                        help="only compare the MobileNetV2 recipes on the validation split and store the result")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--render", action="store_true", help="only re-render the markdown from the JSON")
    args = parser.parse_args()
    path = RESULTS_DIR / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if args.render:
        return write(data)
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    if unknown := set(models) - {"lenet", "mobilenet_v2"}:
        parser.error(f"unknown --models entries: {', '.join(sorted(unknown))}")
    if args.select_recipe:
        train = to_rgb32(load_mnist()[0], args.px)
        data.setdefault("mobilenet_v2", {})["recipe_selection"] = select_recipe(train)
        return write(data)
    if "lenet" in models:
        data.update(run_lenet(args.seeds, args.epochs))
        write(data)
    if "mobilenet_v2" in models:
        def save(section: dict) -> None:
            data["mobilenet_v2"] = section
            write(data)

        save(run_mobilenet(args.seeds, args.px, data.get("mobilenet_v2"), args.recipe, args.mobilenet_epochs, save))
    print(render(data))


if __name__ == "__main__":
    main()
