"""Helpers for tests: run the real CLI in a subprocess, and install a throwaway distribution
with `gaia_bench` entry points onto a PYTHONPATH (exactly what pip would leave in site-packages)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "gaia_bench", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, **kwargs)


def fake_distribution(site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> dict[str, str]:
    """Write modules and a ``<dist>-<version>.dist-info`` with ``[gaia_bench]`` entry points into
    ``site``; return the environment that makes a subprocess see it (and load entry points)."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[gaia_bench]\n{lines}")
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": pythonpath, "GAIA_BENCH_NO_ENTRYPOINTS": ""}


def tree_digest(root: Path) -> str:
    """One hash over every file's relative path and bytes: equal trees, equal digests."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def require_debian_sources() -> None:
    """Fail (never skip) when the Debian data the mini suite needs are missing: `make test`
    fetches them, so their absence is a broken set-up, not an optional feature."""
    import pytest

    from gaia_bench.errors import DataError
    from gaia_bench.tasks.datasets.lib.sources import debian_path

    try:
        debian_path("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist")
    except DataError as exc:
        pytest.fail(f"{exc} (run `make sources`; `make test` does it)", pytrace=False)
