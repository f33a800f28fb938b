"""``experiment import ID FILE``: add finished trials from NNI's import-data format.

The file is a JSON list of ``{"parameter": {...}, "value": number-or-dict}`` (what
``nnictl experiment import`` reads, and what ``export --format json`` writes: extra keys are
ignored). Each record is checked against the search space and becomes a SUCCEEDED trial the
tuner learns from, as if it had run.
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any, Mapping, Sequence

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import Param, SearchSpace

_U_EPS = 1e-6


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def raw_of(space: SearchSpace, parameters: Mapping[str, Any], where: str = "parameter") -> dict[str, Any]:
    """The raw point (what tuners see) of a parameter dict; ConfigError if it is not in the space."""
    return _raw_params(space.params, parameters, where)


def _raw_params(params: Sequence[Param], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} is {values!r}; allowed: a mapping of parameter names")
    raw: dict[str, Any] = {}
    for p in params:
        key = p.path.rsplit(".", 1)[-1]
        if p.type == "_constant":
            continue
        if key not in values:
            raise ConfigError(f"{where} has no value for search space parameter {p.path!r}")
        raw.update(_raw_param(p, values[key], f"{where}.{key}"))
    return raw


def _raw_param(p: Param, value: Any, where: str) -> dict[str, Any]:
    if p.type == "choice":
        for idx, (name, content) in enumerate(p.options):
            if name is None and content == value:
                return {p.path: idx}
            if name is not None and isinstance(value, Mapping) and value.get("_name") == name:
                return {p.path: idx, **_raw_params(content, value, where)}
        allowed = [c if n is None else {"_name": n} for n, c in p.options]
        raise ConfigError(f"{where} is {value!r}; allowed: one of {allowed}")
    if not _number(value):
        raise ConfigError(f"{where} is {value!r}; allowed: a number ({p.type})")
    if p.type == "randint":
        lo, hi = int(p.args[0]), int(p.args[1])
        if int(value) != value or not lo <= value < hi:
            raise ConfigError(f"{where} is {value!r}; allowed: an integer in [{lo}, {hi})")
        return {p.path: int(value)}
    if p.type in ("uniform", "quniform", "loguniform", "qloguniform"):
        lo, hi = p.args[0], p.args[1]
        if not lo <= value <= hi:
            raise ConfigError(f"{where} is {value!r}; allowed: a number in [{lo}, {hi}]")
        return {p.path: float(value)}
    # normal family: the raw answer is the probability u with value = inverse CDF(u)
    x = float(value)
    if "log" in p.type:
        if x <= 0:
            raise ConfigError(f"{where} is {value!r}; allowed: a positive number ({p.type})")
        x = math.log(x)
    u = NormalDist(p.args[0], p.args[1]).cdf(x)
    return {p.path: min(max(u, _U_EPS), 1 - _U_EPS)}


def parse_records(data: Any, space: SearchSpace, source: str = "import data") -> list[dict[str, Any]]:
    """Checked records ``{"parameter", "raw", "value"}`` from NNI's import-data list."""
    if not isinstance(data, list):
        raise ConfigError(f"{source} must be a JSON list of {{'parameter': ..., 'value': ...}}")
    out = []
    for i, item in enumerate(data):
        where = f"{source}: [{i}]"
        if not isinstance(item, Mapping) or "parameter" not in item or "value" not in item:
            raise ConfigError(f"{where} needs the keys 'parameter' and 'value'")
        value = item["value"]
        if isinstance(value, str):  # NNI's export writes the value as a JSON string
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        ok = _number(value) or (isinstance(value, Mapping) and any(
            _number(v) for v in value.values()))
        if not ok:
            raise ConfigError(f"{where}.value is {value!r}; allowed: a number or a dict of numbers")
        out.append({"parameter": dict(item["parameter"]),
                    "raw": raw_of(space, item["parameter"], f"{where}.parameter"),
                    "value": value})
    return out


def space_for_stored(config: Mapping[str, Any]) -> SearchSpace:
    """The search space tuners walk, from a stored config dict."""
    from torchslim.experiment.tuners import tuner_space

    if config.get("tuner_class_name"):
        return SearchSpace.parse(config["search_space"])
    return tuner_space(config["tuner"], config["search_space"])


def with_default(metric: Any, objectives: Sequence[Mapping[str, str]] | None) -> Any:
    """A metric dict with 'default' set from the first objective (when it lacks one)."""
    if objectives and isinstance(metric, Mapping) and "default" not in metric:
        name = objectives[0]["name"]
        if name in metric:
            return {**metric, "default": metric[name]}
    return metric


def load_import_file(path: str | Path, space: SearchSpace) -> list[dict[str, Any]]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read import file {str(p)!r}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"import file {str(p)!r} is not valid JSON: {exc}") from exc
    return parse_records(data, space, f"import file {str(p)!r}")


def import_records_sql(conn: sqlite3.Connection, records: Sequence[Mapping[str, Any]]
                       ) -> dict[str, Any]:
    """Insert checked records (see :func:`parse_records`; values already carrying their
    'default') as SUCCEEDED trials after the last one; returns their ids."""
    from torchslim.experiment.runner import metric_value as primary
    from torchslim.experiment.runner import trial_id_for

    seq = conn.execute("SELECT COALESCE(MAX(sequence) + 1, 0) FROM trials").fetchone()[0]
    now = time.time()
    ids = []
    for rec in records:
        trial_id = trial_id_for(seq)
        conn.execute(
            "INSERT INTO trials (sequence, trial_id, status, parameters, raw, final, metric, "
            "queued, started, ended, exit_code) VALUES (?, ?, 'SUCCEEDED', ?, ?, ?, ?, "
            "?, ?, ?, 0)",
            (seq, trial_id, json.dumps(rec["parameter"]), json.dumps(rec["raw"]),
             primary(rec["value"]), json.dumps(rec["value"]), now, now, now))
        ids.append(trial_id)
        seq += 1
    return {"imported": ids}
