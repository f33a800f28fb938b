"""int8 latency on CPU: our deployed int8 models vs every fp32 baseline and every stock int8 flow.

Rows per model and batch, all in one process, 2 threads, timed in interleaved rounds (median):

* fp32: torch eager; torch with BatchNorm folded and channels_last (CNNs); onnxruntime fp32;
* stock int8 (same float model, own calibration on the same batches): onnxruntime
  ``quantize_static`` (QDQ, per-channel U8S8), onnxruntime ``quantize_dynamic``, torch PT2E
  (``X86InductorQuantizer`` default config, compiled by inductor; CNNs, needs torchao);
* ours: PtqQuantizer calibration deployed with ``backend='x86'`` and ``'onnxruntime'`` (static, and
  for transformers also dynamic: ``'dynamic': True`` inputs).

Models: ResNet-18 and MobileNetV2 (224x224, batch 1 and 32), BERT-base (sequence 128, batch 8) and
torchvision ViT-B/16 (batch 8); random weights, BatchNorm statistics from random batches. Each row
carries its relative logit error vs fp32 eager. Writes ``results/quantization_int8.json`` and renders
``results/quantization_int8.md`` (``results/quick/`` with ``--quick``). Run: ``nice -n 10 python benchmarks/int8_latency.py [--quick]``
(``--quick``: CNNs at batch 1 only, no PT2E compile; ``--full-size``: BERT-base and ViT-B/16 instead
of their 4-layer, 256-wide versions).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torchslim.quantization import PtqQuantizer, deploy  # noqa: E402
from torchslim.quantization.int8.common import first_output  # noqa: E402
from torchslim.utils.onnx_export import export_onnx  # noqa: E402

RESULTS_DIR = Path(__file__).parent / "results"
RESULTS = RESULTS_DIR / "quantization.md"  # quant_mnist.py's sections (write_section)
NAME = "quantization_int8"
THREADS = 2
ERROR_LIMIT = 0.1  # relative logit error vs fp32 a row must stay within to count as a contender
CNN_CONFIG = [
    {"op_types": ["Conv2d", "Linear"], "target_names": ["_input_"], "quant_dtype": "int8", "quant_scheme": "affine"},
    {"op_types": ["Conv2d", "Linear"], "target_names": ["weight"], "quant_dtype": "int8", "quant_scheme": "symmetric",
     "granularity": "per_channel"},
]
LINEAR_WEIGHT = {"op_types": ["Linear"], "target_names": ["weight"], "quant_dtype": "int8", "quant_scheme": "symmetric",
                 "granularity": "per_channel"}
LINEAR_STATIC = [LINEAR_WEIGHT, {"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "int8"}]
LINEAR_DYNAMIC = [LINEAR_WEIGHT, {"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "uint8",
                                  "dynamic": True}]
NOISE_REFERENCE = "fp32 with weights rounded to bfloat16 (noise reference, no int8)"
INPUT_GRID_REFERENCE = "fp32, only its input rounded to an 8-bit grid (noise reference, no int8 kernel)"
INPUT_NOISE_REFERENCE = "fp32, 0.1% Gaussian noise on its input (noise reference: error / 0.001 = noise gain)"
NOISE_LEVEL = 1e-3
ORDER = ["resnet18", "mobilenet_v2", "bert", "vit"]  # table order, whatever order the runs merged in
CONFIG = CNN_CONFIG  # kept for scripts importing it


# --- engines ---------------------------------------------------------------------------------------
def ort_session(path: Path, threads: int = THREADS):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_callable(path: Path) -> Callable:
    session = ort_session(path)
    names = [i.name for i in session.get_inputs()]
    return lambda *args: torch.from_numpy(session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0])


class Reader:
    """onnxruntime calibration data reader over our calibration batches."""

    def __init__(self, names: list[str], batches: list[tuple]) -> None:
        self.items = iter([{n: a.numpy() for n, a in zip(names, b)} for b in batches])

    def get_next(self):
        return next(self.items, None)


def ort_static_anchor(fp32: Path, calib: list[tuple], out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from torchslim.quantization.int8.ort_static import pre_process

    pre = out.with_suffix(".pre.onnx")
    pre_process(str(fp32), str(pre))
    names = [i.name for i in onnx.load(str(pre)).graph.input]
    quantize_static(str(pre), str(out), Reader(names, calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def ort_dynamic_anchor(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    return out


def _unshare_module_partitions(graph_module: torch.fx.GraphModule) -> None:
    """torchvision's ResNet calls one ``self.relu`` twice per block; PT2E's partitioner then sees one
    ReLU partition with two outputs and gives up. Give each call its own partition key."""
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack and node.op == "call_function":
            key = list(stack)[-1]
            fqn, cls = stack[key]
            stack[key] = (f"{fqn}#{node.name}", cls)


def pt2e_anchor(model: torch.nn.Module, x: torch.Tensor, calib: list[tuple]) -> Callable:
    """torch's own PT2E int8 flow: X86InductorQuantizer default config, inductor with freezing."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    import torch._inductor.config as inductor_config

    exported = torch.export.export(copy.deepcopy(model).eval(), (x,)).module()
    _unshare_module_partitions(exported)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    pool = torch.cat([b[0] for b in calib])
    with torch.no_grad():
        for i in range(max(1, len(pool) // len(x))):
            batch = pool[(i * len(x)) % len(pool):][: len(x)]
            prepared(batch if len(batch) == len(x) else x)
    converted = convert_pt2e(prepared)
    inductor_config.freezing = True
    compiled = torch.compile(converted)
    with torch.no_grad():
        compiled(x)
    return compiled


# --- measuring -------------------------------------------------------------------------------------
def interleaved_latency(runs: dict[str, Callable], warmup: int, rounds: int, threads: int = THREADS) -> dict[str, float]:
    """Median ms per variant, timing the variants round-robin so that load changes on a shared
    machine hit all of them alike (warm-up calls excluded, threads pinned)."""
    torch.set_num_threads(threads)
    samples: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for fn in runs.values():
            for _ in range(warmup):
                fn()
        for _ in range(rounds):
            for key, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                samples[key].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in samples.items()}


@torch.no_grad()
def set_bn_statistics(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    """Give a randomly initialised model real BatchNorm statistics (else activations of a deep random
    MobileNetV2 vanish to ~1e-8 and int8 comparisons mean nothing); leaves it in eval mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches
    model.train()
    for x in batches:
        model(x)
    model.eval()


def rel_err(out: Any, ref: Any) -> float:
    out, ref = first_output(out).float(), first_output(ref).float()
    return float((out - ref).norm() / ref.norm())


# --- models ----------------------------------------------------------------------------------------
class Logits(torch.nn.Module):
    """A transformers model returning its logits tensor (what ONNX export and PT2E expect)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(*args).logits


def build_model(name: str, reduced: bool) -> tuple[torch.nn.Module, Callable[[int, int], tuple], str, str]:
    """(model, input maker (batch, seed) -> args, kind, description)."""
    torch.manual_seed(0)
    if name in ("resnet18", "mobilenet_v2"):
        import torchvision

        model = getattr(torchvision.models, name)()
        make = lambda b, s: (torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(s)),)  # noqa: E731
        set_bn_statistics(model, [make(8, 100)[0], make(8, 101)[0]])
        return model.eval(), make, "cnn", f"{name}, 224x224"
    if name == "bert":
        import transformers

        size = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024) if reduced else {}
        config = transformers.BertConfig(num_labels=2, **size)
        model = Logits(transformers.BertForSequenceClassification(config)).eval()
        seq = 128
        make = lambda b, s: (torch.randint(0, config.vocab_size, (b, seq), generator=torch.Generator().manual_seed(s)),)  # noqa: E731
        return model, make, "transformer", f"BERT{'-mini (4 layers, 256 wide)' if reduced else '-base'}, sequence {seq}"
    if name == "vit":
        import torchvision

        kwargs = dict(image_size=224, patch_size=16, num_layers=4, num_heads=4, hidden_dim=256, mlp_dim=1024) if reduced else {}
        model = (torchvision.models.VisionTransformer(**kwargs) if reduced else torchvision.models.vit_b_16()).eval()
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head: all-zero logits
        make = lambda b, s: (torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(s)),)  # noqa: E731
        return model, make, "transformer", f"torchvision ViT{'-mini (patch 16, 4 layers, 256 wide)' if reduced else '-B/16'}, 224x224"
    raise SystemExit(f"unknown model {name!r}")


