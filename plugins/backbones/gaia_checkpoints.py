"""OpenGVLab's released GAIA / Up-A / Up-E / Up-G ResNet-50 checkpoints as ``gaia`` weights
(catalog ``gaia``).

The GV-B releases are mmcv / mmcls / mmdet checkpoints. What their state dicts look like (learned
from OpenGVLab/gv-benchmark's configs and backbones, and GAIA-vision/GAIA-det):

* Up-A ``r50.pth``, Up-E ``c-r50.pth`` / ``d-r50.pth``: an mmcls ``ResNet(depth=50, style='pytorch')``
  loaded straight into the backbone, i.e. torchvision's names (``conv1``, ``bn1``,
  ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...), possibly inside a ``state_dict`` wrapper;
* mmdet / mmcls whole-model checkpoints (GAIA-det subnets, fine-tuned models): the same names under
  ``backbone.``, beside ``neck.*``, ``rpn_head.*``, ``roi_head.*`` or ``head.*``, in ``state_dict``;
* Up-G ``r50-cls-bn.pth`` / ``r50-det-bn.pth`` (gv-benchmark's ``Central_Model``): two ResNet-50
  branches ``model.backbone.gv_global.*`` (the main one) and ``model.backbone.gv_patch.*``, plus
  cross-branch transfer layers ``model.trans.*``.

:func:`map_resnet_checkpoint` unwraps ``state_dict`` / ``model`` / DDP ``module.``, finds the
ResNet's prefix (the main Up-G branch when there are two), and maps it onto timm's or
torchvision's ResNet-50 (the same names): it returns the state dict to load plus the keys it left
missing and those it did not use, and raises when nothing matches or a shape differs. Only the
main branch of an Up-G model is a plain ResNet-50; its second branch and transfer layers are
reported as unexpected and not used.

Names: ``resnet50.up-a``, ``resnet50.up-e-c``, ``resnet50.up-e-d``, ``resnet50.up-g-cls``,
``resnet50.up-g-det`` (timm's ``resnet50`` with that release as its ``gaia`` weights). timm's plain
``resnet50`` carries the default release (Up-E C-R50) as its published ``gaia`` weights
(:func:`with_gaia_weights`), whether or not the file is here: ``--init gaia`` on ``resnet50``
always means that release, and a missing file is an error naming it (never a silent switch to
pretraining on the pool).

Files are looked up as ``<dir>/<release path>`` (gv-benchmark's ``checkpoints/`` layout, e.g.
``up-e/c-r50.pth``) in ``$GAIA_BENCH_WEIGHTS/gaia`` and then ``<gaia-bench cache>/weights/gaia``.
OpenGVLab hands the GV-B checkpoints out through its model zoo (https://opengvlab.github.io/,
OpenGVLab/gv-benchmark), not a public URL; the missing-file message says where to put them.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from gaia_bench import hookimpl
from gaia_bench.api import BackboneCatalog, BackboneSpec, WeightsRef
from gaia_bench.errors import GaiaBenchError
from gaia_bench.paths import cache_home

if TYPE_CHECKING:
    import torch

PLUGIN_ORDER = 110

SOURCE = "gaia"
INIT = "gaia"
ARCH = "resnet50"
MAIN_BRANCH = "gv_global"  # Central_Model's main task (gv-benchmark configs: main_task_name='gv_global')
STEM_KEY, BLOCK_KEY = "conv1.weight", "layer1.0.conv1.weight"
HEAD_PREFIXES = ("fc.", "head.", "classifier.")
ZOO = "https://opengvlab.github.io/benchmark.html (OpenGVLab/gv-benchmark model zoo)"


@dataclass(frozen=True)
class Release:
    tag: str
    path: str  # relative to the weights directory, as under gv-benchmark's checkpoints/
    description: str


RELEASES: dict[str, Release] = {r.tag: r for r in (
    Release("up-a", "up-a/r50.pth", "Up-A R50 (GV-B upstream-amateur)"),
    Release("up-e-c", "up-e/c-r50.pth", "Up-E C-R50 (GV-B classification expert, multi-source supervised)"),
    Release("up-e-d", "up-e/d-r50.pth", "Up-E D-R50 (GV-B detection expert)"),
    Release("up-g-cls", "up-g/r50-cls-bn.pth", "Up-G R50, classification (GV-B generalist; main branch)"),
    Release("up-g-det", "up-g/r50-det-bn.pth", "Up-G R50, detection (GV-B generalist; main branch)"),
)}
DEFAULT_TAG = "up-e-c"


class GaiaCheckpointError(GaiaBenchError):
    """A checkpoint that does not map onto the ResNet-50 it was meant for."""


# --------------------------------------------------------------------------- where the files are
def weights_dirs() -> list[Path]:
    """Directories searched, in order: $GAIA_BENCH_WEIGHTS/gaia, then <cache home>/weights/gaia."""
    dirs = [Path(os.environ["GAIA_BENCH_WEIGHTS"]).expanduser() / "gaia"] if os.environ.get("GAIA_BENCH_WEIGHTS") else []
    return dirs + [cache_home() / "weights" / "gaia"]


def locate(release: Release) -> Path | None:
    for directory in weights_dirs():
        if (directory / release.path).is_file():
            return directory / release.path
    return None


def weights_ref(release: Release) -> WeightsRef:
    target = weights_dirs()[0] / release.path
    return WeightsRef(
        tag=f"{ARCH}.{release.tag}", locate=functools.partial(locate, release), expected=release.path,
        search_dirs=tuple(str(d) for d in weights_dirs()),
        fetch_command=f"mkdir -p {target.parent} && cp /path/to/gv-benchmark/checkpoints/{release.path} {target}"
                      f"  # {release.path} comes from {ZOO}",
    )


# --------------------------------------------------------------------------- the key mapping
@dataclass
class MappedCheckpoint:
    """What :func:`map_resnet_checkpoint` made of a checkpoint."""

    state_dict: dict[str, Any]  # complete for the target: mapped tensors, the target's own for missing keys
    prefix: str  # the ResNet's prefix in the checkpoint ("" for a bare backbone)
    loaded: int
    missing: list[str] = field(default_factory=list)  # target tensors the checkpoint lacks (left as built)
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors not used (other branches, necks, heads)

    def report(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "loaded": self.loaded, "missing": self.missing, "unexpected": self.unexpected}


def unwrap(checkpoint: Any) -> dict[str, Any]:
    """The flat tensor dict inside mmcv / DeiT-style wrappers, without DDP's ``module.``."""
    while isinstance(checkpoint, Mapping):
        inner = next((checkpoint[k] for k in ("state_dict", "model", "module")
                      if isinstance(checkpoint.get(k), Mapping)), None)
        if inner is None:
            break
        checkpoint = inner
    if not isinstance(checkpoint, Mapping):
        raise GaiaCheckpointError(f"the checkpoint holds a {type(checkpoint).__name__}, not a state dict",
                                  "give the .pth file of a GAIA / GV-B release")
    return {k.removeprefix("module."): v for k, v in checkpoint.items() if hasattr(v, "shape")}


