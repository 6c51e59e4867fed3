"""A per-file sha256 manifest for generated datasets: `verify` names every missing or altered file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gaia_bench.jobs import PREPARED_MARKER, UNBUNDLED

MANIFEST = "MANIFEST.sha256"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{_digest(p)}  {p.relative_to(root).as_posix()}\n" for p in files]
    (root / MANIFEST).write_text("".join(lines))


def verify_manifest(root: Path, fix: str) -> list[str]:
    """One line per missing, altered or unexpected file."""
    manifest = root / MANIFEST
    if not manifest.exists():
        return [f"{manifest} is missing: {fix}"]
    problems = []
    listed = set()
    for line in manifest.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        listed.add(rel)
        path = root / rel
        if not path.exists():
            problems.append(f"missing file {path}: {fix}")
        elif _digest(path) != digest:
            problems.append(f"altered file {path} (checksum differs): {fix}")
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (MANIFEST, PREPARED_MARKER, UNBUNDLED)):
        if path.relative_to(root).as_posix() not in listed and not path.name.endswith(".tmp"):
            problems.append(f"unexpected file {path}: remove it, or {fix}")
    return problems