def attempt(label: str, fn: Callable, errors: dict[str, str]) -> Any:
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn()
    except Exception as exc:  # noqa: BLE001 - a flow that does not build is a row with its reason
        errors[label] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
        print(f"  {label}: FAILED {errors[label]}", flush=True)
        if os.environ.get("INT8_BENCH_DEBUG"):
            traceback.print_exc()
        return None
    print(f"  {label}: built in {time.perf_counter() - t0:.1f} s", flush=True)
    return result


def bench_model(name: str, batches: list[int], tmp: Path, rounds: int, reduced: bool, pt2e: bool) -> list[dict]:
    model, make, kind, description = build_model(name, reduced)
    calib = [make(8, 200 + i) for i in range(2)]
    print(f"{description}: building", flush=True)
    errors: dict[str, str] = {}
    fp32_onnx = export_onnx(model, calib[0], tmp / f"{name}_fp32.onnx")
    anchors = {
        "onnxruntime quantize_static": attempt("onnxruntime quantize_static", lambda: ort_callable(
            ort_static_anchor(fp32_onnx, calib, tmp / f"{name}_static.onnx")), errors),
        "onnxruntime quantize_dynamic": attempt("onnxruntime quantize_dynamic", lambda: ort_callable(
            ort_dynamic_anchor(fp32_onnx, tmp / f"{name}_dynamic.onnx")), errors),
    }
    ours = {}
    fake = {}
    configs = {"static": CNN_CONFIG if kind == "cnn" else LINEAR_STATIC}
    if kind == "transformer":
        configs["dynamic"] = LINEAR_DYNAMIC
    for mode, config in configs.items():
        fq = copy.deepcopy(model)
        _, calibration = PtqQuantizer(fq, config, bn_folding=kind == "cnn").compress(calib)
        fake[mode] = fq.eval()
        for backend in ("x86", "onnxruntime"):
            label = f"ours {mode} int8, {backend}"
            ours[label] = attempt(label, lambda: deploy(fq, calibration, calib[0], backend=backend), errors)
        ours = {k: v for k, v in ours.items() if v is not None}
    fp32_ort = ort_callable(fp32_onnx)
    folded = None
    if kind == "cnn":
        from torch.fx.experimental.optimization import fuse

        folded = fuse(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    rows = []
    for batch in batches:
        args = make(batch, 1)
        with torch.no_grad():
            ref = model(*args)
        runs: dict[str, Callable] = {"torch fp32 eager": lambda: model(*args)}
        if folded is not None:
            cl = tuple(a.contiguous(memory_format=torch.channels_last) for a in args)
            runs["torch fp32, BN folded, channels_last"] = lambda: folded(*cl)
        runs["onnxruntime fp32"] = lambda: fp32_ort(*args)
        for label, fn in anchors.items():
            if fn is not None:
                runs[label] = (lambda fn=fn: fn(*args))
        if pt2e and kind == "cnn":
            compiled = attempt(f"torch PT2E x86 int8 + inductor (batch {batch})", lambda: pt2e_anchor(model, args[0], calib), errors)
            if compiled is not None:
                runs["torch PT2E x86 int8 + inductor"] = lambda: compiled(*args)
        for label, m in ours.items():
            runs[label] = (lambda m=m: m(*args))
        with torch.no_grad():
            errs = {label: rel_err(fn(), ref) for label, fn in runs.items()}
            fake_errs = {mode: rel_err(fq(*args), ref) for mode, fq in fake.items()}
            ours_vs_fake = {label: rel_err(runs[label](), fake[label.split()[1]](*args)) for label in ours}
        times = interleaved_latency(runs, warmup=1, rounds=rounds)
        for label, ms in times.items():
            group = "fp32" if "fp32" in label else "ours" if label.startswith("ours") else "stock int8"
            rows.append({"model": description, "key": name, "batch": batch, "variant": label, "group": group, "ms": ms,
                         "rel_err_fp32": errs[label], "rel_err_fake_quant": ours_vs_fake.get(label)})
        for mode, err in fake_errs.items():
            rows.append({"model": description, "key": name, "batch": batch, "variant": f"fake-quant model ({mode}, reference)",
                         "group": "reference", "ms": None, "rel_err_fp32": err, "rel_err_fake_quant": None})
        if kind == "cnn":
            rows += noise_references(model, args, ref, description, name, batch)
        for label, reason in errors.items():
            if not any(r["variant"] == label and r["batch"] == batch for r in rows) and "(batch" not in label:
                rows.append({"model": description, "key": name, "batch": batch, "variant": label, "group": "failed",
                             "ms": None, "rel_err_fp32": None, "rel_err_fake_quant": None, "error": reason})
        print(f"{description} batch {batch}: " + ", ".join(f"{k}={v:.1f}ms" for k, v in times.items()), flush=True)
    return rows


@torch.no_grad()
def noise_references(model: torch.nn.Module, args: tuple, ref: torch.Tensor, description: str, key: str,
                     batch: int) -> list[dict]:
    """How much the float network itself amplifies small perturbations (no int8 kernel involved):
    its weights rounded to bfloat16; only its input rounded to an 8-bit grid spanning the batch's range
    (what any int8 first layer does first); 0.1% Gaussian input noise (the noise gain is error / 0.001)."""
    x = args[0]
    rounded = copy.deepcopy(model)
    for p in rounded.parameters():
        p.copy_(p.to(torch.bfloat16).float())
    step = float(x.max() - x.min()) / 255
    on_grid = torch.round((x - x.min()) / step) * step + x.min()
    noisy = x + NOISE_LEVEL * x.std() * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    return [{"model": description, "key": key, "batch": batch, "variant": variant, "group": "reference", "ms": None,
             "rel_err_fp32": rel_err(out, ref), "rel_err_fake_quant": None}
            for variant, out in ((NOISE_REFERENCE, rounded(*args)), (INPUT_GRID_REFERENCE, model(on_grid)),
                                 (INPUT_NOISE_REFERENCE, model(noisy)))]


def references_only(names: list[str]) -> None:
    """Recompute the noise-reference rows of the CNNs in the existing JSON (no timing: any machine load)."""
    json_path = RESULTS_DIR / f"{NAME}.json"
    data = json.loads(json_path.read_text())
    variants = (NOISE_REFERENCE, INPUT_GRID_REFERENCE, INPUT_NOISE_REFERENCE)
    for name in names:
        model, make, kind, description = build_model(name, reduced=True)
        if kind != "cnn":
            continue
        batches = sorted({r["batch"] for r in data["rows"] if r["key"] == name})
        data["rows"] = [r for r in data["rows"] if not (r["key"] == name and r["variant"] in variants)]
        for batch in batches:
            args = make(batch, 1)
            with torch.no_grad():
                ref = model(*args)
            new = noise_references(model, args, ref, description, name, batch)
            last = max(i for i, r in enumerate(data["rows"]) if r["key"] == name and r["batch"] == batch)
            data["rows"][last + 1:last + 1] = new
            print(f"{description} batch {batch}: " + ", ".join(f"{r['variant']}: {r['rel_err_fp32']:.4f}" for r in new))
    data["summary"] = summarize(data["rows"])
    json_path.write_text(json.dumps(data, indent=1))
    json_path.with_suffix(".md").write_text(to_markdown(data))


# --- rendering -------------------------------------------------------------------------------------
def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["model"], r["batch"]) for r in rows):
        timed = [r for r in rows if (r["model"], r["batch"]) == key and r["ms"] is not None]
        within = [r for r in timed if r["rel_err_fp32"] is not None and r["rel_err_fp32"] <= ERROR_LIMIT]

        def pick(group: str) -> tuple[dict | None, bool]:
            """Fastest row of ``group`` within the error limit, else the fastest over it (flagged)."""
            for pool, over in ((within, False), (timed, True)):
                best = min((r for r in pool if r["group"] == group), key=lambda r: r["ms"], default=None)
                if best is not None:
                    return best, over
            return None, False

        (fp32, _), (stock, stock_over), (ours, ours_over) = pick("fp32"), pick("stock int8"), pick("ours")
        if fp32 is None or ours is None:
            continue
        out.append({"model": key[0], "batch": key[1], "best_fp32": fp32["variant"], "best_fp32_ms": fp32["ms"],
                    "best_stock": stock and stock["variant"] + (" ✗" if stock_over else ""),
                    "best_stock_ms": stock and stock["ms"], "best_ours": ours["variant"] + (" ✗" if ours_over else ""),
                    "best_ours_ms": ours["ms"], "vs_fp32": fp32["ms"] / ours["ms"],
                    "vs_stock": stock["ms"] / ours["ms"] if stock else None, "ours_rel_err": ours["rel_err_fp32"]})
    return out


