"""Speedup over the torchvision classification zoo, side by side with Torch-Pruning, like for like.

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (random
weights made trained-like: every all-zero weight or bias re-drawn, norm scales and shifts
non-trivial, BatchNorm statistics calibrated on random batches), both tools remove 30% of the
output channels of every Conv2d/Linear but the classifier, on one 1x3xSxS input (S = 224, 299
for Inception):

* torchslim: ``auto_set_dependency_group_ids`` + ``L1NormPruner`` + ``ModelSpeedup``; its
  check compares the shrunk model with the user's masked model on 4 inputs relative to the
  output's spread, then a *mutation self-test* swaps two kept channels of the last shrunk
  layer and the check must fail;
* Torch-Pruning: ``MetaPruner(importance=MagnitudeImportance(p=1), pruning_ratio=0.3)`` with
  its documented recipe for torchvision (classifier ignored; ViT: ``round_to`` = heads and
  ``model.hidden_dim = model.conv_proj.out_channels`` after pruning; GoogLeNet/Inception
  without aux logits, for both tools).

Tool time is the same scope on both sides: pruning + graph + shrink (torchslim's check runs
are timed apart). Each model runs in its own subprocess with a time limit on one thread.
Rows go to ``benchmarks/results/speedup_zoo.jsonl`` (a re-run skips finished models;
``--fresh`` starts over); ``speedup_zoo.json`` (raw) and ``speedup_zoo.md`` are rendered from them.

    python benchmarks/speedup_zoo.py [--only resnet18,vit_b_32] [--quick] [--timeout 600]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROWS = RESULTS / "speedup_zoo.jsonl"
RATIO = 0.3
TOO_BIG = {"vit_h_14": "632M params, 167 GMACs", "regnet_y_128gf": "645M params, 128 GMACs"}
HEAVY = ("vit_l", "vit_h", "regnet_y_32gf", "regnet_y_16gf", "efficientnet_b7", "efficientnet_b6", "efficientnet_v2_l",
         "efficientnet_v2_m", "convnext_large", "convnext_base", "wide_resnet101", "resnext101", "vgg", "swin_b",
         "swin_v2_b", "maxvit", "regnet_x_32gf", "regnet_x_16gf", "resnet152", "densenet161", "efficientnet_b5")
QUICK = ["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "vit_b_32"]
# first: the models whose old check could not fail, then one of each family
FIRST = ["mobilenet_v2", "efficientnet_b0", "mnasnet0_5", "shufflenet_v2_x0_5", "googlenet", "inception_v3",
         "resnet50", "vit_b_32", "densenet121", "regnet_x_400mf", "squeezenet1_0", "mobilenet_v3_small", "resnet18",
         "convnext_tiny", "swin_t", "maxvit_t", "vit_b_16", "resnext50_32x4d", "regnet_y_400mf", "efficientnet_v2_s"]
TP_LIMIT_S = 300
LEGACY_MACHINE = "x86_64, 2 CPU cores shared with other jobs, one torch thread per model, torch 2.14.1"


def build(name: str):
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def input_size(name: str) -> int:
    return 299 if name == "inception_v3" else 224


def make_trained_like(model, size: int, seed: int = 0) -> None:
    """Weights a trained model could have: what is initialised to zero (ViT's head, biases,
    LayerNorm shifts) is re-drawn, norm scales/shifts spread out, BatchNorm statistics
    calibrated on random batches (so activations neither vanish nor explode)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for pname, p in m.named_parameters(recurse=False):
                if p.dim() >= 2 and not bool(p.any()):
                    p.copy_(torch.randn(p.shape, generator=g) * (p[0].numel() ** -0.5))
                elif bool(p.any()) and float(p.abs().max()) < 1e-4:  # ConvNeXt's layer scale (1e-6)
                    p.copy_(torch.rand(p.shape, generator=g) * 0.4 + 0.1)
                elif p.dim() == 1 and pname == "bias":
                    p.add_(torch.randn(p.shape, generator=g) * 0.05)
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and getattr(m, "weight", None) is not None:
                m.weight.mul_(torch.rand(m.weight.shape, generator=g) + 0.5)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if norms:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
            model.train()
            for _ in range(2):
                model(torch.randn(2, 3, size, size, generator=g))
            model.eval()
            for m in norms:
                m.momentum = 0.1


