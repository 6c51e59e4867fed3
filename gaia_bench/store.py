"""The results store: one SQLite row per job, keyed by the job id (a hash of its full config).

Each finished job is committed in its own transaction (WAL mode, synchronous=FULL), so killing a
run at any moment loses no finished job. Writers that meet a lock wait and retry with jittered
back-off, so several processes on one machine may write to one store (several `gaia-bench run`
drivers, a `results import`).

Jobs that run in other processes or on other machines (``--max-parallel``, ``--executor
submitit``) never open the database: each writes its record atomically (fsynced, then renamed) as
``<work dir>/results/<job_id>.json``, and the driver -- the only writer -- puts records into SQLite
as jobs finish and merges files left over (jobs that finished after their driver was killed) at the
start and end of every run and in `gaia-bench status`. Why: cluster nodes share the store over
NFS or Lustre, where SQLite's WAL does not work (its index lives in one host's shared memory) and
byte-range locks are unreliable, while a rename within a directory is atomic. A retried job
replaces its file, and merging is idempotent (see :meth:`ResultsStore.merge_result_files`).

Tables ``grids``, ``grid_cells`` and ``cells`` record what each run planned, so `gaia-bench status`
counts a grid's pending cells, not only the finished ones.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from gaia_bench.errors import UsageError
from gaia_bench.paths import atomic_write
from gaia_bench.records import ResultRecord, prefer

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
CREATE TABLE IF NOT EXISTS grids (grid TEXT PRIMARY KEY, command TEXT, created_at TEXT, cells INTEGER);
CREATE TABLE IF NOT EXISTS cells (
    job_id TEXT PRIMARY KEY,
    model TEXT, init TEXT, adaptation TEXT, dataset TEXT, task TEXT, shots TEXT, seed INTEGER
);
CREATE TABLE IF NOT EXISTS grid_cells (grid TEXT, job_id TEXT, PRIMARY KEY (grid, job_id)) WITHOUT ROWID;
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


class ResultsStore(contextlib.AbstractContextManager):
    """A results database. Opening it creates it (and its directory) when missing. SQLite's and
    the OS's errors pass through as they are: what they mean for the user (a damaged file, a full
    or read-only disk) is told by the CLI (gaia_bench/cli/store_errors.py)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_DDL)
        except sqlite3.Error:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def put(self, record: dict) -> None:
        """Insert or replace one job's record, durably, retrying while another writer holds the lock."""
        self.put_many([record])

    def put_many(self, records: Iterable[dict]) -> None:
        rows = [_row(r) for r in records]
        if not rows:
            return
        marks = ",".join("?" * len(_COLUMNS))
        self._write(lambda: self._conn.executemany(
            f"INSERT OR REPLACE INTO results ({','.join(_COLUMNS)}) VALUES ({marks})", rows))

    def _write(self, body: Any, attempts: int = 30) -> None:
        """Run ``body()`` in one IMMEDIATE transaction; while another process holds the write lock,
        wait (the connection's busy timeout) and retry with jittered back-off."""
        for attempt in range(attempts):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                body()
                self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                message = str(exc)
                if ("locked" in message or "busy" in message) and attempt < attempts - 1:
                    time.sleep(min(2.0, 0.05 * (attempt + 1)) * (0.5 + random.random()))
                    continue
                raise

    def merge_result_files(self, directory: str | Path) -> int:
        """Put the per-job result files in ``directory`` into the store (one transaction), then
        delete them; returns how many records were merged. A finished record is never replaced by
        a failed one, nor a record by an older or equally old one (the driver's own copy, which
        may carry more, e.g. the job's log path). Unreadable files are renamed ``*.bad``."""
        directory = Path(directory)
        if not directory.is_dir():
            return 0
        seen: list[tuple[Path, tuple]] = []  # (file, identity): a file replaced meanwhile is left for next time
        records: dict[str, dict] = {}
        for path in sorted(directory.glob("*.json")):
            try:
                inode = _identity(path)
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or not {"job_id", "status", "config"} <= record.keys():
                    raise ValueError("not a result record")
            except FileNotFoundError:
                continue  # merged and removed by another process meanwhile
            except (OSError, ValueError):
                with contextlib.suppress(OSError):
                    path.replace(path.with_suffix(".bad"))
                continue
            seen.append((path, inode))
            if _newer(record, records.get(record["job_id"])):
                records[record["job_id"]] = record
        if not records:
            return 0
        existing = {i: {"status": s, "finished_at": t} for i, s, t in self._rows("status, finished_at", records)}
        keep = [r for r in records.values() if _newer(r, existing.get(r["job_id"]))]
        self.put_many(keep)
        for path, inode in seen:
            with contextlib.suppress(FileNotFoundError):
                if _identity(path) == inode:
                    path.unlink()
        return len(keep)

    def _rows(self, columns: str, job_ids: Iterable[str]) -> list[tuple]:
        """``job_id, columns`` of each of ``job_ids`` that has a record, ``_CHUNK`` ids per query."""
        ids, rows = list(job_ids), []
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            q = f"SELECT job_id, {columns} FROM results WHERE job_id IN ({','.join('?' * len(chunk))})"
            rows.extend(self._conn.execute(q, chunk))
        return rows

    def record_grid(self, command: str, cells: Sequence[tuple]) -> str:
        """Remember what a run planned. ``cells``: (job_id, model, init, adaptation, dataset, task,
        shots, seed) each. Returns the grid's id, a hash of its job ids (the same command planned
        again is the same grid)."""
        import hashlib

        ids = sorted(cell[0] for cell in cells)
        grid = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")

        def body() -> None:
            self._conn.execute("INSERT OR REPLACE INTO grids VALUES (?, ?, ?, ?)", (grid, command, now, len(ids)))
            self._conn.executemany("INSERT OR IGNORE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?)", cells)
            self._conn.executemany("INSERT OR IGNORE INTO grid_cells VALUES (?, ?)", [(grid, i) for i in ids])

        self._write(body)
        return grid

    def statuses(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The stored status ('done' or 'failed') of each of ``job_ids`` that has a record."""
        return dict(self._rows("status", job_ids))

    def get(self, job_id: str) -> ResultRecord | None:
        row = self._conn.execute("SELECT record FROM results WHERE job_id=?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def query(self, **filters: str | int | None) -> list[ResultRecord]:
        """Records matching all given fields (``FILTER_FIELDS``); a value may use * wildcards."""
        where, args = _conditions(filters, FILTER_FIELDS, "results")
        sql = "SELECT record FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY model, init, adaptation, dataset, shots, seed"
        return [json.loads(r[0]) for r in self._conn.execute(sql, args)]

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    # ------------------------------------------------------------------ grids (`gaia-bench status`)
    def grids(self) -> list[dict]:
        """Recorded grids, the most recent first."""
        rows = self._conn.execute("SELECT grid, command, created_at, cells FROM grids ORDER BY created_at DESC, grid")
        return [{"grid": g, "command": c, "created_at": t, "cells": n} for g, c, t, n in rows]

    def grid_counts(self, grid: str | None, group_by: Sequence[str], **filters: str | int | None) -> list[tuple]:
        """Cells of ``grid`` (every recorded grid when None) counted by ``group_by`` fields and
        stored status: rows of (*group values, status or None when not yet stored, count)."""
        for name in group_by:
            if name not in FILTER_FIELDS:
                raise UsageError(f"cannot group by '{name}'", "group by: " + ", ".join(FILTER_FIELDS))
        where, args = self._cell_filters(grid, filters)
        cols = ", ".join(f"c.{g}" for g in group_by)
        sql = (f"SELECT {cols + ', ' if cols else ''}r.status, COUNT(*) FROM cells c "
               f"LEFT JOIN results r ON r.job_id = c.job_id{where} "
               f"GROUP BY {cols + ', ' if cols else ''}r.status ORDER BY {cols + ', ' if cols else ''}r.status")
        return self._conn.execute(sql, args).fetchall()

    def grid_records(self, grid: str | None, status: str, **filters: str | int | None) -> list[ResultRecord]:
        """Stored records with ``status`` of the cells of ``grid`` (every grid when None)."""
        where, args = self._cell_filters(grid, filters)
        sql = (f"SELECT r.record FROM cells c JOIN results r ON r.job_id = c.job_id{where}"
               f"{' AND' if where else ' WHERE'} r.status = ? ORDER BY c.model, c.init, c.adaptation, c.dataset, c.shots, c.seed")
        return [json.loads(row[0]) for row in self._conn.execute(sql, [*args, status])]

    def _cell_filters(self, grid: str | None, filters: dict) -> tuple[str, list]:
        where, args = _conditions(filters, FILTER_FIELDS[1:], "cells", "c.")  # a cell has no status
        if grid is not None:
            where, args = ["c.job_id IN (SELECT job_id FROM grid_cells WHERE grid = ?)", *where], [grid, *args]
        return (" WHERE " + " AND ".join(where) if where else ""), args

    def integrity_ok(self, quick: bool = False) -> bool:
        """SQLite's integrity_check, or its quick_check (no index-content cross-checks)."""
        return self._conn.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}").fetchone()[0] == "ok"


