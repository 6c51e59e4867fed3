"""Writing and reading a results export (`gaia-bench results export --json`, a leaderboard's results.json).

An export comes from another machine or another person, so it is untrusted input: the whole file
is checked against the record schema (:class:`gaia_bench.records.ResultRecord`) before anything is
imported, and the first offence is named by record index and field in one line. Fields not listed
here are carried as they are (newer versions may add some).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from gaia_bench.errors import UsageError
from gaia_bench.records import ResultRecord
from gaia_bench.records import prefer
from gaia_bench.store import SCHEMA_VERSION, ResultsStore

EXPORTED = "pass a file written by `gaia-bench results export --json`; nothing was imported from it"

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]*")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", _number),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "array": ("an array", lambda v: isinstance(v, list)),
    "id": ("a job id (letters, digits, ':', '.', '_', '-')", lambda v: isinstance(v, str) and bool(_JOB_ID.fullmatch(v))),
    "status": ('"done" or "failed"', lambda v: v in ("done", "failed")),
    "numbers": ("an object of numbers", lambda v: isinstance(v, dict)),  # each value checked below
}
# field -> kind; "?" allows null; "!" marks a required field
_RECORD = {
    "job_id": "id!", "status": "status!", "config": "object!", "schema_version": "int", "shots": "object",
    "started_at": "text", "finished_at": "text", "metrics": "numbers", "primary_metric": "text",
    "primary_value": "number?", "higher_is_better": "bool", "n_train": "int", "n_test": "int",
    "trainable_params": "int", "details": "object", "timings": "numbers", "memory": "numbers",
    "environment": "object", "weights_report": "object", "skipped_samples": "int", "skipped": "array",
    "error": "text", "traceback": "text", "reference": "object", "split": "object", "predictions": "object",
    "interval": "object", "per_class": "object",
}
_CONFIG = {  # gaia_bench.jobs.JobConfig
    "model": "text!", "init": "text!", "adaptation": "text!", "dataset": "text!", "task": "text!", "shots": "text!",
    "seed": "int?!", "weights_id": "text", "hyperparams": "object", "dataset_version": "text", "image_size": "int",
    "protocol": "text", "split": "text",
}


class _Offence(Exception):
    """``where`` (a JSON path) is not what the schema wants."""


def _describe(value: Any) -> str:
    """The JSON type of ``value``, with the value itself when it is short."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    kind = ("a boolean" if isinstance(value, bool) else "a number" if _number(value)
            else "a string" if isinstance(value, str) else "an array")
    shown = json.dumps(value)
    return f"{kind} ({shown if len(shown) <= 40 else shown[:37] + '...'})"


def _check_fields(obj: dict, schema: dict[str, str], where: str) -> None:
    for name, spec in schema.items():
        if name not in obj:
            if spec.endswith("!"):
                raise _Offence(f"{where} has no '{name}'")
            continue
        value, kind = obj[name], spec.rstrip("!?")
        if value is None and "?" in spec:
            continue
        what, ok = _KINDS[kind]
        if not ok(value):
            raise _Offence(f"{where}.{name} is {_describe(value)}, expected {what}")
        if kind == "numbers":
            for key, item in value.items():
                if not _number(item):
                    raise _Offence(f"{where}.{name}.{key} is {_describe(item)}, expected a number")


def check_record(record: Any, where: str) -> None:
    """Raise :class:`_Offence` naming the first field of ``record`` that breaks the schema."""
    if not isinstance(record, dict):
        raise _Offence(f"{where} is {_describe(record)}, expected an object (one result record)")
    _check_fields(record, _RECORD, where)
    _check_fields(record["config"], _CONFIG, f"{where}.config")
    if record["status"] == "done" and "metrics" not in record:
        raise _Offence(f"{where} is done but has no 'metrics'")


def parse_export(data: bytes, source: str, hint: str = EXPORTED) -> tuple[list[ResultRecord], dict]:
    """The records of an export and its document (``{}`` for a bare list of records), or a
    :class:`UsageError` naming the first problem: not text, not JSON, not an export, or the first
    record (by index) and field that break the schema."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not a text file (byte {exc.start} is not UTF-8)", hint) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON ({exc.msg} at line {exc.lineno})", hint) from None
    except RecursionError:
        raise UsageError(f"{source} nests its JSON too deeply to be a results export", hint) from None
    if isinstance(doc, list):
        records, prefix, extras = doc, "", {}
    elif isinstance(doc, dict) and doc.get("kind") == "gaia-bench-results":
        records, prefix, extras = doc.get("results"), "results", doc
        version = doc.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise UsageError(f"{source}: schema_version is {_describe(version)}, expected an integer", hint)
        if version > SCHEMA_VERSION:
            raise UsageError(f"{source} has results schema {version}; this gaia-bench reads up to {SCHEMA_VERSION}",
                             "upgrade gaia-bench to read it")
        if "results" not in doc:
            raise UsageError(f"{source} has no 'results'", hint)
        if not isinstance(records, list):
            raise UsageError(f"{source}: results is {_describe(records)}, expected an array of result records", hint)
    else:
        raise UsageError(f"{source} is not a gaia-bench results export", hint)
    try:
        for i, record in enumerate(records):
            check_record(record, f"{prefix}[{i}]")
    except _Offence as offence:
        raise UsageError(f"{source}: {offence}", hint) from None
    return records, extras


def read_export_file(path: Path, hint: str = EXPORTED) -> tuple[list[ResultRecord], dict]:
    """:func:`parse_export` of a file, with a one-line error for a path that cannot be read."""
    if not path.exists():
        raise UsageError(f"no such file: {path}", hint)
    if path.is_dir():
        raise UsageError(f"{path} is a directory", hint)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", hint) from None
    return parse_export(data, str(path), hint)


def export_records(records: list[dict]) -> dict:
    """The portable JSON document of a list of records."""
    return {"schema_version": SCHEMA_VERSION, "kind": "gaia-bench-results", "results": records}


def merge_into(store: ResultsStore, records: list[dict], replace: bool = False) -> tuple[int, int, list[str]]:
    """Add imported records; returns (added, identical skipped, conflicting job ids left as they were)."""
    added, same, conflicts = [], 0, []
    for rec in records:
        verdict = "new" if replace else prefer(store.get(rec["job_id"]), rec)
        if verdict == "new":
            added.append(rec)
        elif verdict == "same":
            same += 1
        else:
            conflicts.append(rec["job_id"])
    store.put_many(added)
    return len(added), same, conflicts
