"""An example third-party gaia-bench plugin: a backbone, ``tinynet`` (a four-stage CNN), an
init, ``orthogonal`` (orthogonal weight matrices, Saxe et al. 2014), and an adaptation,
``nearest-centroid`` (cosine nearest class mean on the frozen backbone's cached features).

Install with ``pip install ./examples/gaia-bench-tinynets``; the ``gaia_bench`` entry point in its
pyproject.toml makes ``gaia-bench plugins`` list it, and
``gaia-bench run --model tinynet --init orthogonal --adapt nearest-centroid`` use all three.
"""

from __future__ import annotations

import gaia_bench

WIDTHS = (16, 32, 64, 128)
SEED = 0


def build_tinynet(weights: str | None = None):
    """Four conv stages (stride 2 each); pooled features are the last stage's global average."""
    import torch
    from torch import nn

    from gaia_bench.backbone import Backbone

    stages, channels = [], 3
    for width in WIDTHS:
        stages.append(nn.Sequential(nn.Conv2d(channels, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU()))
        channels = width
    trunk = nn.Sequential(*stages)
    if weights:
        trunk.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))

    def pool(net, x):
        return net(x).mean(dim=(2, 3))

    def pyramid(net, x):
        maps = []
        for stage in net:
            x = stage(x)
            maps.append(x)
        return maps

    return Backbone(trunk, WIDTHS[-1], name="tinynet", pool=pool, pyramid=pyramid,
                    pyramid_channels=WIDTHS, pyramid_reductions=(2, 4, 8, 16))


def orthogonal_initialize(spec: gaia_bench.BackboneSpec, ctx: gaia_bench.InitContext):
    """Every conv / linear weight an orthogonal matrix with ReLU gain, biases zero; fixed seed, so
    the weights are the same on every machine (``weights_id`` can name them without a file). It
    needs nothing from ``ctx`` (the upstream pool, pretraining hyper-parameters): it trains nothing."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    backbone = spec.build(weights=None)
    for module in backbone.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(module.weight, gain=nn.init.calculate_gain("relu"))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return backbone


@gaia_bench.hookimpl
def register_backbones(register):
    register(gaia_bench.BackboneSpec(name="tinynet", build=build_tinynet, source="gaia-bench-tinynets",
                                     description="example third-party 4-stage CNN", input_size=32,
                                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))


@gaia_bench.hookimpl
def register_inits(register):
    register(gaia_bench.InitSpec(
        name="orthogonal", description="orthogonal conv / linear weights with ReLU gain (Saxe et al. 2014)",
        initialize=orthogonal_initialize, weights_id=lambda spec, ctx: f"orthogonal:relu-gain:seed={SEED}",
        weights_source="no weights: generated on the fly", applies_to="any backbone (made for tinynet)"))


def nearest_centroid(ctx) -> gaia_bench.AdaptationResult:
    """Each class is the mean of its subset images' L2-normalised features; a test image gets the
    class whose mean is most similar (cosine). The runner has already drawn the job's subset
    (``ctx.data``) and fills in ``n_train`` and the subset statistics; the features come from the
    core's cache; the task computes its official metrics from one prediction per test image."""
    import numpy as np

    data, dataset = ctx.data, ctx.job.dataset

    def unit(x):
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)

    x_fit = unit(ctx.features(dataset.train_split)[list(data.indices)])
    y_fit = data.subset_labels()
    present = np.unique(y_fit)
    centroids = unit(np.stack([x_fit[y_fit == c].mean(axis=0) for c in present]))
    scores = unit(ctx.features(dataset.test_split)) @ centroids.T
    predictions = present[scores.argmax(axis=1)].tolist()
    metrics = ctx.job.task.evaluate(predictions, data.test, dataset)
    return gaia_bench.AdaptationResult(metrics=metrics, details={"classes_with_a_centroid": len(present)},
                                       trainable_params=0)


@gaia_bench.hookimpl
def register_adaptations(register):
    register(gaia_bench.AdaptationSpec(
        name="nearest-centroid", description="cosine nearest class mean on the frozen backbone's cached features",
        task_types=("classification",), run=nearest_centroid))
