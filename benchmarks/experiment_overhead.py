"""Experiment overhead: N trivial trials at concurrency C, bare processes vs torchslim.

Three pools per round, interleaved so machine noise hits all alike: the experiment (a full
`Experiment`: Random tuner, SQLite store, per-trial logs, result pipe) running the trial
command `python -c "import torchslim; ...report_final_result(1.0)"`; a bare process pool
running the *same* trial command (no tuner, no database); and a bare pool running
`python -c pass` (the floor of starting a process at all). Reported: the median over rounds of
the paired ratios experiment / bare-same-command and experiment / bare-`pass`.

Writes ``results/experiment_overhead.json`` and ``.md``.

    python benchmarks/experiment_overhead.py [--trials 200] [--concurrency 2] [--repeat 5] [--quick]
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
from results_io import machine, median, save  # noqa: E402
from torchslim.experiment import Experiment  # noqa: E402

COMMAND = f'{sys.executable} -c "import torchslim; torchslim.report_final_result(1.0)"'
PASS = f'{sys.executable} -c pass'


def bare(trials: int, concurrency: int, command: str = COMMAND) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    running: dict[int, subprocess.Popen] = {}  # kept referenced: Popen must not reap them
    launched = 0
    while launched < trials or running:
        while launched < trials and len(running) < concurrency:
            # the same spawn flags as the runner: a new session matters for the scheduler
            # (with autogroup each session gets its own CPU share on a busy machine)
            proc = subprocess.Popen(command, shell=True, env=env, stdout=subprocess.DEVNULL,
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
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="30 trials, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.repeat = 30, 3
    rounds = []
    for i in range(args.repeat):  # interleaved so machine noise hits every side alike
        order = [("pass", lambda: bare(args.trials, args.concurrency, PASS)),
                 ("bare", lambda: bare(args.trials, args.concurrency)),
                 ("experiment", lambda: experiment(args.trials, args.concurrency))]
        if i % 2:
            order.reverse()
        row = {name: fn() for name, fn in order}
        rounds.append(row)
        print(f"round {i}: " + ", ".join(f"{k} {v:.2f}s" for k, v in row.items()), file=sys.stderr)
    data = {
        "machine": machine(shared=True), "trials": args.trials, "concurrency": args.concurrency, "rounds": rounds,
        "ratio_vs_same_command": median([r["experiment"] / r["bare"] for r in rounds]),
        "ratio_vs_python_pass": median([r["experiment"] / r["pass"] for r in rounds]),
        "ms_per_trial": {k: median([r[k] for r in rounds]) / args.trials * 1000 for k in ("pass", "bare", "experiment")},
        "import": import_time(),
    }
    save("experiment_overhead", data, render(data))
    print(render(data))


def render(d: dict) -> str:
    ms = d["ms_per_trial"]
    return "\n".join([
        "## Experiment overhead",
        "",
        f"Written by `benchmarks/experiment_overhead.py` from `results/experiment_overhead.json`. {d['machine']}. "
        f"{d['trials']} trivial trials at concurrency {d['concurrency']}, {len(d['rounds'])} interleaved rounds; "
        "ratios are the median over rounds of the per-round (paired) ratio.",
        "",
        "| runner | median ms / trial | experiment / this (median of paired ratios) |",
        "|---|---|---|",
        f"| bare pool, `python -c pass` | {ms['pass']:.1f} | {d['ratio_vs_python_pass']:.2f}x |",
        f"| bare pool, the same trial command | {ms['bare']:.1f} | {d['ratio_vs_same_command']:.2f}x |",
        f"| torchslim experiment | {ms['experiment']:.1f} | 1.00x |",
        "",
        f"Trial-side `import torchslim; get_next_parameter()`: {d['import']}.",
    ])


if __name__ == "__main__":
    main()
