"""Params and MACs kept at 30% channel pruning, torchslim vs Torch-Pruning, in one run.

For the torchvision classification zoo and a timm list (random weights), both tools prune 30%
of the output channels of every Conv2d/Linear but the classifier:

* torchslim: ``auto_set_dependency_group_ids`` + ``L1NormPruner`` then ``ModelSpeedup``
  (which checks shrunk == masked outputs; the row also checks the output depends on the input,
  so the check is not vacuous);
* Torch-Pruning: ``MetaPruner(importance=MagnitudeImportance(p=1), pruning_ratio=0.3)``.

Each model runs in its own subprocess (1 thread, ``nice``, a time limit), both tools in the same
process on the same random weights. Raw rows go to ``results/speedup2_kept.json``, the table to
``results/speedup2_kept.md``.

    python benchmarks/speedup2_kept.py                 # a family sample + timm (--all: whole zoo)
    python benchmarks/speedup2_kept.py --only resnet18,timm:resnet50 --size 64
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# one or two of every torchvision family, smallest first (the whole zoo takes hours on a shared
# 2-core machine: --all runs it)
ZOO = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "mobilenet_v3_small", "squeezenet1_1", "mnasnet0_5",
       "resnext50_32x4d", "regnet_y_400mf", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "resnet18",
       "regnet_x_400mf", "googlenet", "resnet50", "densenet121", "convnext_tiny", "vit_b_16", "regnet_y_800mf",
       "inception_v3", "efficientnet_v2_s", "swin_t", "alexnet", "vgg11_bn", "wide_resnet50_2"]
# the timm list: resnet, efficientnet, convnext, regnet, mobilevitv2, vit (a small and a usual size each)
TIMM = ["resnet18", "resnet50", "efficientnet_b0", "efficientnet_lite0", "regnetx_004", "regnety_008", "convnext_atto",
        "convnext_tiny", "mobilevitv2_050", "vit_tiny_patch16_224", "vit_small_patch16_224"]
SKIP = {"vit_h_14": "632M params", "regnet_y_128gf": "645M params", "regnet_y_32gf": "145M params",
        "vit_l_16": "304M params", "vit_l_32": "306M params", "regnet_y_16gf": "84M params"}
def op_types(model) -> tuple[str, ...]:
    """Conv2d and Linear, and nn.MultiheadAttention's out_proj (a Linear subclass of its own name,
    which Torch-Pruning prunes too) where the model has one."""
    extra = {type(m).__name__ for m in model.modules()} & {"NonDynamicallyQuantizableLinear"}
    return ("Conv2d", "Linear", *sorted(extra))
NORMALISED = ("vit", "swin", "convnext", "maxvit", "mobilevit")  # LayerNorm'd residual streams


def build(name: str, size: int):
    import torch

    if name.startswith("timm:"):
        import timm

        kwargs = {"img_size": size} if "vit_" in name and "mobilevit" not in name else {}
        return timm.create_model(name[5:], pretrained=False, **kwargs).eval(), size
    import torchvision

    kwargs = {}
    if name.startswith("vit_"):
        kwargs["image_size"] = size
    if name.startswith("maxvit"):
        size = 224  # its window partition needs 224
    if name.startswith("inception"):
        size = max(size, 128)  # its stem needs 75 pixels, its auxiliary head (run in calibration) more
    return torchvision.models.get_model(name, weights=None, **kwargs).eval(), size


def calibrate(model, size: int) -> None:
    """BatchNorm statistics from two random batches: random-init nets often give outputs that
    ignore the input otherwise, and an equality check on those would prove nothing."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    if norms:
        # auxiliary heads run only in training and may not fit a small input: detached meanwhile
        aux = {n: m for n, m in model.named_children() if "aux" in n.lower()}
        for n in aux:
            setattr(model, n, None)
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(2, 3, size, size))
        model.eval()
        for n, m in aux.items():
            setattr(model, n, m)
    with torch.no_grad():  # zero-initialised heads (torchvision's ViT) give constant outputs
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and not bool(m.weight.any()):
                m.weight.normal_(0, m.in_features ** -0.5)


