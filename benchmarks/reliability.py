"""Fault injection: what a hostile user or a crash does to the experiment manager, the config
parser, speedup and the web UI, and whether anything is lost.

Each row injects one kind of fault N times and counts the runs the system *survived* (kept
running or refused with a clear error, state intact) and the *data lost* (finished trials
missing or altered, duplicate sequences, trials left RUNNING, stray processes, a model or
its masks changed by a refused speedup). Raw numbers go to ``results/reliability.json``;
``results/reliability.md`` is rendered from it.

    python benchmarks/reliability.py [--kills 20] [--fuzz 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import torchslim  # noqa: E402
from torchslim.errors import ConfigError, SpeedupError  # noqa: E402
from torchslim.experiment import Experiment  # noqa: E402
from torchslim.experiment import store as st  # noqa: E402
from torchslim.experiment.procgroup import experiment_groups  # noqa: E402
from torchslim.experiment.services import local  # noqa: E402

PYTHON = sys.executable
RESULTS = ROOT / "benchmarks" / "results"
ECHO_FINAL = ('echo "{\\"type\\":\\"final\\",\\"value\\":$TORCHSLIM_TRIAL_SEQUENCE}" '
              '> /proc/self/fd/$TORCHSLIM_METRICS_FD')


def row(fault: str, injected: int, survived: int, lost: int, note: str) -> dict:
    return {"fault": fault, "injected": injected, "survived": survived, "data_lost": lost,
            "note": note}


def manager(exp_id: str, root: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), st.ENV_EXPERIMENTS_DIR: str(root)}
    return subprocess.Popen([PYTHON, "-m", "torchslim.experiment", exp_id], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def snapshot(exp) -> dict[int, tuple]:
    return {t.sequence: (t.value, t.ended, json.dumps(t.parameters)) for t in
            exp.trials((st.SUCCEEDED,))}


def kill_minus_9(root: Path, code: Path, kills: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    budget, survived, lost, done = 8, 0, 0, 0
    per_experiment = 5
    for first in range(0, kills, per_experiment):
        exp = Experiment({"x": torchslim.uniform(0, 1)}, "sleep 0.15; " + ECHO_FINAL,
                         tuner="Random", seed=first, trial_code_directory=code,
                         max_trial_number=budget, trial_concurrency=3, experiments_dir=root)
        exp.create()
        kept: dict[int, tuple] = {}
        for _ in range(min(per_experiment, kills - first)):
            proc = manager(exp.id, root)
            try:
                proc.wait(rng.uniform(0.0, 0.9))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            done += 1
            now = snapshot(exp)
            lost += sum(now.get(s) != v for s, v in kept.items())  # a finished trial changed
            kept = now
        manager(exp.id, root).wait(120)
        trials = exp.trials()
        ok = (exp.status == "DONE" and [t.sequence for t in trials] == list(range(budget))
              and all(t.status == st.SUCCEEDED and t.value == t.sequence for t in trials)
              and not experiment_groups(exp.id))
        lost += sum(snapshot(exp).get(s) != v for s, v in kept.items())
        lost += len(trials) - len({t.sequence for t in trials})
        survived += (min(per_experiment, kills - first)) if ok else 0
    return row("kill -9 of the manager at a random moment, then resume", done, survived, lost,
               f"budget {budget} exact, no duplicate sequence, none RUNNING, no stray process")


BAD_LINES = [b'{"type":"final","value":"abc"}', b"[1,2]", b'{"type":"final","value":{"default":"x"}}',
             b'{"type":"intermediate","value":"s"}', b'{"type":"final","value":NaN}',
             b'{"type":"final"}', b'{"type":"bogus","value":1}', b"hello", b"\xff\xfe",
             b"null", b'{"type":"final","value":true}', b'{"type":"exit","code":"x"}']


def malformed_lines(root: Path, code: Path) -> dict:
    script = code / "writer.py"
    script.write_text("import json, os, time\np = json.loads(os.environ['TORCHSLIM_TRIAL_PARAMETERS'])\n"
                      "os.write(int(os.environ['TORCHSLIM_METRICS_FD']), bytes.fromhex(p['line']) + b'\\n')\n"
                      "time.sleep(30)\n")
    exp = Experiment({"line": torchslim.choice(*[b.hex() for b in BAD_LINES])},
                     f"{PYTHON} writer.py", tuner="GridSearch", trial_code_directory=code,
                     trial_concurrency=4, experiments_dir=root).run()
    trials = exp.trials()
    survived = sum(t.status == st.FAILED and "invalid message" in (t.error or "") for t in trials)
    return row("malformed line on a trial's metrics pipe (12 kinds)", len(BAD_LINES),
               survived if exp.status == "DONE" else 0, 0,
               "that trial FAILED with the reason; the manager ran on")


def stubborn_trial(root: Path, code: Path, n: int = 3) -> dict:
    local.KILL_GRACE_S = 1.0
    (code / "stubborn.py").write_text(
        "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(os.getpid(), flush=True)\ntime.sleep(120)\n")
    survived, worst = 0, 0.0
    for _ in range(n):
        exp = Experiment({"x": torchslim.uniform(0, 1)}, f"{PYTHON} stubborn.py; true",
                         tuner="Random", trial_code_directory=code, max_trial_number=1,
                         max_trial_duration=1.0, experiments_dir=root).run()
        (t,) = exp.trials()
        pid = int(Path(t.stdout_path).read_text().split()[0])
        gone = not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
        worst = max(worst, time.time() - t.started - 1.0)
        survived += gone and time.time() - t.started <= 1.0 + 1.0 + 1.0 + 0.5
    return row("trial ignoring SIGTERM past maxTrialDuration", n, survived, 0,
               f"whole process group SIGKILLed after the 1 s grace; worst {worst:.2f} s past the deadline")


def concurrent_resumes(root: Path, code: Path, n: int = 5) -> dict:
    survived = lost = overlapped = 0
    for i in range(n):
        exp = Experiment({"x": torchslim.uniform(0, 1)}, "sleep 1.0; " + ECHO_FINAL,
                         tuner="Random", seed=i, trial_code_directory=code, max_trial_number=4,
                         trial_concurrency=2, experiments_dir=root)
        exp.create()
        procs = [manager(exp.id, root) for _ in range(2)]
        codes = sorted(p.wait(120) for p in procs)
        trials = exp.trials()
        lost += len(trials) - len({t.sequence for t in trials})
        overlapped += codes == [0, 1]
        # [0, 0] means the second started after the first had finished: also one at a time
        survived += codes in ([0, 1], [0, 0]) and [t.attempts for t in trials] == [1] * 4
    return row("two managers started on one experiment at once", n, survived, lost,
               f"one runs (flock), the other exits with 'running in another process' "
               f"({overlapped}/{n} really overlapped); each trial ran once")


def seeded_resume_repeats() -> dict:
    from tests.experiment.test_reliability import resumed_proposals  # the suite's own check

    space = {"x": torchslim.uniform(0, 1), "c": torchslim.choice("a", "b", "c")}
    injected = survived = 0
    for name in ("Random", "TPE", "Anneal", "Evolution"):
        for seed in range(3):
            args = {"seed": seed} | ({"n_startup_jobs": 3} if name in ("TPE", "Anneal") else {})
            before, again = resumed_proposals(name, space, args)
            seen = {json.dumps(r, sort_keys=True) for r in before}
            injected += 1
            survived += not (seen & {json.dumps(r, sort_keys=True) for r in again})
    return row("resume of a seeded tuner (Random, TPE, Anneal, Evolution x 3 seeds)", injected,
               survived, 0, "no point of the first run proposed again")


def config_fuzz(n: int) -> dict:
    from tests.config.test_fuzz import Gen, verdict  # the test suite's generator and oracle

    from torchslim.models import LeNet5

    rng, model = random.Random(20261128), LeNet5()
    ok = [verdict(model, Gen(rng))[0] == "ok" for _ in range(n)]
    return row("random config_list (both dialects)", n, sum(ok), 0,
               f"{n - sum(ok)} not ConfigError / silently accepted / valid refused")


def bad_masks() -> dict:
    from torchslim.masking import get_masks
    from torchslim.models import LeNet5
    from torchslim.pruning import L1NormPruner
    from torchslim.speedup import ModelSpeedup

    kinds = {"misspelt target": lambda m: {k: {"wieght": v["weight"]} for k, v in m.items()},
             "wrong shape": lambda m: {k: {"weight": v["weight"][:1]} for k, v in m.items()},
             "not binary": lambda m: {k: {"weight": v["weight"] * 0.5} for k, v in m.items()},
             "unknown module": lambda m: {"conv9": m["conv1"]},
             "not a tensor": lambda m: {k: {"weight": v["weight"].tolist()} for k, v in m.items()}}
    survived = lost = 0
    for kind, corrupt in kinds.items():
        model = LeNet5()
        _, masks = L1NormPruner(model, [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.5},
                                        {"op_names": ["fc3"], "exclude": True}]).compress()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        attached = {n: sorted(get_masks(m)) for n, m in model.named_modules()}
        try:
            ModelSpeedup(model, torch.randn(1, 1, 28, 28), corrupt(masks)).speedup_model()
        except SpeedupError:
            survived += 1
        same = all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
        lost += not (same and attached == {n: sorted(get_masks(m)) for n, m in model.named_modules()})
    return row("bad masks given to speedup (5 kinds)", len(kinds), survived, lost,
               "SpeedupError before any layer changes; masks still attached")


def web_ui(root: Path, n: int = 500) -> dict:
    from torchslim.experiment.webui.server import make_server

    server = make_server("127.0.0.1", 0, experiments_dir=root)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = server.server_address[1]

    async def one(host: str) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/experiments HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        return int(data.split(b" ", 2)[1]) if data else 0

    async def burst() -> list[int]:
        return await asyncio.gather(*(one(f"127.0.0.1:{port}") for _ in range(n)),
                                    *(one("evil.example") for _ in range(10)))

    statuses = asyncio.run(burst())
    server.shutdown()
    server.server_close()
    answered = sum(s == 200 for s in statuses[:n])
    refused = sum(s == 421 for s in statuses[n:])
    return row(f"{n} concurrent requests + 10 with a foreign Host", n + 10, answered + refused, 0,
               f"{answered}/{n} answered, {refused}/10 foreign Host refused (421)")


def render(data: dict) -> str:
    lines = ["## Reliability: faults injected, survived, data lost", "",
             f"Machine: {data['machine']} ({data['note']}); `python benchmarks/reliability.py`, "
             f"{data['seconds']:.0f} s.", "",
             "| fault | injected | survived | data lost | what was checked |",
             "|---|---:|---:|---:|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['fault']} | {r['injected']} | {r['survived']} | {r['data_lost']} | {r['note']} |")
    total = {k: sum(r[k] for r in data["rows"]) for k in ("injected", "survived", "data_lost")}
    lines += [f"| **total** | **{total['injected']}** | **{total['survived']}** | "
              f"**{total['data_lost']}** | |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--fuzz", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root, code = Path(tmp) / "experiments", Path(tmp) / "code"
        code.mkdir()
        rows = [kill_minus_9(root, code, args.kills), malformed_lines(root, code),
                stubborn_trial(root, code), concurrent_resumes(root, code),
                seeded_resume_repeats(), config_fuzz(args.fuzz), bad_masks(), web_ui(root)]
    data = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {socket.gethostname()}",
            "note": f"shared, load average {os.getloadavg()[0]:.1f} at the end",
            "seconds": time.time() - start, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "reliability.md").write_text(render(data))
    print(render(data))


if __name__ == "__main__":
    main()
