"""``checkpoint``: a backbone initialized from one checkpoint file, ``--init checkpoint --init-hp
path=FILE``, so any intermediate checkpoint of a pretraining run (`gaia-bench pretrain
--checkpoint-every N`) is an init of its own, and `gaia-bench watch` evaluates each as it appears.

No second loader: a `gaia-bench pretrain` checkpoint is loaded by its own method's ``load`` (what
``--init METHOD`` does with its cached checkpoint, GN+WS conversion included); any other file by the
backbone's own builder, ``spec.build(weights=FILE)`` (what an init does with a published file, e.g.
the GAIA releases). The weights id carries the file's sha256, so each file is its own cell wherever
it lies, and, for pretraining checkpoints, the method, pool and step (see :mod:`.lib.checkpoint_files`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gaia_bench import hookimpl
from gaia_bench.api import BackboneSpec, InitContext, InitSpec
from gaia_bench.errors import UsageError
from gaia_bench.plugins.inits.lib.checkpoint_files import CheckpointFile, read_checkpoint_file

PLUGIN_ORDER = 250

NAME = "checkpoint"


@dataclass(frozen=True)
class FileParameter:
    """What ``InitSpec.pretrain`` tells the core: its ``--init-hp`` names and defaults. This init
    pretrains nothing; its one parameter is the file to load."""

    hyperparams: Mapping[str, Any] = field(default_factory=lambda: {"path": ""})


def checkpoint_file(spec: BackboneSpec, ctx: InitContext) -> CheckpointFile:
    """The file ``--init-hp path=`` names, checked against the backbone it was pretrained for."""
    raw = str(ctx.hyperparams.get("path") or "")
    if not raw:
        raise UsageError("init 'checkpoint' needs the file to load",
                         "pass --init-hp path=FILE (e.g. one that `gaia-bench pretrain --checkpoint-every N` wrote)")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise UsageError(f"--init-hp path={raw}: no such file", "give the path of a checkpoint file")
    found = read_checkpoint_file(path)
    if found.backbone is not None and found.backbone != spec.name:
        raise UsageError(f"checkpoint {path} was pretrained for '{found.backbone}', not '{spec.name}'",
                         f"evaluate it with --model {found.backbone}")
    return found


def _initialize(spec: BackboneSpec, ctx: InitContext):
    found = checkpoint_file(spec, ctx)
    if found.method is None:
        return spec.build(weights=str(found.path))
    from gaia_bench.manager import get_registries

    method = get_registries().inits.get(found.method).pretrain
    return method.load(spec, found.path)


CHECKPOINT = InitSpec(
    name=NAME,
    description="one checkpoint file's weights (--init-hp path=FILE): e.g. a `gaia-bench pretrain` checkpoint",
    initialize=_initialize,
    weights_id=lambda spec, ctx: checkpoint_file(spec, ctx).weights_id,
    weights_source="a local file (named by its sha256, pretraining method and step)",
    pretrain=FileParameter(),
)


@hookimpl
def register_inits(register):
    register(CHECKPOINT)