def classifier_name(model) -> str:
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]


def run_one(name: str, size: int, tp_limit: int) -> dict:
    import signal

    import torch

    from torchslim.utils.metrics import count_params

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense, size = build(name, size)
    calibrate(dense, size)
    x = torch.randn(1, 3, size, size)
    cls = classifier_name(dense)
    row: dict = {"model": name, "size": size, "params": count_params(dense), "macs": macs_of(dense, x),
                 **shares(dense, x, cls)}
    try:
        sys.path.insert(0, str(HERE))
        from speedup_common import prune_and_speedup

        model = copy.deepcopy(dense)
        t0 = time.perf_counter()
        _, speedup = prune_and_speedup(model, x, 0.3, cls, op_types=op_types(dense))
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            out, other = model(x), model(torch.randn_like(x))
        row["torchslim"] = {"ok": True, "params": count_params(model) / row["params"],
                            "macs": macs_of(model, x) / row["macs"], "s": seconds,
                            "max_abs_diff": speedup.report.max_abs_diff,
                            "depends_on_input": not torch.allclose(out, other),
                            "barriers": len(speedup.report.barriers), "shortfalls": len(speedup.report.shortfalls())}
    except Exception as exc:  # recorded: the table lists every failure
        row["torchslim"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if any(k in name for k in NORMALISED):
        row["narrowed"] = narrowed_row(dense, x, cls, row)

    def give_up(signum, frame):
        raise TimeoutError(f"did not finish within {tp_limit} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(tp_limit)
    try:
        import torch_pruning as tp

        model = copy.deepcopy(dense)
        t0 = time.perf_counter()
        tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.3,
                             ignored_layers=[model.get_submodule(cls)]).step()
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            model(x)
        row["torch_pruning"] = {"ok": True, "params": count_params(model) / row["params"],
                                "macs": macs_of(model, x) / row["macs"], "s": seconds}
    except Exception as exc:
        row["torch_pruning"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        signal.alarm(0)
    return row


def narrowed_row(dense, x, cls: str, row: dict) -> dict:
    """torchslim with narrow_normalized=True on both sides: params kept and how far the shrunk
    model is from the masked one (max |difference| / output spread across inputs)."""
    import warnings

    import torch

    from speedup_common import prune_and_speedup
    from torchslim.utils.metrics import count_params

    try:
        model = copy.deepcopy(dense)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deviation warning: recorded below instead
            _, speedup = prune_and_speedup(model, x, 0.3, cls, narrow_normalized=True, op_types=op_types(dense))
        with torch.no_grad():
            out, other = model(x), model(torch.randn_like(x))
        report = speedup.report
        deviation = report.deviation or {}
        return {"ok": True, "params": count_params(model) / row["params"], "macs": macs_of(model, x) / row["macs"],
                "check": report.check.status if report.check is not None else None,
                "deviation_relative": deviation.get("relative", 0.0), "cause": deviation.get("cause", ""),
                "depends_on_input": not torch.allclose(out, other),
                "narrowed_norms": deviation.get("narrowed_layernorms", 0),
                "barriers": sorted({b.reason.split(" (")[0] for b in report.barriers})}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def render(rows: list[dict], meta: dict) -> str:
    lines = ["# Params and MACs kept at 30% channel pruning: torchslim vs Torch-Pruning", "",
             f"Generated by `benchmarks/speedup2_kept.py` from `results/speedup2_kept.json` ({meta['date']}, "
             f"torch {meta['torch']}, torch-pruning {meta['torch_pruning']}, input {meta['size']}px unless noted; "
             "machine shared with other jobs: times are indicative only). Both tools prune 30% of the output "
             "channels of every Conv2d/Linear (MultiheadAttention's out_proj included) but the classifier (L1 magnitude), "
             "same random weights. "
             "torchslim's shrunk model is checked equal to the masked one, on outputs that depend on the input. "
             "*floor*: what the model keeps if every pruned layer keeps 0.7 x 0.7 = 0.49 of its params, the "
             "classifier 0.7 (its inputs only) and layers the forward never calls (auxiliary heads) all. "
             "*narrowed*: torchslim with `narrow_normalized=True` (LayerNorm'd streams narrowed, as Torch-Pruning "
             "does); *deviation*: the narrowed model's largest output difference from the masked model, in units "
             "of the output's spread across inputs.",
             "", "| model | torchslim params | TP params | torchslim MACs | TP MACs | Δ params | floor | outputs equal "
             "| narrowed params | narrowed MACs | deviation |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        ours, theirs, narrow = r.get("torchslim", {}), r.get("torch_pruning", {}), r.get("narrowed")
        if "skipped" in r or "crashed" in r:
            lines.append(f"| {r['model']} | {r.get('skipped') or r.get('crashed')} | | | | | | | | | |")
            continue

        def fmt(side: dict, key: str) -> str:
            return f"{side[key]:.3f}" if side.get("ok") else "fails"

        delta = f"{ours['params'] - theirs['params']:+.3f}" if ours.get("ok") and theirs.get("ok") else ""
        equal = ("yes" if ours.get("depends_on_input") else "yes (output ignores input)") if ours.get("ok") else \
            ours.get("error", "")[:80]
        narrowed = ["", "", ""]
        if narrow is not None:
            narrowed = ([fmt(narrow, "params"), fmt(narrow, "macs"), f"{narrow['deviation_relative']:.3g}"]
                        if narrow.get("ok") else [narrow.get("error", "")[:60], "", ""])
        lines.append(f"| {r['model']} | {fmt(ours, 'params')} | {fmt(theirs, 'params')} | {fmt(ours, 'macs')} | "
                     f"{fmt(theirs, 'macs')} | {delta} | {floor(r):.3f} | {equal} | {' | '.join(narrowed)} |")
    both = [r for r in rows if r.get("torchslim", {}).get("ok") and r.get("torch_pruning", {}).get("ok")]
    cnn = [r for r in both if not any(k in r["model"] for k in NORMALISED)]
    worse = [r["model"] for r in cnn if r["torchslim"]["params"] > r["torch_pruning"]["params"] + 0.03]
    over = [r for r in rows if r.get("torchslim", {}).get("ok") and r["torchslim"]["params"] > 0.60
            and not any(k in r["model"] for k in NORMALISED)]
    lines += ["", f"{len(rows)} models; torchslim shrinks {sum(bool(r.get('torchslim', {}).get('ok')) for r in rows)}, "
              f"Torch-Pruning {sum(bool(r.get('torch_pruning', {}).get('ok')) for r in rows)}. "
              f"CNNs where both succeed: {len(cnn)}; torchslim keeps > Torch-Pruning + 0.03 of the params on: "
              f"{', '.join(worse) or 'none'}. Keeps > 0.60 (without LayerNorm'd streams): "
              + (", ".join(f"{r['model']} ({r['torchslim']['params']:.3f}; its floor {floor(r):.3f}: classifier "
                           f"{r['classifier_share']:.2f} and never-called layers {r['unused_share']:.2f} of its params)"
                           for r in over) or "none") + "."]
    narrowed = [r for r in rows if (r.get("narrowed") or {}).get("ok")]
    if narrowed:
        lines += ["", "With `narrow_normalized=True`: " + "; ".join(
            f"{r['model']} {r['torchslim']['params']:.3f} → {r['narrowed']['params']:.3f}"
            + (f" (Torch-Pruning {r['torch_pruning']['params']:.3f})" if r.get("torch_pruning", {}).get("ok") else "")
            + ("" if r["narrowed"]["narrowed_norms"] else " (stream kept whole"
               + (": " + "; ".join(r["narrowed"].get("barriers", [])) if r["narrowed"].get("barriers") else "") + ")")
            for r in narrowed) + "."]
    return "\n".join(lines) + "\n"


def floor(row: dict) -> float:
    """Params kept if every pruned layer keeps 0.49, the classifier 0.7, never-called layers 1."""
    cls, unused = row.get("classifier_share", 0.0), row.get("unused_share", 0.0)
    return unused + 0.7 * cls + 0.49 * (1.0 - cls - unused)


def macs_of(model, x) -> int:
    """MACs as torch's FlopCounterMode counts them, with every nn.MultiheadAttention swapped for
    torchslim's SlimMultiheadAttention (same arithmetic): the former's fused path counts as 0."""
    import torch

    from torchslim.speedup.attention import SlimMultiheadAttention
    from torchslim.utils.metrics import count_macs

    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for attr, child in list(parent.named_children()):
            if type(child) is torch.nn.MultiheadAttention and child._qkv_same_embed_dim:
                setattr(parent, attr, SlimMultiheadAttention(child, torch.arange(child.num_heads)))
    return count_macs(model, x)


def shares(model, x, cls: str) -> dict:
    """Shares of the params in the classifier and in leaf modules the forward never calls."""
    import torch

    called: set = set()
    handles = [m.register_forward_hook(lambda m, i, o: called.add(m)) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    total = sum(p.numel() for p in model.parameters())
    parent = {c: m for m in model.modules() for c in m.children()}
    # a leaf neither called nor inside a called module (MultiheadAttention reads out_proj's weights)
    unused = sum(p.numel() for m in model.modules() if m not in called and parent.get(m) not in called
                 and not list(m.children()) for p in m.parameters(recurse=False))
    return {"classifier_share": sum(p.numel() for p in model.get_submodule(cls).parameters()) / total,
            "unused_share": unused / total}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one")
    parser.add_argument("--only", help="comma-separated; timm models as timm:NAME")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per model (both tools)")
    parser.add_argument("--render", action="store_true", help="only re-render the markdown from the JSON")
    parser.add_argument("--all", action="store_true", help="the whole torchvision classification zoo")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the JSON")
    args = parser.parse_args()
    if args.one:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        print("ROW " + json.dumps(run_one(args.one, args.size, max(args.timeout // 2, 30))), flush=True)
        return
    raw = RESULTS / "speedup2_kept.json"
    if args.render:
        blob = json.loads(raw.read_text())
        (RESULTS / "speedup2_kept.md").write_text(render(blob["rows"], blob["meta"]))
        return
    import torch
    import torchvision

    zoo = torchvision.models.list_models(module=torchvision.models) if args.all else ZOO
    names = args.only.split(",") if args.only else zoo + [f"timm:{n}" for n in TIMM]
    try:
        import torch_pruning

        tp_version = torch_pruning.__version__
    except ImportError:
        tp_version = "missing"
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "torch_pruning": tp_version, "size": args.size, "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared"}
    rows = []
    if args.resume and raw.exists():  # keep finished rows (same settings), run the rest
        rows = [r for r in json.loads(raw.read_text())["rows"] if "crashed" not in r]
    done = {r["model"] for r in rows}
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    for name in [n for n in names if n not in done]:
        if name in SKIP:
            rows.append({"model": name, "skipped": f"skipped ({SKIP[name]})"})
            continue
        t0 = time.perf_counter()
        cmd = ["nice", "-n", "10", sys.executable, __file__, "--one", name, "--size", str(args.size),
               "--timeout", str(args.timeout)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            found = [line for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            row = json.loads(found[-1][4:]) if found else {
                "model": name, "crashed": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
        except subprocess.TimeoutExpired:
            row = {"model": name, "crashed": f"timeout after {args.timeout} s"}
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{name}: {json.dumps({k: row.get(k) for k in ('torchslim', 'torch_pruning', 'crashed')})[:300]}",
              flush=True)
        RESULTS.mkdir(exist_ok=True)
        raw.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (RESULTS / "speedup2_kept.md").write_text(render(rows, meta))


if __name__ == "__main__":
    main()
