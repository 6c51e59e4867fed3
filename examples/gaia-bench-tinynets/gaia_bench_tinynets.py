"""An example third-party gaia-bench plugin: ``tinynet``, a four-stage CNN.

Install with ``pip install ./examples/gaia-bench-tinynets``; the ``gaia_bench`` entry point in its
pyproject.toml makes ``gaia-bench plugins`` list it and ``gaia-bench run --model tinynet`` use it.
"""

from __future__ import annotations

import gaia_bench

WIDTHS = (16, 32, 64, 128)


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


@gaia_bench.hookimpl
def register_backbones(register):
    register(gaia_bench.BackboneSpec(name="tinynet", build=build_tinynet, source="gaia-bench-tinynets",
                                     description="example third-party 4-stage CNN", input_size=32,
                                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
