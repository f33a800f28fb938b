"""Speedup over the torchvision classification zoo, side by side with Torch-Pruning.

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (random
weights, 224x224), both tools prune 30% of the output channels of every Conv2d/Linear but
the classifier:

* torchslim: ``auto_set_dependency_group_ids`` + ``L1NormPruner`` (so coupled layers keep the
  same channels) then ``ModelSpeedup`` (which checks shrunk == masked outputs itself);
* Torch-Pruning 1.6: ``MetaPruner(importance=MagnitudeImportance(p=1), pruning_ratio=0.3)``.

Each model runs in its own subprocess with a time limit, under ``nice``. Results are
appended to ``benchmarks/speedup_zoo_results.jsonl`` (re-running skips models already
there; ``--fresh`` starts over) and the markdown summary goes to
``benchmarks/results/speedup.md`` (with the transformers and ResNet-18 sections from
``speedup_extras.py``).

    python benchmarks/speedup_zoo.py            # whole zoo (about an hour on 2 cores)
    python benchmarks/speedup_zoo.py --only resnet18,mobilenet_v2
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RAW = HERE / "speedup_zoo_results.jsonl"
# too big for a 24 GiB budget (weights + batch-32 activations + two pruned copies)
TOO_BIG = {"vit_h_14": "632M params, 167 GMACs", "regnet_y_128gf": "645M params, 128 GMACs"}
TP_LIMIT_S = 180  # Torch-Pruning's graph build + prune, per model
# the run shares 2 cores with other work: latency only where it is cheap enough to repeat
LAT1_MACS = 2e9  # batch-1 latency up to this many MACs
LAT32_MACS = 0.7e9  # batch-32 latency up to this


def classifier_name(model) -> str:
    import torch

    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return names[-1]


def measure(model, x1, x32, macs: int) -> dict:
    from torchslim.utils.metrics import measure_latency

    out = {}
    if macs <= LAT1_MACS:
        out["lat1_ms"] = measure_latency(model, x1, threads=2, warmup=1, repeats=3)
    if macs <= LAT32_MACS:
        out["lat32_ms"] = measure_latency(model, x32, threads=2, warmup=1, repeats=1)
    return out


def run_one(name: str) -> dict:
    import torch
    import torchvision

    from torchslim.utils.metrics import count_macs, count_params

    # graph building and pruning on 1 thread: the machine is shared, and OpenMP threads that
    # spin-wait under oversubscription make small ops 10-50x slower; latency pins 2 threads
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = torchvision.models.get_model(name, weights=None).eval()
    x1 = torch.randn(1, 3, 224, 224)
    x32 = torch.randn(32, 3, 224, 224)
    cls = classifier_name(dense)
    row: dict = {"model": name, "classifier": cls, "params": count_params(dense)}
    row["macs"] = count_macs(dense, x1)
    row.update({f"dense_{k}": v for k, v in measure(dense, x1, x32, row["macs"]).items()})
    with torch.no_grad():
        ref_shape = tuple(dense(x1).shape)

    # --- torchslim
    try:
        from speedup_common import prune_and_speedup

        model = copy.deepcopy(dense)
        times, speedup = prune_and_speedup(model, x1, 0.3, cls)
        with torch.no_grad():
            shape = tuple(model(x1).shape)
        assert shape == ref_shape, f"output shape {shape} != {ref_shape}"
        rep = speedup.report
        ours = {"ok": True, "params": count_params(model), "macs": count_macs(model, x1), **times,
                "trace_s": rep.trace_s, "max_abs_diff": rep.max_abs_diff,
                "barriers": sorted({b.target for b in rep.barriers}), "untraced": [m for m, _ in rep.untraced]}
        ours.update(measure(model, x1, x32, row["macs"]))
        del model
    except Exception as exc:  # recorded, not fatal: the table lists every failure with its reason
        ours = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    row["torchslim"] = ours

    # --- Torch-Pruning (it can hang on swin/maxvit: an alarm bounds it)
    def give_up(signum, frame):
        raise TimeoutError(f"Torch-Pruning did not finish within {TP_LIMIT_S} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(TP_LIMIT_S)
    try:
        import torch_pruning as tp

        model = copy.deepcopy(dense)
        ignored = [model.get_submodule(cls)]
        t0 = time.perf_counter()
        pruner = tp.pruner.MetaPruner(model, x1, importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=0.3, ignored_layers=ignored)
        t1 = time.perf_counter()
        pruner.step()
        t2 = time.perf_counter()
        with torch.no_grad():
            shape = tuple(model(x1).shape)
        assert shape == ref_shape, f"output shape {shape} != {ref_shape}"
        theirs = {"ok": True, "params": count_params(model), "macs": count_macs(model, x1), "build_s": t1 - t0,
                  "prune_s": t2 - t1}
        theirs.update(measure(model, x1, x32, row["macs"]))
    except Exception as exc:
        theirs = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    finally:
        signal.alarm(0)
    row["torch_pruning"] = theirs
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", help="run one model and print its JSON row")
    parser.add_argument("--only", help="comma-separated models")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--rerun-stale", action="store_true", help="re-run rows whose latency is unreliable")
    parser.add_argument("--workers", type=int, default=1, help="models run at once (latency gets noisier)")
    args = parser.parse_args()
    if args.one:
        # before torch loads OpenMP: spin-waiting threads make 2-thread runs 10-40x slower when
        # the cores are shared with other jobs
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        row = run_one(args.one)
        row["omp_wait_policy"] = os.environ["OMP_WAIT_POLICY"]
        print("ROW " + json.dumps(row), flush=True)
        return
    import torchvision

    names = args.only.split(",") if args.only else torchvision.models.list_models(module=torchvision.models)
    first = [n for n in ("resnet50", "shufflenet_v2_x0_5", "swin_t", "maxvit_t", "densenet201") if n in names]
    names = first + [n for n in names if n not in first]  # the hard cases first
    if args.fresh and RAW.exists():
        RAW.unlink()
    done = set()
    if RAW.exists():  # resume: keep finished rows, run crashed and missing models again
        kept = [json.loads(line) for line in RAW.read_text().splitlines() if line.strip()]
        kept = [r for r in kept if "crashed" not in r]
        if args.rerun_stale:  # latency measured before OMP_WAIT_POLICY=PASSIVE: measure again
            kept = [r for r in kept if "omp_wait_policy" in r or "skipped" in r or r.get("macs", 0) > LAT1_MACS]
        RAW.write_text("".join(json.dumps(r) + "\n" for r in kept))
        done = {r["model"] for r in kept}
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    todo = [n for n in names if n not in done]

    def one(name: str) -> dict:
        if name in TOO_BIG:
            return {"model": name, "skipped": TOO_BIG[name]}
        t0 = time.perf_counter()
        cmd = ["nice", "-n", "10", sys.executable, __file__, "--one", name]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            row = json.loads(lines[-1][4:]) if lines else {
                "model": name, "crashed": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
        except subprocess.TimeoutExpired:
            row = {"model": name, "crashed": f"timeout after {args.timeout} s"}
        row["wall_s"] = time.perf_counter() - t0
        return row

    with ThreadPoolExecutor(args.workers) as pool:
        for row in pool.map(one, todo):
            with RAW.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            status = row.get("torchslim", {}).get("ok"), row.get("torch_pruning", {}).get("ok")
            print(f"{row['model']}: torchslim ok={status[0]} torch-pruning ok={status[1]} "
                  f"({row.get('wall_s', 0):.0f} s)", flush=True)
    from speedup_report import write_report  # noqa: E402  (benchmarks/ is on sys.path)

    write_report(RAW, HERE / "results" / "speedup.md")


if __name__ == "__main__":
    main()