def find_prefix(keys: list[str], branch: str = MAIN_BRANCH) -> str:
    """The prefix under which the checkpoint keeps a ResNet (stem and first block both present);
    the ``branch`` one when there are several (an Up-G Central_Model)."""
    key_set = set(keys)
    prefixes = sorted({k[:-len(BLOCK_KEY)] for k in keys if k.endswith(BLOCK_KEY)})
    prefixes = [p for p in prefixes if p + STEM_KEY in key_set and (p == "" or p.endswith("."))]
    if not prefixes:
        first = ", ".join(keys[:5]) or "none"
        raise GaiaCheckpointError(
            f"no ResNet in this checkpoint: no '<prefix>{BLOCK_KEY}' with its '<prefix>{STEM_KEY}' (keys start with: {first})",
            "the file is not a GAIA / GV-B ResNet checkpoint; MetaNet (MN-B*) releases need another backbone")
    if len(prefixes) == 1:
        return prefixes[0]
    chosen = [p for p in prefixes if re.search(rf"(^|\.){re.escape(branch)}\.$", p)]
    if len(chosen) != 1:
        raise GaiaCheckpointError(f"several ResNets in this checkpoint ({', '.join(prefixes)}) and none is branch '{branch}'",
                                  "extract the backbone you want into its own state dict")
    return chosen[0]


