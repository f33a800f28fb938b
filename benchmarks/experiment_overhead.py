"""Experiment overhead: N trivial trials at concurrency C, bare processes vs torchslim.

Both sides run the same command (`python -c "import torchslim; ...report_final_result(1.0)"`)
through a shell, C at a time, with the same spawn flags. "bare" is the floor: a minimal
process pool with no tuner, no database, no result collection. The experiment side is a full `Experiment` (Random tuner,
SQLite store, per-trial logs, result pipe).

    python benchmarks/experiment_overhead.py [--trials 200] [--concurrency 2] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torchslim  # noqa: E402
from torchslim.experiment import Experiment  # noqa: E402

COMMAND = f'{sys.executable} -c "import torchslim; torchslim.report_final_result(1.0)"'


def bare(trials: int, concurrency: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    running: dict[int, subprocess.Popen] = {}  # kept referenced: Popen must not reap them
    launched = 0
    while launched < trials or running:
        while launched < trials and len(running) < concurrency:
            # the same spawn flags as the runner: a new session matters for the scheduler
            # (with autogroup each session gets its own CPU share on a busy machine)
            proc = subprocess.Popen(COMMAND, shell=True, env=env, stdout=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            running[proc.pid] = proc
            launched += 1
        pid, status = os.wait()
        proc = running.pop(pid, None)
        if proc is not None:
            proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start


def experiment(trials: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        exp = Experiment({"x": torchslim.uniform(0, 1)}, COMMAND, tuner="Random",
                         max_trial_number=trials, trial_concurrency=concurrency,
                         experiments_dir=root)
        start = time.perf_counter()
        exp.run()
        wall = time.perf_counter() - start
        succeeded = sum(t.status == "SUCCEEDED" and t.value == 1.0 for t in exp.trials())
        assert succeeded == trials, f"only {succeeded}/{trials} trials succeeded"
    return wall


def import_time() -> str:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import torchslim; torchslim.get_next_parameter()"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    rows = [line.split("|") for line in out.stderr.splitlines() if "torchslim" in line]
    total = sum(int(r[0].split(":")[1]) for r in rows)  # self times of torchslim modules
    cumulative = max(int(r[1]) for r in rows)
    return f"{len(rows)} torchslim modules, {total / 1000:.1f} ms self, {cumulative / 1000:.1f} ms cumulative"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for i in range(args.repeat):  # interleaved so machine noise hits both sides alike
        b = bare(args.trials, args.concurrency)
        e = experiment(args.trials, args.concurrency)
        rows.append((b, e))
        print(f"run {i}: bare {b:.2f}s, experiment {e:.2f}s", file=sys.stderr)
    best_b, best_e = min(r[0] for r in rows), min(r[1] for r in rows)  # least disturbed runs
    print(f"\n{args.trials} trials at concurrency {args.concurrency}, {os.cpu_count()} CPUs, "
          f"best of {args.repeat}\n")
    print("| runner | wall s | ms / trial | vs bare |")
    print("|---|---|---|---|")
    print(f"| bare python processes | {best_b:.2f} | {best_b / args.trials * 1000:.1f} | 1.00x |")
    print(f"| torchslim experiment | {best_e:.2f} | {best_e / args.trials * 1000:.1f} | "
          f"{best_e / best_b:.2f}x |")
    print(f"\ntrial-side `import torchslim; get_next_parameter()`: {import_time()}")


if __name__ == "__main__":
    main()