def classifier_name(model) -> str:
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]


def mutation_caught(model, speedup) -> bool | None:
    """Swap the two largest kept channels of the last shrunk Conv2d/Linear: the check must fail."""
    import torch
    from torch import nn

    for row in reversed(speedup.report.layers):
        layer = model.get_submodule(row.name)
        if not isinstance(layer, (nn.Conv2d, nn.Linear)) or layer.weight.shape[0] < 2:
            continue
        weight = layer.weight
        i, j = weight.detach().reshape(weight.shape[0], -1).norm(dim=1).argsort(descending=True)[:2].tolist()
        original = weight.detach().clone()
        with torch.no_grad():
            weight[[i, j]] = original[[j, i]]
        try:
            return speedup.verify().status == "differs"
        finally:
            with torch.no_grad():
                weight.copy_(original)
    return None


def run_torchslim(model, x, cls: str) -> dict:
    import torch

    from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
    from torchslim.speedup import ModelSpeedup
    from torchslim.utils.metrics import count_macs, count_params

    config = [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": RATIO}, {"op_names": [cls], "exclude": True}]
    t0 = time.perf_counter()
    config = auto_set_dependency_group_ids(model, config, x)
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    t1 = time.perf_counter()
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()
    t2 = time.perf_counter()
    rep = speedup.report
    with torch.no_grad():
        model(x)
    return {"ok": True, "params": count_params(model), "macs": count_macs(model, x),
            "tool_s": (t2 - t0) - rep.check_s, "prune_s": t1 - t0, "check_s": rep.check_s,
            "check": rep.check.to_dict(), "deviation": rep.deviation,
            "mutation_caught": mutation_caught(model, speedup),
            "barriers": sorted({b.target for b in rep.barriers})[:10], "untraced": [m for m, _ in rep.untraced][:10]}


def run_torch_pruning(model, x, cls: str) -> dict:
    import torch
    import torch_pruning as tp
    from torchvision.models.vision_transformer import VisionTransformer

    from torchslim.utils.metrics import count_macs, count_params

    vit = isinstance(model, VisionTransformer)
    t0 = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=RATIO,
                                  ignored_layers=[model.get_submodule(cls)],
                                  round_to=model.encoder.layers[0].num_heads if vit else None)
    pruner.step()
    if vit:  # Torch-Pruning's documented step for torchvision ViT
        model.hidden_dim = model.conv_proj.out_channels
    t1 = time.perf_counter()
    with torch.no_grad():
        model(x)
    return {"ok": True, "params": count_params(model), "macs": count_macs(model, x), "tool_s": t1 - t0,
            "version": getattr(tp, "__version__", "?")}


def run_one(name: str) -> dict:
    import copy

    import torch

    from torchslim.utils.metrics import count_macs, count_params

    torch.set_num_threads(int(os.environ.get("ZOO_THREADS", "1")))
    torch.manual_seed(0)
    size = input_size(name)
    dense = build(name)
    make_trained_like(dense, size)
    x = torch.randn(1, 3, size, size)
    cls = classifier_name(dense)
    row: dict = {"model": name, "classifier": cls, "size": size, "params": count_params(dense),
                 "macs": count_macs(dense, x)}
    for key, fn in (("torchslim", run_torchslim), ("torch_pruning", run_torch_pruning)):
        def give_up(signum, frame):
            raise TimeoutError(f"did not finish within {TP_LIMIT_S} s")

        signal.signal(signal.SIGALRM, give_up)
        signal.alarm(TP_LIMIT_S)
        try:
            row[key] = fn(copy.deepcopy(dense), x, cls)
        except Exception as exc:  # recorded, not fatal: the table lists every failure with its reason
            row[key] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        finally:
            signal.alarm(0)
    return row


# --- rendering ---------------------------------------------------------------------------------------
def load_rows() -> list[dict]:
    rows = {}
    if ROWS.exists():
        for line in ROWS.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["model"]] = row
    return sorted(rows.values(), key=lambda r: r["model"])


