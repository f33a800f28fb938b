"""The manager's side of live control: apply commands from the control channel to a running
:class:`~torchslim.experiment.runner.Runner` (see :mod:`torchslim.experiment.control`).

Each command's stored effect and its DONE mark are committed in one transaction *before* the
runner changes anything in memory or signals a trial, so a crash at any point leaves the
store consistent and the command either applied or still pending.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchslim.errors import ConfigError
from torchslim.experiment import control as ctl
from torchslim.experiment import store as st

if TYPE_CHECKING:
    from torchslim.experiment.runner import Runner

KILLED = "killed by user"


def poll(runner: "Runner") -> None:
    """Apply every pending command (called by the runner between events)."""
    for command in ctl.pending(runner.store):
        if not ctl.claim(runner.store, command):
            continue
        try:
            _apply(runner, command)
        except ConfigError as exc:
            ctl.reject(runner.store, command, str(exc))
        runner.emit_control(command)


def _apply(runner: "Runner", command: ctl.Command) -> None:
    if command.kind == "update":
        changes = ctl.check_update(command.args)
        ctl.transaction(runner.store, command, lambda c: ctl.update_config_sql(c, changes))
        for key, value in changes.items():
            setattr(runner.config, key, value)
    elif command.kind == "kill":
        _kill(runner, command, str(command.args.get("trial_id")))
    elif command.kind == "import":
        _import(runner, command)
    else:
        raise ConfigError(f"unknown control command {command.kind!r}")


def _kill(runner: "Runner", command: ctl.Command, trial_id: str) -> None:
    records = runner.store.trials(with_intermediate=False)
    record = ctl.find_trial(records, trial_id)
    seq = record.sequence
    active = runner.running.get(seq)
    if active is not None:
        # the trial's end is recorded when its process exits (USER_CANCELED unless it
        # managed to finish first); the command is done once the signal is on its way
        ctl.transaction(runner.store, command,
                        lambda c: {"trial_id": record.trial_id, "was": st.RUNNING})
        if active.forced is None:
            active.forced = (st.USER_CANCELED, KILLED)
            runner.service.kill(seq)
        return
    ctl.transaction(runner.store, command, lambda c: {
        "trial_id": record.trial_id, "was": ctl.cancel_trial_sql(c, record.trial_id, KILLED)})
    runner.queue = type(runner.queue)(r for r in runner.queue if r.sequence != seq)
    runner.tuner.receive(seq, None)
    runner.counts[st.USER_CANCELED] += 1


def _import(runner: "Runner", command: ctl.Command) -> None:
    from torchslim.experiment.importdata import import_records_sql, parse_records, with_default

    records = parse_records(command.args.get("records"), runner.space)
    normalised = [{**r, "value": with_default(r["value"], runner.config.objectives)}
                  for r in records]
    result = ctl.transaction(runner.store, command,
                             lambda c: import_records_sql(c, normalised))
    for trial_id, rec in zip(result["imported"], normalised):
        seq = int(trial_id.rsplit("_", 1)[1])
        runner.tuner.observe(seq, rec["raw"])
        runner.tuner.receive(seq, runner.tuner_feedback(st.SUCCEEDED, rec["value"], []))
        runner.count = max(runner.count, seq + 1)
        runner.note_result(st.SUCCEEDED, seq, rec["value"])
