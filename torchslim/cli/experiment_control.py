"""``torchslim experiment update|trial|log|import|delete``: steer experiments, also while they run.

Commands go through the experiment's database (see :mod:`torchslim.experiment.control`): the
running manager applies them within a fraction of a second; a stopped experiment gets them
applied to its stored state (and a resume continues from there).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from torchslim.utils import jsonsafe


def add_parsers(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the control actions to ``experiment``'s sub-parsers; returns action -> handler."""
    update = sub.add_parser("update", help="change concurrency, trial budget or duration (also "
                                           "while it runs)")
    update.add_argument("id")
    update.add_argument("--concurrency", type=int, default=None, help="trialConcurrency")
    update.add_argument("--max-trials", type=int, default=None, help="maxTrialNumber")
    update.add_argument("--duration", default=None,
                        help="maxExperimentDuration ('30m', '2h', seconds)")

    trial = sub.add_parser("trial", help="list or kill trials")
    trial_sub = trial.add_subparsers(dest="trial_action", metavar="ACTION")
    ls = trial_sub.add_parser("ls", help="list an experiment's trials")
    ls.add_argument("id")
    ls.add_argument("--status", default=None, help="only trials with this status")
    ls.add_argument("--json", action="store_true")
    kill = trial_sub.add_parser("kill", help="kill a running trial (it ends USER_CANCELED)")
    kill.add_argument("id")
    kill.add_argument("trial", help="trial id (trial_0003) or sequence number (3)")
    trial.set_defaults(_trial_parser=trial)

    log = sub.add_parser("log", help="print a trial's stdout (or --stderr)")
    log.add_argument("id")
    log.add_argument("trial", help="trial id (trial_0003) or sequence number (3)")
    log.add_argument("--stderr", action="store_true")

    imp = sub.add_parser("import", help="add finished trials from a JSON file (NNI's import "
                                        "data: [{'parameter': {...}, 'value': ...}, ...])")
    imp.add_argument("id")
    imp.add_argument("file")

    delete = sub.add_parser("delete", help="delete a stopped experiment and its files")
    delete.add_argument("id")
    delete.add_argument("--yes", action="store_true", help="do not ask")
    return {"update": _update, "trial": _trial, "log": _log, "import": _import,
            "delete": _delete}


def _folder(args: argparse.Namespace) -> Path:
    from torchslim.experiment import store as st

    return st.experiment_path(args.id, args.experiments_dir)


def _update(args: argparse.Namespace) -> int:
    from torchslim.experiment import control

    changes = {k: v for k, v in (("trial_concurrency", args.concurrency),
                                 ("max_trial_number", args.max_trials),
                                 ("max_experiment_duration", args.duration)) if v is not None}
    command = control.send(_folder(args), "update", changes)
    for key, (old, new) in command.result.items():
        print(f"experiment {args.id}: {key} {old} -> {new}")
    return 0


def _trial(args: argparse.Namespace) -> int:
    from torchslim.experiment import control
    from torchslim.experiment import store as st

    if not args.trial_action:
        args._trial_parser.print_help()
        return 2
    folder = _folder(args)
    if args.trial_action == "kill":
        with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
            record = control.find_trial(store.trials(with_intermediate=False), args.trial)
        command = control.send(folder, "kill", {"trial_id": record.trial_id})
        print(f"trial {record.trial_id} killed (was {command.result['was']})")
        return 0
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        records = store.trials(statuses=[args.status] if args.status else None)
    if args.json:
        print(jsonsafe.dumps([r.to_dict() for r in records], indent=2))
        return 0
    from torchslim.cli.experiment import _table

    rows = [(r.trial_id, r.status, "-" if r.value is None else f"{r.value:.6g}",
             "-" if r.duration is None else f"{r.duration:.1f}",
             json.dumps(r.parameters)[:60]) for r in records]
    if not rows:
        print(f"experiment {args.id} has no trials" + (f" with status {args.status}"
                                                       if args.status else ""))
        return 0
    _table(("TRIAL", "STATUS", "VALUE", "SECONDS", "PARAMETERS"), rows)
    return 0


def _log(args: argparse.Namespace) -> int:
    from torchslim.experiment import control
    from torchslim.experiment import store as st

    folder = _folder(args)
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        record = control.find_trial(store.trials(with_intermediate=False), args.trial)
    stream = "stderr" if args.stderr else "stdout"
    stored = record.stderr_path if args.stderr else record.stdout_path
    path = Path(stored) if stored else folder / "trials" / record.trial_id / stream
    if not path.is_file():
        print(f"trial {record.trial_id} has no {stream} log yet ({record.status})", file=sys.stderr)
        return 1
    with open(path, "rb") as f:
        sys.stdout.buffer.write(f.read())
    sys.stdout.flush()
    return 0


def _import(args: argparse.Namespace) -> int:
    from torchslim.experiment import control
    from torchslim.experiment import store as st
    from torchslim.experiment.importdata import load_import_file, space_for_stored

    folder = _folder(args)
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        cfg = store.experiment()["config"]
    records = load_import_file(args.file, space_for_stored(cfg))  # errors before sending
    raw = json.loads(Path(args.file).read_text())
    command = control.send(folder, "import", {"records": raw})
    ids = command.result["imported"]
    print(f"imported {len(records)} trial(s) into {args.id}: "
          f"{', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    return 0


def start_with_web(exp: Any, args: argparse.Namespace, spawn: Callable[[Any], int],
                   print_best: Callable[[Any], None]) -> int:
    """``create/resume --web``: the experiment plus its web UI (with the control token).

    In the background (default) the UI serves here until Ctrl-C, which ends only the UI;
    with ``--foreground`` the UI serves from a thread while the experiment runs here.
    """
    import threading

    from torchslim.experiment.webui.server import make_server, serve

    if not args.foreground:
        code = spawn(exp)
        if code == 0:
            serve(exp.id, exp.folder.parent, host=args.host, port=args.port)
        return code
    server = make_server(args.host, args.port, exp.folder.parent, exp.id)
    token = server.tokens.token(exp.id)
    print(f"web UI at {server.url}/experiments/{exp.id}?token={token} (token {token})", flush=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True)
    thread.start()
    try:
        exp.run(progress=args.progress)
    finally:
        server.shutdown()
        server.server_close()
    print_best(exp)
    return 0 if exp.status in ("DONE", "STOPPED") else 1


def _delete(args: argparse.Namespace) -> int:
    import shutil

    from torchslim.errors import ConfigError
    from torchslim.experiment import store as st

    folder = _folder(args)
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        status = st.effective_status(store.experiment(), folder)
    if status == "RUNNING":
        raise ConfigError(f"experiment {args.id!r} is running; stop it first "
                          f"(torchslim experiment stop {args.id})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"delete {args.id}: pass --yes to delete without asking")
        answer = input(f"delete experiment {args.id} and everything in {folder}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    shutil.rmtree(folder)
    print(f"experiment {args.id} deleted ({folder})")
    return 0