def _pct(part: float | None, whole: float) -> str:
    return "-" if part is None else f"{100 * part / whole:.1f}%"


def render(data: dict) -> str:
    rows = data["rows"]
    ran = [r for r in rows if "torchslim" in r]
    other = [r for r in rows if "torchslim" not in r]
    ours = [r for r in ran if r["torchslim"].get("ok")]
    theirs = [r for r in ran if r["torch_pruning"].get("ok")]
    equal = [r for r in ours if r["torchslim"]["check"]["status"] == "equal"]
    caught = [r for r in ours if r["torchslim"].get("mutation_caught")]
    both = [r for r in ran if r["torchslim"].get("ok") and r["torch_pruning"].get("ok")]

    def total(rs: list[dict], tool: str, key: str) -> float:
        return sum(r[tool][key] for r in rs)

    def share(rs: list[dict], tool: str, key: str) -> str:
        whole = sum(r[key] for r in rs)
        return f"{100 * total(rs, tool, key) / whole:.1f}%" if whole else "-"

    machines = data.get("machines") or [data.get("machine", LEGACY_MACHINE)]
    letter = {m: chr(ord("A") + i) for i, m in enumerate(machines)}
    where = "; ".join(f"({letter[m]}) {m}" for m in machines)
    lines = [
        "## Speedup zoo: torchvision classification models, 30% of the output channels",
        "",
        f"Written by `benchmarks/speedup_zoo.py` from `results/speedup_zoo.json`. Ran on {where}. "
        "Random weights made trained-like (zero-initialised weights and biases re-drawn, norm scales and shifts "
        "spread, BatchNorm statistics calibrated on random batches). Both tools prune every Conv2d/Linear but the "
        f"classifier by 30%; Torch-Pruning {data.get('tp_version', '?')} with its torchvision recipe (classifier "
        "ignored, ViT `round_to` = heads and `model.hidden_dim = model.conv_proj.out_channels`).",
        "",
        "| | torchslim | Torch-Pruning |",
        "|---|---|---|",
        f"| pruned model runs | {len(ours)}/{len(ran)} | {len(theirs)}/{len(ran)} |",
        f"| shrunk output equals the user's masked model (4 inputs, 1e-3 of output spread) | {len(equal)}/{len(ours)} "
        "| no masked reference |",
        f"| mutation self-test (two kept channels swapped) caught by the check | {len(caught)}/{len(ours)} | - |",
        f"| params kept, over the {len(both)} models both pruned | {share(both, 'torchslim', 'params')} "
        f"| {share(both, 'torch_pruning', 'params')} |",
        f"| MACs kept, same models | {share(both, 'torchslim', 'macs')} | {share(both, 'torch_pruning', 'macs')} |",
        f"| tool time (prune + graph + shrink), same models, s | {total(both, 'torchslim', 'tool_s'):.0f} "
        f"| {total(both, 'torch_pruning', 'tool_s'):.0f} |",
        "",
        "Per model: params and MACs kept (share of the dense model), tool time in s (one measurement per tool, "
        "run one after the other on the same machine, column 'on': indicative only), torchslim's check "
        "(max |difference| relative to the output's spread across inputs) and mutation self-test.",
        "",
        "| model | params (M) | torchslim params kept | TP params kept | torchslim MACs kept | TP MACs kept "
        "| torchslim s | TP s | on | check | rel. diff | mutation caught |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ran:
        o, t = r["torchslim"], r["torch_pruning"]
        check = o.get("check") or {}

        def kept(side: dict, key: str) -> str:
            return _pct(side.get(key), r[key]) if side.get("ok") else "failed"

        def secs(side: dict) -> str:
            return f"{side['tool_s']:.1f}" if side.get("ok") else "-"

        verdict = (f"{check.get('status')} | {check.get('relative', 0):.1e} | {o.get('mutation_caught')}"
                   if o.get("ok") else "failed | - | -")
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.1f} | {kept(o, 'params')} | {kept(t, 'params')} "
                     f"| {kept(o, 'macs')} | {kept(t, 'macs')} | {secs(o)} | {secs(t)} "
                     f"| {letter.get(r.get('machine', LEGACY_MACHINE), '?')} | {verdict} |")
    failures = [(r["model"], tool, r[tool]["error"]) for r in ran for tool in ("torchslim", "torch_pruning")
                if not r[tool].get("ok")]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {m} ({tool}): {err[:160]}" for m, tool, err in failures]
    if other:
        lines += ["", "Not run: " + ", ".join(f"{r['model']} ({r.get('skipped') or r.get('crashed')})" for r in other)]
    if data.get("not_done"):
        lines += ["", f"Not reached in this run (time): {', '.join(data['not_done'])}"]
    return "\n".join(lines) + "\n"


