"""Measured backbone profiles (params, FLOPs, latency, throughput) in the results database.

They live in their own ``profiles`` table of the same SQLite file as the results, so one
``--store`` carries both what a backbone scores and how fast it runs; the leaderboard joins the
two for its speed/accuracy table. The table is created on first write, beside ``results``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from gaia_bench.errors import GaiaBenchError

_DDL = """
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL, input_size INTEGER, batch_size INTEGER, device TEXT,
    measured_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_by_model ON profiles (model, input_size, device);
"""


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    except (sqlite3.DatabaseError, OSError) as exc:
        raise GaiaBenchError(f"cannot open results store {path}: {exc}", "pass --store with another path") from None


def save_profile(path: str | Path, profile: dict) -> None:
    """Append one profile (a dict with model, input_size, batch_size, device, measured_at, ...)."""
    conn = _connect(Path(path).expanduser())
    try:
        conn.executescript(_DDL)
        conn.execute(
            "INSERT INTO profiles (model, input_size, batch_size, device, measured_at, record) VALUES (?,?,?,?,?,?)",
            (profile["model"], profile.get("input_size"), profile.get("batch_size"), profile.get("device"),
             profile["measured_at"], json.dumps(profile, sort_keys=True)),
        )
    finally:
        conn.close()


def load_profiles(path: str | Path) -> list[dict]:
    """Every profile in the store, oldest first (none when the file or its table does not exist)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return []
    conn = _connect(path)
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='profiles'").fetchone()
        if not exists:
            return []
        return [json.loads(r[0]) for r in conn.execute("SELECT record FROM profiles ORDER BY measured_at, id")]
    finally:
        conn.close()
