"""Export trials as JSON (NNI-style records) or CSV (one column per parameter)."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.store import TrialRecord
from torchslim.utils import jsonsafe

FORMATS = ("csv", "json")
_FIXED = ("trialJobId", "sequence", "status", "value", "duration", "startTime", "endTime",
          "exitCode", "error", "stdout", "stderr")


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'_name': 'x', 'b': 1}} -> {'a._name': 'x', 'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def export_trials(records: Iterable[TrialRecord], fmt: str,
                  objectives: list[dict[str, str]] | None = None) -> str:
    """The trials as text in ``fmt`` ('csv' or 'json'); with several ``objectives`` each row
    says whether it is on the Pareto front (``paretoOptimal``)."""
    from torchslim.experiment.pareto import mark_pareto

    if fmt not in FORMATS:
        raise ConfigError(f"export format is {fmt!r}; allowed: {', '.join(FORMATS)}")
    rows = mark_pareto([r.to_dict() for r in records], objectives)
    fixed_cols = _FIXED + (("paretoOptimal",) if rows and "paretoOptimal" in rows[0] else ())
    if fmt == "json":
        return jsonsafe.dumps(rows, indent=2) + "\n"  # NaN/inf -> null
    flat_params = [flatten(r["parameter"]) for r in rows]
    param_cols = sorted({k for p in flat_params for k in p})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*fixed_cols, *param_cols, "intermediate"])
    for row, params in zip(rows, flat_params):
        value = row["value"].get("default") if isinstance(row["value"], dict) else row["value"]
        fixed = [value if k == "value" else row[k] for k in fixed_cols]
        writer.writerow([*fixed, *(params.get(k, "") for k in param_cols),
                         jsonsafe.dumps(row["intermediate"])])
    return out.getvalue()