def machine_label(jobs: int, threads: int = 1) -> str:
    """Where a row ran: sizes are machine-independent, tool times are not."""
    import torch

    busy = f", {jobs} models at once" if jobs > 1 else ""
    per_model = "one torch thread" if threads == 1 else f"{threads} torch threads"
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores{busy}, {per_model} per model, "
            f"torch {torch.__version__.split('+')[0]}")


def write_outputs(names: list[str]) -> None:
    rows = load_rows()
    done = {r["model"] for r in rows}
    tp_version = next((r["torch_pruning"].get("version") for r in rows if r.get("torch_pruning", {}).get("ok")), "?")
    machines = sorted({r.get("machine", LEGACY_MACHINE) for r in rows})
    data = {"machines": machines,
            "tp_version": tp_version, "ratio": RATIO, "rows": rows, "not_done": [n for n in names if n not in done]}
    (RESULTS / "speedup_zoo.json").write_text(json.dumps(data, indent=1))
    (RESULTS / "speedup_zoo.md").write_text(render(data))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", help="run one model and print its JSON row")
    parser.add_argument("--only", help="comma-separated models")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--render", action="store_true", help="only render the JSON and markdown from rows so far")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model")
    parser.add_argument("--jobs", type=int, default=1, help="models run at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model")
    parser.add_argument("--include-big", action="store_true", help=f"also run {', '.join(TOO_BIG)}")
    args = parser.parse_args()
    if args.one:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        print("ROW " + json.dumps(run_one(args.one)), flush=True)
        return
    import torchvision

    names = (args.only.split(",") if args.only else QUICK if args.quick
             else torchvision.models.list_models(module=torchvision.models))
    names = sorted(names, key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0,
                                         any(n.startswith(h) for h in HEAVY), n))  # heavy models last
    RESULTS.mkdir(exist_ok=True)
    if args.fresh and ROWS.exists():
        ROWS.unlink()
    if not args.render:
        done = {r["model"] for r in load_rows() if "crashed" not in r and not (args.include_big and "skipped" in r)}
        path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONPATH=path, OMP_WAIT_POLICY="PASSIVE", ZOO_THREADS=str(args.threads))
        machine = machine_label(args.jobs, args.threads)
        lock = threading.Lock()

        def one(name: str) -> None:
            t0 = time.perf_counter()
            if name in TOO_BIG and not args.include_big:
                row = {"model": name, "skipped": f"too big for this machine ({TOO_BIG[name]})"}
            else:
                try:
                    proc = subprocess.run([sys.executable, __file__, "--one", name],
                                          capture_output=True, text=True, timeout=args.timeout, env=env)
                    lines = [line for line in proc.stdout.splitlines() if line.startswith("ROW ")]
                    row = json.loads(lines[-1][4:]) if lines else {
                        "model": name, "crashed": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
                except subprocess.TimeoutExpired:
                    row = {"model": name, "crashed": f"timeout after {args.timeout} s"}
            row["wall_s"] = time.perf_counter() - t0
            row["machine"] = machine
            o, t = row.get("torchslim", {}), row.get("torch_pruning", {})
            with lock:  # rows are appended whole, so a kill loses at most the models in flight
                with ROWS.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{name}: torchslim ok={o.get('ok')} check={o.get('check', {}).get('status')} "
                      f"mutation caught={o.get('mutation_caught')} | torch-pruning ok={t.get('ok')} "
                      f"({row['wall_s']:.0f} s)", flush=True)
                write_outputs(names)

        todo = [n for n in names if n not in done]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, todo))
    write_outputs(names)


if __name__ == "__main__":
    main()
