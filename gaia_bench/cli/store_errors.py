"""Opening the results store from the command line, and telling each way it can fail apart.

SQLite says "unable to open database file" for a directory, a read-only file system and a missing
permission alike, and "disk I/O error" for a full disk, so the cause is read from the error code
*and* the file system; each cause gets one line naming the file and its own fix. Only a store
that SQLite itself finds corrupt is called damaged.

Commands that write (`run`, `results import`, `results rescore`, `status`, which merges result
files) first run ``PRAGMA quick_check``, so nothing is added to a damaged file: it reads every
page once (~0.1 s for a 10,000-record, 43 MB store with warm caches, about the cost of reading
the file cold), against minutes for the jobs of a run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import sqlite3
from pathlib import Path
from typing import Iterator

from gaia_bench.errors import DataError, GaiaBenchError, UsageError
from gaia_bench.cli.common import default_store
from gaia_bench.store import ResultsStore

_CORRUPT, _NOTADB, _FULL = 11, 26, 13  # SQLite's primary result codes
_SQLITE_HEADER = b"SQLite format 3\0"


@contextlib.contextmanager
def open_store(path: str | Path | None, *, write: bool = False) -> Iterator[ResultsStore]:
    """The results store at ``path`` (default: $GAIA_BENCH_STORE or the user's), closed on exit.
    An SQLite error while opening or using it becomes one :class:`GaiaBenchError` naming the file
    and the fix. ``write``: refuse a store that fails ``PRAGMA quick_check``."""
    target = Path(path or default_store()).expanduser()
    if target.is_dir():
        raise UsageError(f"--store {target} is a directory, not a results file",
                         f"pass a file path, e.g. --store {shlex.quote(str(target / 'results.db'))}")
    try:
        store = ResultsStore(target)
    except (sqlite3.Error, OSError) as exc:
        raise store_problem(exc, target) from None
    with store:
        try:
            if write and not store.integrity_ok(quick=True):
                raise damaged(target, "PRAGMA quick_check found errors")
            yield store
        except sqlite3.Error as exc:
            raise store_problem(exc, target) from None


def damaged(path: Path, detail: str) -> DataError:
    q = shlex.quote
    saved, fresh = path.with_name(f"{path.stem}-salvaged.json"), path.with_name(f"{path.stem}-salvaged.db")
    return DataError(f"results store {path} is damaged ({detail})",
                     f"move it away and never write to it; salvage what still reads with `gaia-bench results export "
                     f"--salvage --store {q(str(path))} -o {q(str(saved))}`, then `gaia-bench results import "
                     f"{q(str(saved))} --store {q(str(fresh))}` (or SQLite's `.recover`, where your sqlite3 has it)")


def salvage_records(path: Path) -> tuple[list[dict], int]:
    """Every record of a damaged store that still reads, and how many rows did not. Rows are
    looked up one by one (rowids from the table's last row and from both of its indexes, each
    as far as it reads), so a damaged page costs only the rows on it. Read-only: nothing is written."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise store_problem(exc, path) from None
    rowids: set[int] = set()
    with contextlib.closing(conn):
        for sql in ("SELECT max(rowid) FROM results", "SELECT rowid FROM results INDEXED BY results_by_cell",
                    "SELECT rowid FROM results INDEXED BY sqlite_autoindex_results_1"):
            with contextlib.suppress(sqlite3.Error):
                found = [r[0] for r in conn.execute(sql) if r[0] is not None]
                rowids.update(range(1, max(found) + 1) if sql.startswith("SELECT max") and found else found)
        if not rowids:
            raise DataError(f"nothing in results store {path} still reads (its schema or every index is damaged)",
                            "try SQLite's `.recover` (`sqlite3 DAMAGED .recover | sqlite3 NEW.db`) where your sqlite3 has it")
        records, lost = [], 0
        for rowid in sorted(rowids):
            try:
                row = conn.execute("SELECT record FROM results WHERE rowid = ?", (rowid,)).fetchone()
                if row is not None:
                    records.append(json.loads(row[0]))
            except (sqlite3.Error, ValueError):
                lost += 1
    return records, lost


def store_problem(exc: BaseException, path: Path) -> GaiaBenchError:
    """What went wrong with the store at ``path``, from ``exc`` (an SQLite or OS error) and the
    file system: damaged, not a store, read-only, full, not permitted, or else SQLite's words."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (_CORRUPT, _NOTADB):
        if code == _NOTADB and not _has_sqlite_header(path):
            return UsageError(f"{path} is not an SQLite database (not a results store, or one whose first page is damaged)",
                              "pass --store with a results database; `gaia-bench results import` reads exports")
        return damaged(path, str(exc))
    folder = _existing_folder(path)
    fs = _statvfs(folder)
    os_errno = getattr(exc, "errno", None)
    if os_errno == errno.EROFS or (fs is not None and fs.f_flag & os.ST_RDONLY):
        return GaiaBenchError(f"results store {path} is on a read-only file system",
                              "pass --store with a path on a writable disk (copy the store there to read it)")
    if code == _FULL or os_errno == errno.ENOSPC or (fs is not None and fs.f_bavail == 0):
        return GaiaBenchError(f"disk full: no space left in {folder} for results store {path.name}",
                              "free some space there, or pass --store on another disk; results already stored are kept")
    if os_errno in (errno.EACCES, errno.EPERM) or not os.access(folder, os.W_OK) or (
            path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        return GaiaBenchError(f"no permission to write results store {path}",
                              "pass --store with a path you can write, or fix the permissions of the file and its folder")
    if isinstance(exc, OSError):
        return GaiaBenchError(f"cannot use results store {path}: {exc.strerror or exc}", "pass --store with another path")
    return GaiaBenchError(f"cannot use results store {path}: {exc}", "pass --store with another path")


def _existing_folder(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _statvfs(folder: Path) -> os.statvfs_result | None:
    try:
        return os.statvfs(folder)
    except OSError:
        return None


def _has_sqlite_header(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return True  # unreadable: not evidence that it is something else
