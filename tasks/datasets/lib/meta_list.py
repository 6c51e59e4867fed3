"""GV-B's classification list format: one ``relative/path label`` line per image
(split on the last space), paths relative to the dataset directory."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from gaia_bench.api import Sample, Samples
from gaia_bench.errors import DataError


def write_meta_list(path: Path, entries: Iterable[tuple[str, int]]) -> None:
    path.write_text("".join(f"{rel} {label}\n" for rel, label in entries))


def read_meta_list(root: Path, list_name: str, classes: list[str]) -> Samples:
    """Read ``root/list_name``; reject malformed lines and labels outside ``classes``."""
    path = root / list_name
    if not path.exists():
        raise DataError(f"missing {path}", "re-create the dataset with `gaia-bench datasets prepare`")
    samples = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel, sep, label = line.rpartition(" ")
        if not sep or not label.strip().lstrip("-").isdigit():
            raise DataError(f"{path}:{lineno}: expected 'relative/path label', got {line!r}",
                            "fix the line or re-create the list")
        target = int(label)
        if not 0 <= target < len(classes):
            raise DataError(f"{path}:{lineno}: label {target} is outside 0..{len(classes) - 1}",
                            "fix the label or the class list")
        samples.append(Sample(key=rel, path=root / rel, target=target))
    return Samples(samples, classes)
