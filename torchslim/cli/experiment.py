"""``torchslim experiment``: create, resume, list, status, stop, export and view experiments.

Only argparse at import time: the handlers import what they need.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_STOP_WAIT_S = 20.0  # how long `stop` waits for the runner to record that it stopped


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``experiment`` sub-command to the top-level parser."""
    parser = subparsers.add_parser(
        "experiment", help="run and inspect hyper-parameter / compression searches",
        description="Run NNI-style experiments: a search space, a tuner and trial commands.",
    )
    parser.add_argument("--experiments-dir", default=None,
                        help="where experiments live (default: $TORCHSLIM_EXPERIMENTS_DIR or "
                             "~/torchslim-experiments)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")

    create = sub.add_parser("create", help="start a new experiment from an NNI-style YAML")
    create.add_argument("--config", required=True, help="experiment YAML (NNI v1 or v2 form)")
    _add_run_options(create)

    resume = sub.add_parser("resume", help="continue a stopped or crashed experiment")
    resume.add_argument("id")
    _add_run_options(resume)

    sub.add_parser("list", help="list experiments")

    status = sub.add_parser("status", help="an experiment's state, best trial and trials")
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    stop = sub.add_parser("stop", help="stop a running experiment (results are kept)")
    stop.add_argument("id")

    export = sub.add_parser("export", help="write every trial as CSV or JSON")
    export.add_argument("id")
    export.add_argument("--format", required=True, choices=("csv", "json"))
    export.add_argument("--output", default=None, help="file to write (default: stdout)")

    view = sub.add_parser("view", help="serve a read-only web UI (no ID: all experiments)")
    view.add_argument("id", nargs="?", default=None, help="experiment to open (none: the list)")
    view.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    view.add_argument("--host", default="127.0.0.1", help="address to bind")

    from torchslim.cli.experiment_control import add_parsers

    parser.set_defaults(func=_dispatch, _parser=parser, _control=add_parsers(sub))
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--foreground", action="store_true",
                   help="run in this terminal with a live view (default: in the background)")
    p.add_argument("--progress", default="auto", choices=("auto", "rich", "plain"),
                   help="progress display with --foreground (auto: rich on a terminal)")
    p.add_argument("--web", action="store_true",
                   help="also serve the web UI (prints its control token); Ctrl-C ends the UI")
    p.add_argument("--port", type=int, default=8080, help="web UI port with --web (0: any)")
    p.add_argument("--host", default="127.0.0.1", help="web UI address with --web")


def _dispatch(args: argparse.Namespace) -> int:
    from torchslim.errors import TorchSlimError

    if not args.action:
        args._parser.print_help()
        return 2
    handler = {"create": _create, "resume": _resume, "list": _list, "status": _status,
               "stop": _stop, "export": _export, "view": _view, **args._control}[args.action]
    try:
        return handler(args)
    except TorchSlimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# ---- running ------------------------------------------------------------------------------

def _create(args: argparse.Namespace) -> int:
    from torchslim.experiment.config import load_config
    from torchslim.experiment.experiment import Experiment

    config = load_config(args.config)
    if args.experiments_dir:
        config.experiments_dir = args.experiments_dir
    exp = Experiment(config=config)
    exp.create()
    return _start(exp, args)


def _resume(args: argparse.Namespace) -> int:
    from torchslim.errors import ConfigError
    from torchslim.experiment.experiment import Experiment

    _refuse_compress(args.id, args.experiments_dir)
    exp = Experiment.open(args.id, args.experiments_dir)
    if exp.status == "RUNNING":
        raise ConfigError(f"experiment {args.id!r} is running already; stop it first")
    if exp.config.trial_command is None:
        raise ConfigError(f"experiment {args.id!r} runs the Python function {exp.function_name}; "
                          f"resume it from Python: Experiment.resume({args.id!r}, "
                          f"trial_function=...)")
    return _start(exp, args)


def _refuse_compress(exp_id: str, experiments_dir: str | None) -> None:
    """A ``torchslim compress`` search is continued by the command that runs it."""
    from torchslim.errors import ConfigError
    from torchslim.experiment import store as st

    folder = st.experiment_path(exp_id, experiments_dir)
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        kind = store.experiment()["config"].get("kind")
    if kind == "compress":
        raise ConfigError(f"experiment {exp_id!r} is a compress search; continue it with "
                          f"`torchslim compress --resume {exp_id}`")


def _start(exp: Any, args: argparse.Namespace) -> int:
    if args.web:
        from torchslim.cli.experiment_control import start_with_web

        return start_with_web(exp, args, _spawn, _print_best)
    if args.foreground:
        exp.run(progress=args.progress)
        _print_best(exp)
        return 0 if exp.status in ("DONE", "STOPPED") else 1
    return _spawn(exp)


