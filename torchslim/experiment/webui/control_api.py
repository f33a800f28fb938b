"""The web UI's write side and analysis endpoints (second step of the UI).

Control (kill a trial, update concurrency/budget/duration) goes through the same control
channel as the CLI (:mod:`torchslim.experiment.control`) and needs the experiment's token:
``HMAC(server secret, experiment id)``, printed when the UI starts. Without it the UI is
read-only. Tokens travel in the ``X-Torchslim-Token`` header, which a cross-site form cannot
set, so a page elsewhere cannot drive the UI through the user's browser.

Routes (all JSON):

- ``POST /api/experiments/<id>/kill`` ``{"trial": "trial_0003"}``
- ``POST /api/experiments/<id>/update`` ``{"trialConcurrency", "maxTrialNumber", "maxExperimentDuration"}``
- ``GET /api/experiments/<id>/importance``: fANOVA importance of each parameter (Optuna)
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from http import HTTPStatus
from pathlib import Path
from typing import Any, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment import store as st

TOKEN_HEADER = "X-Torchslim-Token"
MAX_BODY = 64 * 1024
_UPDATE_KEYS = {"trialConcurrency": "trial_concurrency", "maxTrialNumber": "max_trial_number",
                "maxExperimentDuration": "max_experiment_duration"}


class Tokens:
    """Per-experiment control tokens derived from a secret made when the server starts."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def token(self, exp_id: str) -> str:
        return hmac.new(self.secret, exp_id.encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, exp_id: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.token(exp_id), str(given))


def read_body(handler: Any) -> dict[str, Any]:
    from torchslim.experiment.webui.server import HttpError

    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY:
        raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
    raw = handler.rfile.read(length) if length else b"{}"
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
    return body


def control(folder: Path, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a kill/update through the control channel; ConfigError for bad input."""
    from torchslim.experiment import control as ctl

    if action == "kill":
        trial = body.get("trial")
        if not isinstance(trial, str) or not trial:
            raise ConfigError("kill needs {'trial': 'trial_NNNN'}")
        with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
            record = ctl.find_trial(store.trials(with_intermediate=False), trial)
        command = ctl.send(folder, "kill", {"trial_id": record.trial_id}, timeout=10)
        return {"ok": True, **command.result}
    unknown = sorted(set(body) - set(_UPDATE_KEYS))
    if unknown:
        raise ConfigError(f"update has unknown key(s) {unknown}; allowed: {', '.join(_UPDATE_KEYS)}")
    changes = {_UPDATE_KEYS[k]: v for k, v in body.items() if v not in (None, "")}
    command = ctl.send(folder, "update", changes, timeout=10)
    return {"ok": True, "changed": command.result}


def importance(store: st.ExperimentStore) -> dict[str, Any]:
    """fANOVA importance of each parameter for the primary result (succeeded trials)."""
    from torchslim.experiment.importdata import space_for_stored

    config = store.experiment()["config"]
    done = [r for r in store.trials(statuses=(st.SUCCEEDED,), with_intermediate=False)
            if r.value is not None]
    if len(done) < 4:
        return {"importance": {}, "trials": len(done),
                "note": "needs at least 4 successful trials"}
    try:
        import optuna

        from torchslim.experiment.tuners.tpe import OptunaSuggester
    except ImportError:
        return {"importance": {}, "trials": len(done),
                "note": "parameter importance needs optuna (pip install 'torchslim[experiment]')"}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space_for_stored(config)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for record in done:
        raw = {k: v for k, v in record.raw.items() if not isinstance(v, (str, dict, list))}
        study.enqueue_trial(raw, skip_if_exists=False)
        trial = study.ask()
        try:
            space.sample(OptunaSuggester(trial))
        except Exception:  # e.g. a user tuner's point outside the space: not analysable
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, float(record.value))
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0)
        scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
        method = "fANOVA"
    except (ImportError, RuntimeError, ValueError):
        scores = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        method = "PED-ANOVA"
    return {"importance": {k: float(v) for k, v in scores.items()}, "trials": len(done),
            "method": method}
