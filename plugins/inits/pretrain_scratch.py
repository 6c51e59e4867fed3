"""``scratch``: no pretraining. The backbone's own random initialization with every BatchNorm
replaced by GroupNorm and every convolution weight-standardized (:mod:`gaia_bench.plugins.inits.lib.gnws`;
architectures without BatchNorm are kept as they are), and — set by ``plugins/adaptations/lib/schedules.py``,
where ``scratch`` is an un-pretrained init — the longer (x3) schedule whenever the whole model is
fine-tuned, as *Rethinking ImageNet Pre-training* calls for. `gaia-bench pretrain --method
scratch` only converts and caches the weights: there is nothing to train.
"""

from __future__ import annotations

from dataclasses import asdict

from gaia_bench import hookimpl
from gaia_bench.plugins.inits.inits import pretrained_init
from gaia_bench.plugins.inits.lib.pretraining import make_method

PLUGIN_ORDER = 240


def convert(backbone) -> dict:
    from gaia_bench.plugins.inits.lib.gnws import convert_gn_ws

    return asdict(convert_gn_ws(backbone))


def train(backbone, pool, hyperparams: dict, spec) -> dict:
    return {"losses": []}


METHOD = make_method("scratch", {}, train, convert=convert, trains=False)

SCRATCH = pretrained_init(
    "scratch",
    "no pretraining: random init with BatchNorm -> GroupNorm + Weight Standardization, and the x3 schedule "
    "when fine-tuned (Rethinking ImageNet Pre-training)",
    METHOD,
    weights_source="no weights: the random init converted to GN+WS (cached like a pretraining)",
    applies_to="any backbone (GN+WS where it has BatchNorm)",
)


@hookimpl
def register_inits(register):
    register(SCRATCH)
