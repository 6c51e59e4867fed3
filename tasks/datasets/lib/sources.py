"""Where real data that ships inside registry packages is found on this machine.

Debian packages are looked up where apt installs them, then where `make sources` (or
`scripts/fetch_sources.sh`) extracts them without root: ``$GAIA_BENCH_SOURCES`` or
``~/.local/share/gaia-bench/sources``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from gaia_bench.errors import DataError


def sources_dir() -> Path:
    env = os.environ.get("GAIA_BENCH_SOURCES")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("gaia-bench")) / "sources"


def debian_path(package: str, relative: str) -> Path:
    """``relative`` (e.g. 'usr/share/datasets/fashion-mnist') from the installed or extracted package."""
    for base in (Path("/"), sources_dir()):
        candidate = base / relative
        if candidate.exists():
            return candidate
    raise DataError(
        f"the real data of Debian package '{package}' is not on this machine "
        f"(looked in /{relative} and {sources_dir() / relative})",
        f"run `make sources` (downloads and extracts it without root), or `sudo apt-get install {package}`",
    )
