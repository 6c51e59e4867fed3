"""Where gaia-bench keeps data, caches and results (overridable by flags and environment)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_home() -> Path:
    """GAIA_BENCH_HOME, else the user cache dir (e.g. ~/.cache/gaia-bench)."""
    env = os.environ.get("GAIA_BENCH_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("gaia-bench"))


def data_root(explicit: str | Path | None = None) -> Path:
    """--data-root, else GAIA_BENCH_DATA, else <cache home>/data."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("GAIA_BENCH_DATA")
    return Path(env).expanduser() if env else cache_home() / "data"


def default_store() -> Path:
    """--store, else GAIA_BENCH_STORE, else <cache home>/results.db."""
    env = os.environ.get("GAIA_BENCH_STORE")
    return Path(env).expanduser() if env else cache_home() / "results.db"


def feature_cache_dir() -> Path:
    env = os.environ.get("GAIA_BENCH_FEATURES")
    return Path(env).expanduser() if env else cache_home() / "features"
