"""Where gaia-bench keeps its caches and data (overridable by flags and environment), and how it
writes a file there: atomically. The commands' default store and feature cache: gaia_bench/cli/common.py."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Iterator

import platformdirs


def cache_home() -> Path:
    """GAIA_BENCH_HOME, else the user cache dir (e.g. ~/.cache/gaia-bench)."""
    env = os.environ.get("GAIA_BENCH_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("gaia-bench"))


def data_root(explicit: str | Path | None = None) -> Path:
    """--data-root, else GAIA_BENCH_DATA, else <cache home>/data."""
    explicit = explicit or os.environ.get("GAIA_BENCH_DATA")
    return Path(explicit).expanduser() if explicit else cache_home() / "data"


@contextmanager
def atomic_write(path: Path, mode: str = "wb", durable: bool = False) -> Iterator[IO]:
    """Write ``path`` through a temporary file in its directory, renamed over it when the block
    ends without an error (which deletes the temporary file instead), so a reader sees the old
    file or the whole new one, never a part. ``durable`` also fsyncs the file and the rename:
    a result file must survive a crash of the node that wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        with suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
