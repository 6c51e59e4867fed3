"""The results store: one SQLite row per job, keyed by the job id (a hash of its full config).

Each finished job is committed in its own transaction (WAL mode, synchronous=FULL), so killing a
run at any moment loses no finished job and leaves a valid database.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Iterator

from gaia_bench.errors import GaiaBenchError, UsageError

SCHEMA_VERSION = 1

_COLUMNS = (
    "job_id", "status", "model", "init", "adaptation", "dataset", "task", "shots", "seed",
    "primary_metric", "primary_value", "n_train", "wall_time_s", "finished_at", "record",
)
FILTER_FIELDS = ("status", "model", "init", "adaptation", "dataset", "task", "shots", "seed")

_DDL = f"""
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    model TEXT, init TEXT, adaptation TEXT, dataset TEXT, task TEXT, shots TEXT, seed INTEGER,
    primary_metric TEXT, primary_value REAL, n_train INTEGER, wall_time_s REAL,
    finished_at TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_cell ON results (model, init, adaptation, dataset, shots);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""


def _row(record: dict) -> tuple:
    cfg = record["config"]
    return (
        record["job_id"], record["status"], cfg.get("model"), cfg.get("init"), cfg.get("adaptation"),
        cfg.get("dataset"), cfg.get("task"), cfg.get("shots"), cfg.get("seed"),
        record.get("primary_metric"), record.get("primary_value"), record.get("n_train"),
        record.get("timings", {}).get("total_s"), record.get("finished_at"),
        json.dumps(record, sort_keys=True),
    )


class ResultsStore:
    """A results database. Opening it creates it (and its directory) when missing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_DDL)
        except sqlite3.DatabaseError as exc:
            raise GaiaBenchError(f"cannot open results store {self.path}: {exc}",
                                 "pass --store with another path, or move the damaged file away") from None
        except OSError as exc:
            raise _os_error(exc, self.path) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def put(self, record: dict) -> None:
        """Insert or replace one job's record, durably, retrying while another writer holds the lock."""
        self.put_many([record])

    def put_many(self, records: Iterable[dict]) -> None:
        rows = [_row(r) for r in records]
        marks = ",".join("?" * len(_COLUMNS))
        for attempt in range(20):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(f"INSERT OR REPLACE INTO results ({','.join(_COLUMNS)}) VALUES ({marks})", rows)
                self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if "locked" in str(exc) and attempt < 19:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if "disk" in str(exc) or "full" in str(exc):
                    raise GaiaBenchError(f"disk full while writing {self.path}",
                                         "free some space or pass --store on another disk; finished results are kept") from None
                raise

    # ------------------------------------------------------------------ reading
    def finished_ids(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT job_id FROM results WHERE status='done' AND job_id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self._conn.execute(q, chunk))
        return found

    def get(self, job_id: str) -> dict | None:
        row = self._conn.execute("SELECT record FROM results WHERE job_id=?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def query(self, **filters: str | int | None) -> list[dict]:
        """Records matching all given fields (``FILTER_FIELDS``); a value may use * wildcards."""
        where, args = [], []
        for field, value in filters.items():
            if value is None:
                continue
            if field not in FILTER_FIELDS:
                raise UsageError(f"cannot filter results by '{field}'", "filter by: " + ", ".join(FILTER_FIELDS))
            if isinstance(value, str) and "*" in value:
                where.append(f"{field} GLOB ?")
            else:
                where.append(f"{field} = ?")
            args.append(value)
        sql = "SELECT record FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY model, init, adaptation, dataset, shots, seed"
        return [json.loads(r[0]) for r in self._conn.execute(sql, args)]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.query())

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _os_error(exc: OSError, path: Path) -> GaiaBenchError:
    if exc.errno == errno.ENOSPC:
        return GaiaBenchError(f"disk full while writing {path}", "free some space or choose another location")
    return GaiaBenchError(f"cannot use {path}: {exc.strerror or exc}", "check the path and its permissions, or pass another --store")


# ---------------------------------------------------------------------- export / import
def export_records(records: list[dict]) -> dict:
    """The portable JSON document of a list of records."""
    return {"schema_version": SCHEMA_VERSION, "kind": "gaia-bench-results", "results": records}


def read_export(text: str, source: str) -> list[dict]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON ({exc.msg} at line {exc.lineno})",
                         "import a file written by `gaia-bench results export --json`") from None
    if isinstance(doc, dict) and doc.get("kind") == "gaia-bench-results":
        records = doc.get("results", [])
    elif isinstance(doc, list):
        records = doc
    else:
        raise UsageError(f"{source} is not a gaia-bench results export",
                         "import a file written by `gaia-bench results export --json`")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not {"job_id", "status", "config"} <= rec.keys():
            raise UsageError(f"{source}: result #{i} lacks job_id/status/config",
                             "import a file written by `gaia-bench results export --json`")
    return records


def merge_into(store: ResultsStore, records: list[dict], replace: bool = False) -> tuple[int, int, list[str]]:
    """Add imported records; returns (added, identical skipped, conflicting job ids left as they were)."""
    added, same, conflicts = [], 0, []
    for rec in records:
        existing = store.get(rec["job_id"])
        if existing is None or replace:
            added.append(rec)
        elif existing.get("metrics") == rec.get("metrics") and existing.get("status") == rec.get("status"):
            same += 1
        elif existing.get("status") != "done" and rec.get("status") == "done":
            added.append(rec)  # a finished result replaces a failed attempt
        else:
            conflicts.append(rec["job_id"])
    store.put_many(added)
    return len(added), same, conflicts