def parts(meta: dict) -> list[dict]:
    """The runs whose rows the table holds (``--merge`` adds one per run; older files have one)."""
    return meta.get("parts") or [{"models": ["all"], "load_start": meta["load_start"], "load_end": meta["load_end"],
                                  "rounds": meta["rounds"], "full_size": meta["full_size"]}]


def noise_paragraph(rows: list[dict]) -> str:
    """Why a row is over the limit when the float network itself amplifies noise (from its reference rows)."""
    text = []
    for key in dict.fromkeys(r["key"] for r in rows):
        largest = max(r["batch"] for r in rows if r["key"] == key)
        ref = {r["variant"]: r["rel_err_fp32"] for r in rows
               if r["key"] == key and r["group"] == "reference" and r["batch"] == largest}
        if INPUT_NOISE_REFERENCE not in ref:
            continue
        model = next(r["model"] for r in rows if r["key"] == key)
        text.append(f"{model}: noise gain {ref[INPUT_NOISE_REFERENCE] / NOISE_LEVEL:.1f}x, input alone on an 8-bit grid "
                    f"{ref.get(INPUT_GRID_REFERENCE, float('nan')):.3f}, bfloat16 weights {ref.get(NOISE_REFERENCE, float('nan')):.3f}")
    if not text:
        return ""
    return (" How much each random-weight CNN amplifies perturbations by itself, with no int8 kernel involved (the "
            "noise-reference rows, largest batch): " + "; ".join(text) + ". A network whose input rounded to 8 bits "
            f"already moves its logits by more than {ERROR_LIMIT} has no int8 model within {ERROR_LIMIT}: every int8 flow, "
            "the fake-quant simulation included, lands near the same error there (BatchNorm calibrated on random data "
            "makes a deep random network chaotic; a trained one is not — see quantization_int8_mnist.md).")


