"""Published results (e.g. the GV-B README table) as reference rows of a leaderboard.

A reference set is a JSON document (``kind: gaia-bench-references``) of entries, each one value
of a published table with its provenance (repository, commit, file, table, row, column, cell).
Entries become records shaped like stored results, marked ``reference``, so the leaderboard
aggregates them with the same code while showing them apart from results measured here. A set's
``searches`` (task type -> label, description, source) say how its heads' hyper-parameters were
searched, where that is known (GV-B's linear probe: OpenGVLab/gv-benchmark#6): every entry of that
task type carries it, and the reference table marks its rows with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from gaia_bench.errors import UsageError
from gaia_bench.shots import parse_shot

KIND = "gaia-bench-references"
_ENTRY_FIELDS = {"model", "init", "adaptation", "dataset", "task", "metric", "value", "higher_is_better", "shots",
                 "provenance"}


def builtin_dirs() -> list[Path]:
    """Where named reference sets live: the source tree's leaderboards/references, then ./leaderboards/references."""
    here = Path(__file__).resolve().parents[3] / "leaderboards" / "references"
    return list(dict.fromkeys([here, Path.cwd() / "leaderboards" / "references"]))


def named_file(name: str) -> Path:
    """The file of a named reference set (``gvb`` -> ``gvb_readme.json`` or ``gvb.json``)."""
    known: list[str] = []
    for folder in builtin_dirs():
        for candidate in (folder / f"{name}_readme.json", folder / f"{name}.json"):
            if candidate.is_file():
                return candidate
        if folder.is_dir():
            known += [p.stem.removesuffix("_readme") for p in folder.glob("*.json")]
    raise UsageError(f"no reference set named '{name}'",
                     ("known: " + ", ".join(sorted(set(known))) if known else "none are installed")
                     + "; or pass a file with --import-references FILE")


def parse_reference_set(text: str, source: str) -> dict:
    """Validate a reference document; every entry must carry its value and provenance."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON ({exc.msg} at line {exc.lineno})",
                         "pass a reference file like leaderboards/references/gvb_readme.json") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise UsageError(f"{source} is not a reference set (kind '{KIND}')",
                         "pass a reference file like leaderboards/references/gvb_readme.json")
    for i, entry in enumerate(doc.get("entries", [])):
        missing = _ENTRY_FIELDS - set(entry)
        if missing:
            raise UsageError(f"{source}: entry #{i} lacks {', '.join(sorted(missing))}",
                             "every reference entry needs its value, metric, shots and provenance")
    return doc


def load_reference_set(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"no such reference file: {path}", "pass a file like leaderboards/references/gvb_readme.json")
    return parse_reference_set(path.read_text(), str(path))


def as_records(doc: dict) -> list[dict]:
    """The entries of a reference set as result-shaped records (status done, ``reference`` block)."""
    records = []
    name = doc.get("name", "reference")
    searches = doc.get("searches") or {}
    for entry in doc.get("entries", []):
        search = {"search": searches[entry["task"]]} if entry["task"] in searches else {}
        shot = parse_shot(entry["shots"])
        metrics = entry.get("metrics") or {entry["metric"]: entry["value"]}
        records.append({
            "job_id": f"ref:{name}:{entry['init']}:{entry['model']}:{entry['adaptation']}:{entry['dataset']}:{shot.label}",
            "status": "done",
            "config": {"model": entry["model"], "init": entry["init"], "adaptation": entry["adaptation"],
                       "dataset": entry["dataset"], "task": entry["task"], "shots": shot.label, "seed": None},
            "shots": {"requested": entry["shots"], "fraction": shot.fraction, "per_class": shot.per_class},
            "metrics": metrics,
            "primary_metric": entry["metric"],
            "primary_value": float(entry["value"]),
            "higher_is_better": bool(entry["higher_is_better"]),
            "reference": {"set": name, "label": doc.get("label", name), **entry["provenance"], **search},
        })
    return records