_CHUNK = 900  # ids per IN (...) query: under SQLite's oldest variable limit (999)


def _conditions(filters: dict, fields: Sequence[str], what: str, prefix: str = "") -> tuple[list[str], list]:
    """SQL conditions on ``fields`` (``= ?``, or ``GLOB ?`` for a value with * wildcards) and their
    arguments, for the filters that are not None."""
    where, args = [], []
    for name, value in filters.items():
        if value is not None:
            if name not in fields:
                raise UsageError(f"cannot filter {what} by '{name}'", "filter by: " + ", ".join(fields))
            where.append(f"{prefix}{name} {'GLOB' if isinstance(value, str) and '*' in value else '='} ?")
            args.append(value)
    return where, args


def _newer(record: dict, existing: dict | None) -> bool:
    """Whether ``record`` should replace ``existing`` (a record, or {status, finished_at}): the
    later of two attempts of the same kind (a tie keeps the stored one)."""
    verdict = prefer(existing, record)
    if verdict in ("new", "old"):
        return verdict == "new"
    return (record.get("finished_at") or "") > (existing.get("finished_at") or "")  # type: ignore[union-attr]


def _identity(path: Path) -> tuple:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def write_result_file(directory: str | Path, record: dict) -> Path:
    """Write one job's record as ``<directory>/<job_id>.json``, atomically and durably."""
    final = Path(directory) / f"{record['job_id']}.json"
    with atomic_write(final, "w", durable=True) as f:
        json.dump(record, f, sort_keys=True)
    return final
