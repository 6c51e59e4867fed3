"""What a checkpoint file is, read without keeping its tensors: what ``--init checkpoint`` and
`gaia-bench watch` need to name a file's weights (method, pool, pretraining step, content hash).

A `gaia-bench pretrain` checkpoint (:mod:`.pretraining`) carries ``method``, ``backbone``, ``pool``,
``pool_version`` and its ``state_dict``; an intermediate one also ``step`` and ``total_steps`` (a
final one has trained ``len(losses)`` steps). Any other file (a timm or torchvision state dict, a
GAIA release, safetensors) is a *foreign* checkpoint that the backbone's own builder reads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gaia_bench.errors import DataError
from gaia_bench.plugins.backbones.lib.weights_files import file_sha256


@dataclass(frozen=True)
class CheckpointFile:
    path: Path
    sha256: str  # of the file's bytes: each file is its own weights, whatever its name or folder
    method: str | None = None  # the pretraining method; None for a foreign checkpoint
    backbone: str | None = None  # the backbone it was pretrained for (None: foreign)
    pool: str | None = None  # "NAME@VERSION" of the upstream pool
    step: int | None = None  # optimizer steps trained when it was written
    total_steps: int | None = None  # steps of the whole run

    @property
    def weights_id(self) -> str:
        """``checkpoint:METHOD:POOL@VERSION:step=N:sha256=HASH``, or ``checkpoint:file:sha256=HASH``."""
        if self.method is None:
            return f"checkpoint:file:sha256={self.sha256[:16]}"
        return f"checkpoint:{self.method}:{self.pool}:step={self.step}:sha256={self.sha256[:16]}"


def _load(path: Path) -> object:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


@functools.lru_cache(maxsize=256)
def _read(path: str, size: int, mtime_ns: int) -> CheckpointFile:
    file = Path(path)
    digest = file_sha256(file)
    if file.suffix == ".safetensors":
        return CheckpointFile(file, digest)
    try:
        state = _load(file)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise DataError(f"cannot read checkpoint {file}: {type(exc).__name__}: {exc}",
                        "the file is damaged or not a PyTorch checkpoint; give another --init-hp path") from None
    if not (isinstance(state, dict) and {"method", "backbone", "state_dict"} <= set(state)):
        return CheckpointFile(file, digest)
    trained = len(state.get("losses") or [])
    return CheckpointFile(file, digest, str(state["method"]), str(state["backbone"]),
                          f"{state.get('pool')}@{state.get('pool_version')}", int(state.get("step", trained)),
                          int(state.get("total_steps", trained)))


def read_checkpoint_file(path: Path) -> CheckpointFile:
    """The file's header and hash (memoized per path, size and modification time)."""
    stat = path.stat()
    return _read(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def pretraining_snapshots(directory: Path, unreadable: Callable[[Path, DataError], None]) -> list[CheckpointFile]:
    """The `gaia-bench pretrain` checkpoints in ``directory`` (``*.pt``, not its sub-folders), by step.
    Files pretrain is still writing are invisible (renamed into place when complete); a file that
    does not read (copied in by hand and not complete yet, or damaged) goes to ``unreadable`` and
    is read again when it changes."""
    found = []
    for path in sorted(directory.glob("*.pt")):
        try:
            found.append(read_checkpoint_file(path))
        except DataError as exc:
            unreadable(path, exc)
    return sorted((f for f in found if f.method is not None), key=lambda f: (f.step, f.path.name))
