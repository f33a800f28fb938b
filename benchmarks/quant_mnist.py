"""LeNet on the embedded MNIST split: fp32 vs PTQ / QAT / LSQ deployed as real int8 models; DoReFa and BNN.

Accuracy of every int8 row is measured on the *deployed* int8 model (PyTorch x86 kernels, and
onnxruntime QDQ as a cross-check), next to the fake-quant model it came from; latency at batch
32 with 2 threads, size = bytes of the saved state_dict.
Run: ``nice -n 10 python benchmarks/quant_mnist.py``.
"""
from __future__ import annotations

import copy
import io
import time

import torch
from torch.utils.data import DataLoader

from int8_latency import write_section
from torchslim.datasets import load_mnist
from torchslim.models import LeNet
from torchslim.quantization import (
    BNNQuantizer, DoReFaQuantizer, LsqQuantizer, PtqQuantizer, QATQuantizer, deploy,
)
from torchslim.quantization.demo import INT8_CONFIG
from torchslim.utils.metrics import measure_latency, state_dict_bytes
from torchslim.utils.training import evaluate_accuracy, train_epochs


def saved_bytes(module: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell()


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train, test = load_mnist()
    x_test = test.tensors[0]
    batch32 = x_test[:32]
    calib = DataLoader(train, batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(0))
    example = next(iter(calib))[0]

    t0 = time.perf_counter()
    fp32 = LeNet()
    train_epochs(fp32, train, 3, lr=1e-3)
    fp32.eval()
    fp32_acc = evaluate_accuracy(fp32, test)
    print(f"fp32 trained in {time.perf_counter() - t0:.0f} s: {fp32_acc:.2f}%", flush=True)
    rows = [{"variant": "fp32", "fake": fp32_acc, "x86": None, "ort": None, "agree": None,
             "size": state_dict_bytes(fp32), "ms": measure_latency(fp32, batch32), "ort_ms": None, "secs": None}]

    def add(variant: str, model: torch.nn.Module, calibration, secs: float) -> None:
        model.eval()
        row = {"variant": variant, "fake": evaluate_accuracy(model, test), "secs": secs}
        if calibration is None:
            row.update(x86=None, ort=None, agree=None, size=None, ms=None, ort_ms=None)
        else:
            x86 = deploy(model, calibration, example, backend="x86")
            ort = deploy(model, calibration, example, backend="onnxruntime")
            with torch.no_grad():
                agree = float((x86(x_test).argmax(1) == model(x_test).argmax(1)).float().mean())
            row.update(x86=evaluate_accuracy(x86, test), ort=evaluate_accuracy(ort, test), agree=agree,
                       size=saved_bytes(x86.model), ms=measure_latency(x86, batch32),
                       ort_ms=measure_latency(lambda: ort(batch32)))
        rows.append(row)
        print(row, flush=True)

    for observer in ("minmax", "percentile", "mse"):
        model, t0 = copy.deepcopy(fp32), time.perf_counter()
        _, calibration = PtqQuantizer(model, INT8_CONFIG, observer=observer).compress(calib, max_steps=8)
        add(f"PTQ int8 ({observer} observer, 8 batches)", model, calibration, time.perf_counter() - t0)

    model, t0 = copy.deepcopy(fp32), time.perf_counter()
    quantizer = QATQuantizer(model, INT8_CONFIG)
    quantizer.track_forward(example)
    quantizer.compress()
    train_epochs(model, train, 1, lr=1e-4)
    add("QAT int8 (1 epoch)", model, quantizer.get_calibration_config(), time.perf_counter() - t0)

    model, t0 = copy.deepcopy(fp32), time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    quantizer = LsqQuantizer(model, INT8_CONFIG, optimizer, dummy_input=example)
    quantizer.compress()
    train_epochs(model, train, 1, optimizer=optimizer)
    add("LSQ int8 (1 epoch)", model, quantizer.get_calibration_config(), time.perf_counter() - t0)

    for cls, bits, lr in ((DoReFaQuantizer, 4, 1e-4), (DoReFaQuantizer, 2, 1e-4), (BNNQuantizer, 1, 1e-3)):
        model, t0 = copy.deepcopy(fp32), time.perf_counter()
        cls(model, [{"op_types": ["Conv2d", "Linear"], "quant_types": ["weight"], "quant_bits": bits}]).compress()
        train_epochs(model, train, 1, lr=lr)
        add(f"{cls.__name__.replace('Quantizer', '')} {bits}-bit weights (1 epoch, simulated)", model, None,
            time.perf_counter() - t0)

    def cell(v, fmt="{:.2f}"):
        return "" if v is None else fmt.format(v)

    lines = ["| variant | fake-quant acc % | int8 x86 acc % | int8 onnxruntime acc % | Δ int8 x86 vs fp32 | "
             "argmax agreement int8 vs fake-quant | size KB | latency ms (batch 32, x86 / onnxruntime) | quantize time s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = None if r["x86"] is None else r["x86"] - fp32_acc
        lines.append(f"| {r['variant']} | {cell(r['fake'])} | {cell(r['x86'])} | {cell(r['ort'])} | "
                     f"{cell(delta, '{:+.2f}')} | {cell(None if r['agree'] is None else 100 * r['agree'], '{:.2f}%')} | "
                     f"{cell(None if r['size'] is None else r['size'] / 1024, '{:.0f}')} | {cell(r['ms'], '{:.2f}')}"
                     f"{'' if r['ort_ms'] is None else ' / ' + cell(r['ort_ms'])} | "
                     f"{cell(r['secs'], '{:.1f}')} |")
    table = "\n".join(lines)
    print(table)
    header = ("## LeNet on embedded MNIST (benchmarks/quant_mnist.py)\n\nLeNet (431k params) trained 3 epochs on the "
              "8,000-image split, tested on the 2,000 held out. int8 accuracies are those of the deployed int8 models; "
              f"torch {torch.__version__}, 2 threads.\n")
    write_section("quant_mnist", header + "\n" + table)


if __name__ == "__main__":
    main()