def _spawn(exp: Any) -> int:
    """Run the experiment in a detached process; return once it is up."""
    import subprocess

    from torchslim.experiment import store as st
    from torchslim.experiment.services.base import _PACKAGE_ROOT

    log = exp.folder / "experiment.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "torchslim.experiment", exp.id,
             "--experiments-dir", str(exp.folder.parent)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
    # wait until the runner has taken the experiment (or died trying)
    spawned = time.time()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with st.ExperimentStore(exp.folder / st.DB_NAME, readonly=True) as store:
            info = store.experiment()
        if info["pid"] == proc.pid or (info["started"] or 0) >= spawned:
            break
        if proc.poll() is not None:
            print(f"error: the experiment process exited with code {proc.returncode}; "
                  f"log:\n{log.read_text()[-2000:]}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"experiment {exp.id} started in the background (pid {proc.pid})")
    print(f"  folder:  {exp.folder}")
    print(f"  log:     {log}")
    print(f"  status:  torchslim experiment status {exp.id}")
    print(f"  stop:    torchslim experiment stop {exp.id}")
    return 0


def _print_best(exp: Any) -> None:
    best = exp.best_trial()
    if best is None:
        print(f"experiment {exp.id}: {exp.status}, no successful trial")
    else:
        print(f"experiment {exp.id}: {exp.status}; best {best.trial_id} value={best.value:.6g} "
              f"parameters={json.dumps(best.parameters)}")


# ---- viewing (read-only) -------------------------------------------------------------

def _open_readonly(args: argparse.Namespace) -> Any:
    from torchslim.experiment import store as st

    folder = st.experiment_path(args.id, args.experiments_dir)
    return st.ExperimentStore(folder / st.DB_NAME, readonly=True)


def _best(records: list[Any], mode: str) -> Any:
    done = [r for r in records if r.status == "SUCCEEDED" and r.value is not None]
    if not done:
        return None
    return (max if mode == "maximize" else min)(done, key=lambda r: r.value)


def _list(args: argparse.Namespace) -> int:
    from torchslim.experiment import store as st

    rows = []
    for folder, info, counts in st.iter_experiments(args.experiments_dir):
        limit = info["config"].get("max_trial_number")
        done = sum(v for k, v in counts.items() if k in st.FINISHED_STATUSES)
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["created"] or 0))
        rows.append((info["id"], info["name"] or "", st.effective_status(info, folder),
                     f"{done}/{limit or '∞'}", created))
    if not rows:
        print(f"no experiments in {st.default_experiments_dir(args.experiments_dir)}")
        return 0
    _table(("ID", "NAME", "STATUS", "TRIALS", "CREATED"), rows)
    return 0


def _status(args: argparse.Namespace) -> int:
    from torchslim.experiment import store as st

    with _open_readonly(args) as store:
        info = store.experiment()
        records = store.trials()
    cfg = info["config"]
    best = _best(records, cfg.get("tuner_args", {}).get("optimize_mode", "maximize"))
    status = st.effective_status(info, store.folder)
    if args.json:
        from torchslim.utils.jsonsafe import dumps

        print(dumps({
            "id": info["id"], "name": info["name"], "status": status, "message": info["message"],
            "pid": info["pid"], "maxTrialNumber": cfg.get("max_trial_number"),
            "trials": [r.to_dict() for r in records],
            "best": best.to_dict() if best else None,
        }, indent=2))
        return 0
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    print(f"experiment {info['id']} ({info['name']}): {status}"
          + (f" — {info['message']}" if info["message"] else ""))
    print(f"  tuner {cfg.get('tuner')}, trials {len(records)}/{cfg.get('max_trial_number') or '∞'}: "
          + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())))
    print(f"  folder {Path(store.path).parent}")
    if best:
        print(f"  best {best.trial_id}: value={best.value:.6g} "
              f"parameters={json.dumps(best.parameters)}")
    rows = [(r.trial_id, r.status, "-" if r.value is None else f"{r.value:.6g}",
             "-" if r.duration is None else f"{r.duration:.1f}", (r.error or "")[:50])
            for r in records[-20:]]
    if rows:
        _table(("TRIAL", "STATUS", "VALUE", "SECONDS", "ERROR"), rows)
    return 0


def _stop(args: argparse.Namespace) -> int:
    import signal

    from torchslim.experiment import store as st

    folder = st.experiment_path(args.id, args.experiments_dir)
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        info = store.experiment()
    if info["status"] != "RUNNING":
        print(f"experiment {args.id} is not running ({info['status']})")
        return 0
    if st.effective_status(info, folder) != "RUNNING":
        # the runner died without recording it: end the trials it left running (by process
        # group), record the stop; resume re-runs those trials
        from torchslim.experiment.procgroup import experiment_groups, terminate_groups

        terminate_groups(experiment_groups(args.id), 3.0)
        with st.ExperimentStore(folder / st.DB_NAME) as store:
            store.update_experiment(status="STOPPED", pid=None, ended=time.time(),
                                    message="stopped (its process was already gone)")
        print(f"experiment {args.id} stopped (its process was already gone)")
        return 0
    os.kill(info["pid"], signal.SIGTERM)
    deadline = time.monotonic() + _STOP_WAIT_S
    while time.monotonic() < deadline:
        with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
            info = store.experiment()
        if info["status"] != "RUNNING":
            detail = f" ({info['message']})" if info["message"] else ""
            print(f"experiment {args.id} {info['status'].lower()}{detail}")
            return 0
        time.sleep(0.05)
    print(f"error: experiment {args.id} (pid {info['pid']}) did not stop within "
          f"{_STOP_WAIT_S:g}s", file=sys.stderr)
    return 1


def _export(args: argparse.Namespace) -> int:
    from torchslim.experiment.export import export_trials

    with _open_readonly(args) as store:
        text = export_trials(store.trials(), args.format,
                             store.experiment()["config"].get("objectives"))
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _view(args: argparse.Namespace) -> int:
    from torchslim.experiment.webui.server import serve

    serve(args.id, args.experiments_dir, host=args.host, port=args.port)
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