def to_markdown(data: dict) -> str:
    def fmt(v, pattern):
        return "" if v is None else pattern.format(v)

    meta = data["meta"]
    lines = [
        "## int8 latency: ours vs every fp32 baseline and stock int8 flow (benchmarks/int8_latency.py)", "",
        f"**Shared machine**: {meta['cores']} cores shared with other engineers' jobs, so absolute latencies are noisy; "
        f"variants are timed in interleaved rounds and compared as ratios within one run of each model. "
        f"torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, {THREADS} threads, random weights "
        f"(BatchNorm statistics from random batches){', quick mode' if meta['quick'] else ''}. Runs: "
        + "; ".join(f"{', '.join(p['models'])}: load average {p['load_start']:.1f} at the start, {p['load_end']:.1f} at "
                    f"the end, median of {p['rounds']} rounds{', transformers at full size' if p['full_size'] else ''}"
                    for p in parts(meta)) + ".",
        "", "### Summary", "",
        f"Best row of each kind among those within relative logit error {ERROR_LIMIT} of fp32 eager; ✗: no row of that "
        "kind is within it, the fastest is shown." + noise_paragraph(data["rows"]), "",
        "| model | batch | best fp32 | best stock int8 | ours (best backend) | ours vs best fp32 | ours vs best stock int8 | ours rel. logit error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in data["summary"]:
        lines.append(f"| {s['model']} | {s['batch']} | {s['best_fp32']} {s['best_fp32_ms']:.1f} ms | "
                     f"{fmt(s['best_stock'], '{}')} {fmt(s['best_stock_ms'], '{:.1f} ms')} | {s['best_ours']} "
                     f"{s['best_ours_ms']:.1f} ms | {s['vs_fp32']:.2f}x | {fmt(s['vs_stock'], '{:.2f}x')} | "
                     f"{s['ours_rel_err']:.4f} |")
    goal = next((s for s in data["summary"] if s["model"].startswith("resnet18") and s["batch"] == 32), None)
    if goal:
        lines += ["", f"Goal ≥ 3.5x the best fp32 row on ResNet-18 batch 32: **{goal['vs_fp32']:.2f}x — "
                      f"{'met' if goal['vs_fp32'] >= 3.5 else 'not met'}**."]
    lines += ["", "### All rows", "",
              "| model | batch | variant | latency ms | vs torch fp32 eager | vs best fp32 | rel. logit error vs fp32 | rel. error vs fake-quant |",
              "|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        same = [x for x in data["rows"] if x["model"] == r["model"] and x["batch"] == r["batch"]]
        eager = next((x["ms"] for x in same if x["variant"] == "torch fp32 eager"), None)
        best = min((x["ms"] for x in same if x["group"] == "fp32"), default=None)
        speed = lambda base: base / r["ms"] if base and r["ms"] else None  # noqa: E731
        variant = r["variant"] + (f" — failed: {r['error']}" if r.get("error") else "")
        if r["rel_err_fp32"] is not None and r["rel_err_fp32"] > ERROR_LIMIT:
            variant += f" ✗ (error > {ERROR_LIMIT})"
        lines.append(f"| {r['model']} | {r['batch']} | {variant} | {fmt(r['ms'], '{:.1f}')} | {fmt(speed(eager), '{:.2f}x')} | "
                     f"{fmt(speed(best), '{:.2f}x')} | {fmt(r['rel_err_fp32'], '{:.4f}')} | {fmt(r['rel_err_fake_quant'], '{:.4f}')} |")
    return "\n".join(lines) + "\n"


def write_section(marker: str, body: str, path: Path = RESULTS) -> None:
    """Replace the ``<!-- marker -->`` section of a results file (other sections are kept)."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = path.read_text() if path.exists() else "# Quantization results\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CNNs at batch 1, no PT2E compile")
    parser.add_argument("--models", default="resnet18,mobilenet_v2,bert,vit")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--full-size", action="store_true",
                        help="BERT-base and ViT-B/16 (default: 4-layer, 256-wide versions, which fit a run of minutes "
                             "on 2 shared cores)")
    parser.add_argument("--no-pt2e", action="store_true", help="skip torch's PT2E + inductor row (slow to compile)")
    parser.add_argument("--merge", action="store_true", help="keep rows of models not run now from the existing JSON")
    parser.add_argument("--render", action="store_true", help="only re-render the markdown from the existing JSON")
    parser.add_argument("--references-only", action="store_true",
                        help="recompute only the CNNs' noise-reference rows (untimed) in the existing JSON")
    args = parser.parse_args()
    if args.references_only:
        torch.set_num_threads(THREADS)
        references_only(args.models.split(","))
        return
    if args.render:
        json_path = (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR) / f"{NAME}.json"
        data = json.loads(json_path.read_text())
        data["summary"] = summarize(data["rows"])
        json_path.write_text(json.dumps(data, indent=1))
        json_path.with_suffix(".md").write_text(to_markdown(data))
        return
    torch.set_num_threads(THREADS)
    rounds = args.rounds or (3 if args.quick else 5)
    pt2e = not (args.quick or args.no_pt2e)
    try:
        import torchao  # noqa: F401
    except ImportError:
        pt2e = False
        print("torchao not installed: no PT2E row", flush=True)
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            batches = [8] if name in ("bert", "vit") else [1] if args.quick else [1, 32]
            rows += bench_model(name, batches, Path(tmp), rounds, not args.full_size, pt2e)
    out_dir = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR  # a smoke run never replaces the real table
    json_path = out_dir / f"{NAME}.json"
    import onnxruntime

    part = {"models": args.models.split(","), "load_start": load_start, "load_end": os.getloadavg()[0],
            "rounds": rounds, "full_size": args.full_size}
    previous: list[dict] = []
    if args.merge and json_path.exists():
        done = {r["key"] for r in rows}
        old = json.loads(json_path.read_text())
        rows = [r for r in old["rows"] if r["key"] not in done] + rows
        previous = [{**p, "models": [m for m in p["models"] if m not in done]} for p in parts(old["meta"])
                    if not set(p["models"]) <= done]
    rows.sort(key=lambda r: ORDER.index(r["key"]) if r["key"] in ORDER else len(ORDER))
    data = {"meta": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "machine": platform.machine(),
                     "cores": os.cpu_count(), "threads": THREADS, "rounds": rounds, "quick": args.quick, "full_size": args.full_size,
                     "load_start": load_start, "load_end": part["load_end"], "shared_machine": True,
                     "parts": previous + [part]},
            "rows": rows}
    data["summary"] = summarize(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1))
    markdown = to_markdown(data)
    (out_dir / f"{NAME}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    np.random.seed(0)
    main()
