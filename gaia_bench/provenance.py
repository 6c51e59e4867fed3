"""What produced a result: library versions, plugin distributions, git revision, machine."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

TRACKED_DISTRIBUTIONS = ("gaia-bench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pillow", "pluggy")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the gaia-bench source tree, when it runs from a git checkout (dirty marked)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(plugin_versions: dict[str, str], device: str) -> dict:
    """The provenance block stored with every result."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "versions": {d: v for d in TRACKED_DISTRIBUTIONS if (v := _version(d)) is not None},
        "plugins": plugin_versions,
        "git_sha": git_sha(),
    }
