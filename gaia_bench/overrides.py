"""Overrides of hyper-parameters (``--hp``, ``--init-hp``; the CLI parses ``KEY=VALUE`` as JSON): each
is cast to its default's type, so equal values always give one job id."""

from __future__ import annotations

import json
from typing import Any

from gaia_bench.errors import UsageError


def _cast(key: str, value: Any, default: Any) -> Any:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, cast = isinstance(value, bool), value
    elif isinstance(default, int):
        ok, cast = number and float(value).is_integer(), int(value) if number else value
    elif isinstance(default, float):
        ok, cast = number, float(value) if number else value
    else:
        ok, cast = True, value
    if not ok:
        raise UsageError(f"--hp {key}={json.dumps(value)} does not fit its default {json.dumps(default)}",
                         f"give a value of type {type(default).__name__}")
    return cast


def apply_overrides(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The defaults with the overrides of the keys they have, each cast to its default's type
    (``--hp lr=1`` and ``--hp lr=1.0`` must give the same job id). A key left None (an optional
    hyper-parameter, default None) is left out: adding one keeps the job ids of existing cells."""
    return {key: value for key, default in defaults.items()
            if (value := _cast(key, overrides[key], default) if key in overrides else default) is not None}
