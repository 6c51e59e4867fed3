"""The contract between an init's pretraining method (``InitSpec.pretrain``) and the plugin-owned
`gaia-bench pretrain` command: what a method answers without training (its checkpoint's key and
path), how it trains and loads, and its label space. The core reads only ``hyperparams``, so the
rest lives with the inits plugins; a third-party init with a method of its own imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from gaia_bench.api import BackboneSpec, DatasetSpec, Progress

if TYPE_CHECKING:
    from gaia_bench.backbone import Backbone


class CheckpointKey(Protocol):
    """Names a pretraining checkpoint without training it: a hash of the method, ``backbone``, the
    pool's name and version and the resolved ``hyperparams`` (the method's defaults with these
    overrides, seed included)."""

    def __call__(self, backbone: BackboneSpec, upstream: DatasetSpec,
                 hyperparams: Mapping[str, Any] | None = None) -> str: ...


class CheckpointPath(Protocol):
    """Where a pretraining checkpoint is cached (it may not exist yet): the cache file of the
    checkpoint that :class:`CheckpointKey` names for the same arguments."""

    def __call__(self, backbone: BackboneSpec, upstream: DatasetSpec,
                 hyperparams: Mapping[str, Any] | None = None) -> Path: ...


class Pretrain(Protocol):
    """Makes sure a pretraining checkpoint exists (the step that may take minutes): the cached
    checkpoint file, pretrained first (reading the pool under ``root``, the default data root when
    None, and reporting to ``progress``) when it is not cached or ``force`` is set. Concurrent
    callers train it once. ``every`` (``"50"`` steps, ``"0.5ep"`` epochs): while training, also write
    intermediate checkpoints, each with its ``step``, into the directory `gaia-bench watch` reads."""

    def __call__(self, backbone: BackboneSpec, upstream: DatasetSpec, hyperparams: Mapping[str, Any] | None = None,
                 force: bool = False, root: Path | None = None, progress: Progress | None = None,
                 every: str | None = None) -> Path: ...


class LoadPretrained(Protocol):
    """Builds a backbone from a pretraining checkpoint: ``backbone`` with the weights of the file
    ``path``; an error naming the fix when it was pretrained for another backbone."""

    def __call__(self, backbone: BackboneSpec, path: Path | str) -> Backbone: ...


class LabelSpace(Protocol):
    """Shows the unified label space a method trains on (`gaia-bench pretrain --show-label-space`):
    one ``(unified class, [(source, class name, similarity), ...])`` row per unified class of the
    pool under ``root`` (the default data root when None), with ``hyperparams`` resolved."""

    def __call__(self, upstream: DatasetSpec, hyperparams: Mapping[str, Any] | None = None,
                 root: Path | None = None) -> list[tuple[str, list[tuple[str, str, float]]]]: ...


@dataclass(frozen=True)
class PretrainMethod:
    """How an init makes its own weights by pretraining a backbone on an upstream pool (its
    :class:`DatasetSpec`, ``upstream`` below). ``key`` and ``path`` answer without training, so a
    job id is known before any checkpoint exists; ``checkpoint`` trains; ``load`` reads the result."""

    hyperparams: Mapping[str, Any]  # names -> defaults; `--init-hp KEY=VALUE` overrides them
    key: CheckpointKey
    path: CheckpointPath  # where ``key``'s checkpoint is cached (same arguments)
    checkpoint: Pretrain
    load: LoadPretrained
    label_space: LabelSpace | None = None  # None: the method unifies no vocabularies
