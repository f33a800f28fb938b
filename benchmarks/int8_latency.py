"""int8 latency on CPU: our deployed int8 models vs fp32 and vs each engine's own int8 flow.

ResNet-18 and MobileNetV2 (random weights, 224x224), batch 1 and 32, 2 threads, in one run:

* torch fp32 eager, onnxruntime fp32 (BatchNorm statistics set from two random batches);
* ours: PtqQuantizer (int8 affine activations, per-channel symmetric int8 weights) calibrated
  on random batches, then ``deploy(..., backend='x86')`` and ``backend='onnxruntime'``;
* anchors on the same float model: torch's own FX x86 flow (default x86 qconfig) and
  onnxruntime's own ``quantize_static`` (QDQ, per-channel, U8S8).

Also checks our int8 outputs against the fake-quant model (relative error, argmax agreement).
Run: ``nice -n 10 python benchmarks/int8_latency.py`` (add ``--quick`` for batch 1 only).
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
import warnings
from pathlib import Path

import sys

if "--passive" in sys.argv:  # before torch loads OpenMP
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from torchslim.quantization import PtqQuantizer, deploy
from torchslim.utils.onnx_export import export_onnx

RESULTS = Path(__file__).parent / "results" / "quantization.md"
CONFIG = [
    {"op_types": ["Conv2d", "Linear"], "target_names": ["_input_"], "quant_dtype": "int8", "quant_scheme": "affine"},
    {"op_types": ["Conv2d", "Linear"], "target_names": ["weight"], "quant_dtype": "int8", "quant_scheme": "symmetric",
     "granularity": "per_channel"},
]


SPIN = True  # set by --passive: idle worker threads of both engines sleep instead of spinning


def ort_session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    if not SPIN:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(session, x: torch.Tensor):
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def torch_x86_anchor(model: torch.nn.Module, calib: list[torch.Tensor]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

        prepared = quantize_fx.prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (calib[0],))
        with torch.no_grad():
            for x in calib:
                prepared(x)
        return quantize_fx.convert_fx(prepared)


def ort_static_anchor(fp32_path: Path, calib: list[torch.Tensor], out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": x.numpy()} for x in calib])

        def get_next(self):
            return next(self.items, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def interleaved_latency(runs: dict, warmup: int, rounds: int, threads: int = 2) -> dict[str, float]:
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
    return {k: float(np.median(v)) for k, v in samples.items()}


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


def bench_model(name: str, build, batches: list[int], tmp: Path, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model = build()
    calib = [torch.randn(8, 3, 224, 224) for _ in range(2)]
    set_bn_statistics(model, calib)
    fp32_onnx = export_onnx(model, calib[0][:1], tmp / f"{name}_fp32.onnx")
    anchor_onnx = ort_static_anchor(fp32_onnx, calib, tmp / f"{name}_ort_static.onnx")
    anchor_x86 = torch_x86_anchor(model, calib)

    fq = copy.deepcopy(model)
    quantizer = PtqQuantizer(fq, CONFIG, bn_folding=True)  # weights quantized as the BN-folded int8 conv sees them
    _, calibration = quantizer.compress(calib)
    fq.eval()
    t0 = time.perf_counter()
    ours_x86 = deploy(fq, calibration, calib[0], backend="x86")
    build_x86 = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_ort = deploy(fq, calibration, calib[0], backend="onnxruntime", onnx_path=tmp / f"{name}_ours_qdq.onnx", spin=SPIN)
    build_ort = time.perf_counter() - t0
    auto = deploy(fq, calibration, calib[0][:1], spin=SPIN)
    print(f"{name}: deploy(backend='auto') on a batch-1 example picked {auto.auto_choice['chosen']} "
          f"({ {k: round(v['ms'], 1) for k, v in auto.auto_choice['timings'].items()} } ms)", flush=True)
    sessions = {"onnxruntime fp32": ort_session(fp32_onnx), "onnxruntime quantize_static (anchor)": ort_session(anchor_onnx)}

    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224)
        with torch.no_grad():
            ref, fp32_out = fq(x), model(x)
        outputs = {
            "fake-quant model (reference)": ref,
            "torch x86 int8 FX (anchor)": anchor_x86(x),
            "onnxruntime quantize_static (anchor)": torch.from_numpy(ort_runner(sessions["onnxruntime quantize_static (anchor)"], x)()[0]),
            "ours int8, x86 backend": ours_x86(x),
            "ours int8, onnxruntime backend": ours_ort(x),
        }
        agree = {label: (rel_err(out, fp32_out), rel_err(out, ref) if label.startswith("ours") else None,
                         float((out.argmax(1) == ref.argmax(1)).float().mean()) if label.startswith("ours") else None)
                 for label, out in outputs.items()}
        runs = {
            "torch fp32 eager": lambda: model(x),
            "onnxruntime fp32": ort_runner(sessions["onnxruntime fp32"], x),
            "torch x86 int8 FX (anchor)": lambda: anchor_x86(x),
            "onnxruntime quantize_static (anchor)": ort_runner(sessions["onnxruntime quantize_static (anchor)"], x),
            "ours int8, x86 backend": lambda: ours_x86(x),
            "ours int8, onnxruntime backend": lambda: ours_ort(x),
        }
        reps = repeats if batch == 1 else max(5, repeats // 4)
        times = interleaved_latency(runs, warmup=2 if batch > 1 else 5, rounds=reps)
        base, ort_base = times["torch fp32 eager"], times["onnxruntime fp32"]
        for label, ms in times.items():
            err = agree.get(label, (None, None, None))
            rows.append({
                "model": name, "batch": batch, "variant": label, "ms": ms, "vs_eager": base / ms, "vs_ort": ort_base / ms,
                "err_fp32": err[0], "rel_err": err[1], "argmax": err[2],
            })
        rows.append({"model": name, "batch": batch, "variant": "fake-quant model (reference)", "ms": None,
                     "err_fp32": agree["fake-quant model (reference)"][0], "rel_err": None, "argmax": None})
        print(f"{name} batch {batch}: " + ", ".join(f"{k}={v:.1f}ms" for k, v in times.items()), flush=True)
    print(f"{name}: deploy took x86 {build_x86:.1f}s, onnxruntime {build_ort:.1f}s; x86 report sources: "
          f"{sum(r['source'].startswith('observed') for r in ours_x86.report)} tensors observed, "
          f"{sum(not r['source'].startswith(('observed', 're-quantized')) for r in ours_x86.report)} from calibration")
    return rows


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())


def to_markdown(rows: list[dict]) -> str:
    lines = ["| model | batch | variant | latency ms | speedup vs torch fp32 | vs onnxruntime fp32 | "
             "rel. error vs fp32 | rel. error vs fake-quant | argmax agreement with fake-quant |",
             "|---|---|---|---|---|---|---|---|---|"]

    def fmt(v, pattern):
        return "" if v is None else pattern.format(v)

    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['variant']} | {fmt(r['ms'], '{:.1f}')} | "
                     f"{fmt(r.get('vs_eager'), '{:.2f}x')} | {fmt(r.get('vs_ort'), '{:.2f}x')} | "
                     f"{fmt(r['err_fp32'], '{:.4f}')} | {fmt(r['rel_err'], '{:.4f}')} | "
                     f"{fmt(None if r['argmax'] is None else 100 * r['argmax'], '{:.1f}%')} |")
    return "\n".join(lines)


def write_section(marker: str, body: str, path: Path = RESULTS) -> None:
    """Replace the ``<!-- marker -->`` section of the results file (other sections are kept)."""
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
    parser.add_argument("--quick", action="store_true", help="batch 1 only, fewer repeats")
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--passive", action="store_true",
                        help="idle threads sleep (OMP_WAIT_POLICY=PASSIVE, onnxruntime allow_spinning=0): fairer on shared cores")
    args = parser.parse_args()
    global SPIN
    SPIN = not args.passive
    import torchvision

    torch.set_num_threads(2)
    batches = [1] if args.quick else [1, 32]
    repeats = 10 if args.quick else 30
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += bench_model(name, getattr(torchvision.models, name), batches, Path(tmp), repeats)
    table = to_markdown(rows)
    print(table)
    import platform

    header = (f"## int8 latency (benchmarks/int8_latency.py)\n\ntorch {torch.__version__}, onnxruntime "
              f"{__import__('onnxruntime').__version__}, {platform.machine()}, 2 threads, random weights, "
              f"224x224; median of repeated calls after warm-up.\n")
    header += (f"Idle threads: {'sleep (--passive: OMP_WAIT_POLICY=PASSIVE, onnxruntime allow_spinning=0)' if not SPIN else 'spin (engine defaults)'}; "
               f"load average at the end of the run: {os.getloadavg()[0]:.1f}.\n")
    write_section("int8_latency_passive" if not SPIN else "int8_latency", header + "\n" + table)


if __name__ == "__main__":
    np.random.seed(0)
    main()
