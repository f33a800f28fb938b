"""What a trial may send on its metrics pipe, checked before the manager believes any of it.

A trial is untrusted input: a line that is not a JSON object with a known ``type`` and a
valid value (a finite number, or a dict whose ``default`` is one) is refused with the
reason, and the runner fails *that trial* with it. Nothing a trial writes can raise in
the manager. Stdlib only.
"""
from __future__ import annotations

import json
import math
from typing import Any

MAX_LINE_BYTES = 1 << 20  # one result line; a trial streaming garbage without '\n' is refused
KINDS = ("intermediate", "final", "exit")


class MessageError(ValueError):
    """A line from a trial that is not a valid message (the text says why)."""


def _refuse_constant(name: str) -> Any:
    raise MessageError(f"non-finite number {name} (JSON has none)")


def is_number(value: Any) -> bool:
    """A finite int/float that is not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def check_metric(value: Any, what: str = "value") -> Any:
    """``value`` if it is a metric: a finite number, a dict with a numeric 'default', or
    a dict of named numbers (multi-objective)."""
    if is_number(value):
        return value
    if isinstance(value, dict):
        if "default" not in value:
            # a multi-objective result: the experiment's objectives name its numbers
            if any(is_number(v) for v in value.values()):
                return value
            raise MessageError(f"{what} is a dict without a 'default' key or any number: "
                               f"{_short(value)}")
        if not is_number(value["default"]):
            raise MessageError(f"{what}['default'] is {_short(value['default'])}; allowed: a "
                               f"finite number")
        return value
    raise MessageError(f"{what} is {_short(value)}; allowed: a finite number or a dict with a "
                       f"numeric 'default' key")


def parse_message(line: bytes) -> tuple[str, Any, Any]:
    """``(kind, value, error)`` of one pipe line, or :class:`MessageError`.

    ``value`` is the metric for intermediate/final, the exit code for ``exit`` (whose
    ``error`` is the failure text of a function trial).
    """
    if len(line) > MAX_LINE_BYTES:
        raise MessageError(f"line of {len(line)} bytes (limit {MAX_LINE_BYTES})")
    try:
        message = json.loads(line, parse_constant=_refuse_constant)
    except MessageError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise MessageError(f"not JSON ({exc}): {_short(line)}") from None
    if not isinstance(message, dict):
        raise MessageError(f"not a JSON object: {_short(message)}")
    kind = message.get("type")
    if kind not in KINDS:
        raise MessageError(f"type is {_short(kind)}; allowed: {', '.join(KINDS)}")
    if kind == "exit":
        code, error = message.get("code"), message.get("error")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise MessageError(f"exit code is {_short(code)}; allowed: an integer or null")
        if error is not None and not isinstance(error, str):
            raise MessageError(f"exit error is {_short(error)}; allowed: a string or null")
        return kind, code, error
    if "value" not in message:
        raise MessageError(f"{kind} message without a 'value'")
    return kind, check_metric(message["value"], f"{kind} value"), None


def _short(value: Any, limit: int = 80) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
