"""The multi-objective auto-compression example end to end: accuracy vs parameters vs measured
latency of a pruned LeNet (examples/auto_compress/config_multi.yml, MOTPE), then the Pareto front.

Runs the example's real trials (prune, fine-tune one epoch, speedup, time) with a smaller
trial budget, and writes benchmarks/results/auto_compress_pareto.json and the rendered .md.

    python benchmarks/auto_compress_pareto.py [--trials 10]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchslim.experiment import Experiment  # noqa: E402
from torchslim.experiment.config import load_config  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "auto_compress" / "config_multi.yml"
OUT_JSON = HERE / "results" / "auto_compress_pareto.json"
OUT_MD = HERE / "results" / "auto_compress_pareto.md"


def render(data: dict) -> str:
    lines = ["## Auto-compression, multi-objective (LeNet: accuracy vs parameters vs latency)", "",
             f"`python benchmarks/auto_compress_pareto.py` — `examples/auto_compress/config_multi.yml` "
             f"(tuner {data['tuner']}, {data['trials']} trials, 2 at a time) on a shared 2-core machine. "
             f"Latency: median of 50 batch-1 CPU forwards after speedup. Pareto-optimal trials "
             f"(`export` marks them `paretoOptimal`), best accuracy first:", "",
             "| trial | method | accuracy % | parameters | latency ms | conv1 / conv2 / fc1 sparsity |",
             "|---|---|---|---|---|---|"]
    for row in data["front"]:
        p = row["parameter"]["prune_method"]
        v = row["value"]
        lines.append(f"| {row['trialJobId']} | {p['_name']} | {v['accuracy']:.2f} | {v['parameters']:,} "
                     f"| {v['latency_ms']:.3f} | {p['conv1_sparsity']:.2f} / {p['conv2_sparsity']:.2f} / "
                     f"{p['fc1_sparsity']:.2f} |")
    lines += ["", f"{len(data['front'])} of {data['succeeded']} successful trials are on the front "
              f"(dense LeNet: {data['dense_parameters']:,} parameters); the run took "
              f"{data['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    config = load_config(EXAMPLE)
    config.max_trial_number = args.trials
    config.tuner_args = {**config.tuner_args, "n_startup_jobs": min(6, args.trials)}
    with tempfile.TemporaryDirectory() as root:
        config.experiments_dir = root
        start = time.perf_counter()
        exp = Experiment(config=config).run(progress="plain")
        seconds = time.perf_counter() - start
        rows = exp.export_data()
    done = [r for r in rows if r["status"] == "SUCCEEDED"]
    front = sorted((r for r in rows if r.get("paretoOptimal")), key=lambda r: -r["value"]["accuracy"])
    data = {"tuner": config.tuner, "trials": args.trials, "succeeded": len(done),
            "dense_parameters": done[0]["value"]["dense_parameters"] if done else 0,
            "seconds": seconds, "front": front, "all": rows}
    OUT_JSON.write_text(json.dumps(data, indent=1, default=str))
    OUT_MD.write_text(render(data))
    print(OUT_MD.read_text())


if __name__ == "__main__":
    main()