def map_resnet_checkpoint(checkpoint: Any, target: Mapping[str, torch.Tensor], branch: str = MAIN_BRANCH) -> MappedCheckpoint:
    """Map a GAIA / GV-B checkpoint onto a ResNet's ``state_dict()`` (timm or torchvision names).

    Raises :class:`GaiaCheckpointError` when no ResNet is found, nothing maps, or a tensor's shape
    differs (a supernet checkpoint must have its subnet extracted first); missing target tensors
    are reported, not fatal. Classifier heads (``fc.*``) the target does not have are dropped
    silently; every other unused tensor is reported as unexpected.
    """
    tensors = unwrap(checkpoint)
    prefix = find_prefix(list(tensors), branch)
    mapped = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    unexpected = [k for k in tensors if not k.startswith(prefix)]
    unexpected += [prefix + k for k in mapped if k not in target and not k.startswith(HEAD_PREFIXES)]
    shapes = [f"{prefix}{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items()
              if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if shapes:
        raise GaiaCheckpointError(
            f"{len(shapes)} tensor(s) of the checkpoint have other shapes than {ARCH}'s: {', '.join(shapes[:4])}",
            "the checkpoint is another architecture; a GAIA-det supernet needs its ResNet-50 subnet extracted first "
            "(GAIA-det's scripts/extract_subnet.sh)")
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]
    missing = [k for k in wanted if k not in mapped]
    loaded = len(wanted) - len(missing)
    if loaded == 0:
        raise GaiaCheckpointError(f"none of {ARCH}'s tensors are in the checkpoint (prefix '{prefix}')",
                                  "the file is not a ResNet-50 checkpoint")
    state = {k: (mapped[k] if k in mapped else v) for k, v in target.items()}
    return MappedCheckpoint(state, prefix, loaded, missing, unexpected)


def read_checkpoint(path: str | Path) -> Any:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise GaiaCheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}",
                                  "the file is damaged or not a PyTorch checkpoint") from None


def load_into(model, path: str | Path, branch: str = MAIN_BRANCH) -> MappedCheckpoint:
    """Load a GAIA / GV-B checkpoint into a timm or torchvision ResNet; report what did not fit."""
    from gaia_bench.console import notice

    result = map_resnet_checkpoint(read_checkpoint(path), model.state_dict(), branch)
    model.load_state_dict(result.state_dict, strict=True)
    if result.missing:
        notice(f"warning: {Path(path).name} lacks {len(result.missing)} tensor(s) of {ARCH}, left as initialized: "
               f"{', '.join(result.missing[:5])}{' …' if len(result.missing) > 5 else ''}")
    if result.unexpected:
        notice(f"{Path(path).name}: {len(result.unexpected)} tensor(s) not used (other branches, necks, heads), "
               f"e.g. {', '.join(result.unexpected[:3])}")
    return result


# --------------------------------------------------------------------------- the catalog
def build(weights: str | None = None):
    """timm's ResNet-50 backbone; ``weights`` is any checkpoint in a GAIA / GV-B layout (a bare
    torchvision / timm ResNet-50 state dict is one too)."""
    from gaia_bench.plugins.backbones.timm_backbones import build_timm

    backbone = build_timm(ARCH)
    if weights:
        backbone.weights_report = {"file": str(weights), **load_into(backbone.trunk, weights).report()}
    return backbone


def _gaia_if_cached(ref: WeightsRef) -> str:
    return INIT if ref.locate() is not None else "random"


def _build_resnet50(ref: WeightsRef, build_timm_spec, weights: str | None = None):
    """timm's resnet50: the GAIA file through the GAIA loader, anything else as timm builds it."""
    located = ref.locate() if weights else None
    if weights and located is not None and Path(weights) == located:
        return build(weights)
    return build_timm_spec(weights=weights)


def with_gaia_weights(spec: BackboneSpec) -> BackboneSpec:
    """timm's spec of the plain ``resnet50`` with the default GV-B release as its ``gaia`` weights
    (``spec`` unchanged for any other name)."""
    if spec.name != ARCH:
        return spec
    ref = weights_ref(RELEASES[DEFAULT_TAG])
    return replace(spec, build=functools.partial(_build_resnet50, ref, spec.build),
                   description=f"{spec.description}; gaia weights: {RELEASES[DEFAULT_TAG].description}",
                   published_weights={**spec.published_weights, INIT: ref})


def get_spec(name: str) -> BackboneSpec | None:
    arch, _, tag = name.partition(".")
    if arch != ARCH or not tag:  # the plain name is timm's (see with_gaia_weights)
        return None
    release = RELEASES.get(tag)
    if release is None:
        return None
    ref = weights_ref(release)
    return BackboneSpec(
        name=name, build=build, source=SOURCE, description=f"timm {ARCH} with {release.description} as gaia weights",
        published_weights={INIT: ref}, default_init=functools.partial(_gaia_if_cached, ref),
    )


def _names() -> list[str]:
    return [f"{ARCH}.{tag}" for tag in RELEASES]


CATALOG = BackboneCatalog(
    source=SOURCE,
    description="OpenGVLab GAIA / Up-A / Up-E / Up-G ResNet-50 checkpoints (resnet50.<release>) as gaia weights, "
                "from $GAIA_BENCH_WEIGHTS/gaia or <cache>/weights/gaia",
    names=_names,
    get=get_spec,
)


@hookimpl
def register_backbones(register):
    register(CATALOG)
