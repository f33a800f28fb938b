"""Run the benchmarks, then assemble RESULTS.md and fill README's figures, in one command.

Each script writes its raw JSON and renders its ``benchmarks/results/<name>.md`` from it;
afterwards ``assemble_results.py`` builds RESULTS.md and ``readme_figures.py`` fills README's
figure blocks from the JSON.

    python benchmarks/run_all.py                      # everything (hours on 2 shared cores)
    python benchmarks/run_all.py --quick              # every script in its quick form (minutes)
    python benchmarks/run_all.py --only zoo,lenet5    # a subset
    python benchmarks/run_all.py --skip zoo --list    # show what would run
    python benchmarks/run_all.py --assemble-only      # only RESULTS.md and README from existing JSON
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, full arguments, quick arguments)
SCRIPTS: dict[str, tuple[str, list[str], list[str]]] = {
    "demo": ("demo_table.py", [], ["--quick"]),
    "pruning": ("pruning_mnist.py", [], ["--quick"]),
    "lenet5": ("pruning_lenet5_2421.py", [], ["--quick"]),
    "zoo": ("speedup_zoo.py", [], ["--quick"]),
    "speedup_extras": ("speedup_extras.py", [], []),
    "quantization": ("quant_mnist.py", [], []),
    "int8": ("int8_latency.py", [], ["--quick"]),
    "overhead": ("experiment_overhead.py", [], ["--quick"]),
    "tuners": ("tuner_quality.py", [], ["--trials", "20", "--seeds", "2"]),
    "auto": ("auto_compress.py", [], ["--quick"]),
    "tuner_functions": ("tuners.py", [], ["--quick"]),
    "tuners_lenet": ("tuners_lenet.py", [], ["--quick"]),
    "tuners_fidelity": ("tuners_fidelity.py", [], ["--quick"]),
}
QUICK_DEFAULT = ["demo", "pruning", "lenet5", "zoo", "int8", "overhead"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(SCRIPTS)}")
    parser.add_argument("--skip", help="comma-separated scripts not to run")
    parser.add_argument("--quick", action="store_true", help="each script's quick form (and only the quick set)")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    parser.add_argument("--assemble-only", action="store_true")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else (QUICK_DEFAULT if args.quick else list(SCRIPTS))
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(SCRIPTS)}")
    names = [n for n in names if n not in (args.skip.split(",") if args.skip else [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]), OMP_WAIT_POLICY="PASSIVE")
    failed = []
    if not args.assemble_only:
        for name in names:
            script, full, quick = SCRIPTS[name]
            cmd = [sys.executable, str(HERE / script)] + (quick if args.quick else full)
            print(f"[run_all] {name}: {' '.join(cmd[1:])}", flush=True)
            if args.list:
                continue
            t0 = time.perf_counter()
            code = subprocess.call(cmd, cwd=HERE, env=env)
            print(f"[run_all] {name}: exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
            if code:
                failed.append(name)
        if args.list:
            return 0
    for step in ("assemble_results.py", "readme_figures.py"):
        subprocess.call([sys.executable, str(HERE / step)], cwd=HERE, env=env)
    if failed:
        print(f"[run_all] failed: {', '.join(failed)} (their previous results, if any, were kept)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
