"""torchvision's classification models as backbones (lazy catalog ``torchvision``).

Pooled features: the model with its last ``nn.Linear`` replaced by identity. ImageNet weights: the
``DEFAULT`` weights enum, read from torch.hub's checkpoint directory (downloaded there from the
enum's URL, checked against the hash prefix in its file name, when missing). Feature pyramid: the ResNet
family (``layer1..layer4``). A name timm also has (``resnet50``) is ambiguous: write
``torchvision:resnet50`` for this one, ``timm:resnet50`` for timm's.
"""

from __future__ import annotations

import functools
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import BackboneCatalog, BackboneSpec, WeightsRef
from gaia_bench.errors import GaiaBenchError
from gaia_bench.plugins.backbones.lib.weights_download import url_fetch
from gaia_bench.plugins.backbones.lib.weights_files import imagenet_if_cached, torch_hub_checkpoints

PLUGIN_ORDER = 120


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def _default_weights(name: str):
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _weights_ref(name: str, weights) -> WeightsRef:
    filename = weights.url.rsplit("/", 1)[-1]

    def locate() -> Path | None:
        path = torch_hub_checkpoints() / filename
        return path if path.exists() else None

    return WeightsRef(
        tag=str(weights), locate=locate, expected=filename, search_dirs=(str(torch_hub_checkpoints()),),
        fetch_command=f"python -c \"import torchvision; torchvision.models.get_model('{name}', weights='DEFAULT')\"",
        download=lambda progress: url_fetch(weights.url, torch_hub_checkpoints(), progress),
    )


def _strip_classifier(model) -> int:
    """Replace the last Linear layer by identity; return its input width."""
    from torch import nn

    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        raise GaiaBenchError("this torchvision model has no linear classifier to remove",
                             "use the timm version of the architecture")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    width = getattr(parent, attr).in_features
    setattr(parent, attr, nn.Identity())
    return width


def _resnet_pyramid(trunk, x):
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    maps = []
    for layer in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
        x = layer(x)
        maps.append(x)
    return maps


def _state_dict(path: str) -> dict:
    """The checkpoint's tensors, read without running any code it carries; a refusal is one line
    naming the file (torch's own explanation runs to a dozen)."""
    import pickle

    import torch

    from gaia_bench.errors import DataError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line),
                      str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise DataError(f"refusing {path}: it is not a plain state dict of tensors ({reason.split(' Please use')[0]})",
                        "use the weights file torchvision publishes (e.g. ResNet50_Weights.DEFAULT.url), or --init "
                        "random") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}", "check the file, or use --init random") from None


def build_torchvision(name: str, weights: str | None = None):
    import torch
    import torchvision

    from gaia_bench.backbone import Backbone

    model = torchvision.models.get_model(name, weights=None)
    if weights:
        model.load_state_dict(_state_dict(weights))
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
        for aux in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    width = _strip_classifier(model)
    is_resnet = all(hasattr(model, f"layer{i}") for i in range(1, 5))
    channels: list[int] = []
    if is_resnet:
        with torch.no_grad():
            model.eval()
            channels = [m.shape[1] for m in _resnet_pyramid(model, torch.zeros(1, 3, 64, 64))]
    return Backbone(
        model, width, name=f"torchvision:{name}",
        pyramid=_resnet_pyramid if is_resnet else None,
        pyramid_channels=channels, pyramid_reductions=[4, 8, 16, 32] if is_resnet else [],
        no_pyramid_reason=f"only torchvision's ResNet family gives a pyramid here; try the timm version of '{name}'",
    )


def get_spec(name: str) -> BackboneSpec | None:
    if name not in _names():
        return None
    weights = _default_weights(name)
    refs = {"imagenet": _weights_ref(name, weights)} if weights is not None else {}
    size = 224
    if weights is not None:
        size = int(getattr(weights.transforms, "keywords", {}).get("crop_size", 224))

    return BackboneSpec(
        name=name, build=functools.partial(build_torchvision, name), source="torchvision",
        description=f"torchvision {name}", input_size=size, published_weights=refs,
        default_init=functools.partial(imagenet_if_cached, refs),
    )


def _pretrained_names() -> list[str]:
    return [n for n in _names() if _default_weights(n) is not None]


TORCHVISION = BackboneCatalog(
    source="torchvision",
    description="torchvision classification models; ImageNet weights from their URLs (torch.hub's checkpoints)",
    names=lambda: list(_names()),
    get=get_spec,
    pretrained_names=_pretrained_names,
)


@hookimpl
def register_backbones(register):
    register(TORCHVISION)
