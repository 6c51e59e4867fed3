"""The ``random`` initialization, and the rule every pretrained init (``imagenet``, ``gaia``,
``clip``, ``scratch`` and third-party ones) follows to find its weights.

``random``: the architecture's own initialization under ``torch.manual_seed(0)`` — fixed, so the
job seed changes the subset and the probe but not the backbone, and features are shared by seeds.

An init named X (:func:`pretrained_init`) initializes a backbone with, in this order:

1. the backbone's published weights for X (``spec.published_weights[X]``), when the file is on
   this machine: loaded with ``spec.build(weights=path)``, named by the file's hash;
2. else the checkpoint of X's pretraining method on the upstream pool of the job's
   :class:`~gaia_bench.api.InitContext` (the suite's pool, or ``--upstream``) with the context's
   hyper-parameters (``--init-hp``), named by its cache key and pretrained first, once, when it is
   not cached. A backbone that
   declares published weights for X that are missing fails with the file expected, the
   directories searched and both fixes (fetch it, or `gaia-bench pretrain` it) — unless it is one
   of timm's tiny ``test_*`` architectures, made for exactly this kind of small local run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import BackboneSpec, DatasetSpec, InitContext, InitSpec, WeightsRef
from gaia_bench.errors import MissingWeightsError, UsageError
from gaia_bench.plugins.backbones.lib.weights_files import file_sha256
from gaia_bench.plugins.inits.lib.pretrain_contract import PretrainMethod

PLUGIN_ORDER = 200

RANDOM_SEED = 0
LABELS = {"imagenet": "ImageNet", "gaia": "GAIA", "clip": "CLIP"}


def _random_initialize(spec: BackboneSpec, ctx: InitContext):
    import torch

    torch.manual_seed(RANDOM_SEED)
    return spec.build(weights=None)


def locate_published(spec: BackboneSpec, init_name: str, ref: WeightsRef, extra_fix: str = "") -> Path:
    """The published file, or a MissingWeightsError naming the file, the directories and the fixes."""
    path = ref.locate()
    if path is None:
        raise MissingWeightsError(
            f"{init_name} weights '{ref.tag}' for {spec.name} are not on this machine: "
            f"expected {ref.expected} in {' or '.join(ref.search_dirs)}",
            f"on a machine with internet run `{ref.fetch_command}` and copy the cache here{extra_fix}, or use --init random",
        )
    return path


def pretrains_on_the_fly(spec: BackboneSpec, name: str) -> bool:
    """Whether a missing published file may be replaced by pretraining on the pool without asking:
    only when the backbone publishes nothing for this init, or for timm's tiny test_* models."""
    return name not in spec.published_weights or (spec.source == "timm" and spec.name.startswith("test_"))


@dataclass(frozen=True)
class Resolved:
    """Where an init's weights for one backbone come from."""

    weights_id: str
    published: Path | None = None  # the published file, or None for the pool checkpoint
    key: str = ""


def _pool(name: str, ctx: InitContext) -> DatasetSpec:
    if ctx.upstream is None:
        raise UsageError(f"init '{name}' pretrains on an upstream pool, and no pool is registered or chosen",
                         "pass --upstream NAME (a suite with a pool, e.g. mini, or a pool's dataset name)")
    return ctx.upstream


def _resolve(name: str, method: PretrainMethod | None, spec: BackboneSpec, ctx: InitContext,
             announce: bool = True) -> Resolved:
    from gaia_bench.console import notice

    label = LABELS.get(name, name)
    ref = spec.published_weights.get(name)
    path = ref.locate() if ref is not None else None
    if ref is not None and path is not None:
        return Resolved(f"{name}:{ref.tag}:sha256={file_sha256(path)[:16]}", published=path)
    if method is None:
        if ref is not None:
            locate_published(spec, label, ref)
        raise UsageError(f"backbone '{spec.name}' has no published {label} weights",
                         "use --init random, or pick one from `gaia-bench models --pretrained`")
    if ctx.upstream is None and ref is not None and not pretrains_on_the_fly(spec, name):
        locate_published(spec, label, ref)  # no pool to pretrain on: the missing file is the news
    upstream = _pool(name, ctx)
    hyperparams = ctx.hyperparams
    key = method.key(spec, upstream, hyperparams)
    cached = method.path(spec, upstream, hyperparams).exists()
    if ref is not None:
        if not cached and not pretrains_on_the_fly(spec, name):
            locate_published(spec, label, ref, extra_fix=f", or pretrain it on the upstream pool: "
                             f"`gaia-bench pretrain --method {name} --model {spec.source}:{spec.name} --upstream {upstream.name}`")
        if announce:
            notice(f"{spec.name}: {label} weights '{ref.tag}' are not on this machine (expected {ref.expected}); "
                   f"init '{name}' uses its pretraining on {upstream.name} instead")
    return Resolved(f"{name}:pretrained:{upstream.name}@{upstream.version}:{key}", key=key)


def pretrained_init(name: str, description: str, method: PretrainMethod | None, *, weights_source: str,
                    applies_to: str = "any backbone") -> InitSpec:
    """An init that loads published weights for ``name`` when they are here, else its pretraining
    method's checkpoint on the upstream pool (see the module docstring)."""

    def weights_id(spec: BackboneSpec, ctx: InitContext) -> str:
        return _resolve(name, method, spec, ctx).weights_id

    def initialize(spec: BackboneSpec, ctx: InitContext):
        resolved = _resolve(name, method, spec, ctx, announce=False)
        if resolved.published is not None:
            return spec.build(weights=str(resolved.published))
        assert method is not None
        path = method.checkpoint(spec, _pool(name, ctx), ctx.hyperparams, root=ctx.data_root, progress=ctx.progress)
        return method.load(spec, path)

    supports = (lambda spec: True) if method is not None else (lambda spec: name in spec.published_weights)
    return InitSpec(name=name, description=description, initialize=initialize, weights_id=weights_id,
                    supports=supports, weights_source=weights_source, applies_to=applies_to, pretrain=method)


RANDOM = InitSpec(
    name="random",
    description="the architecture's own random initialization (torch.manual_seed(0))",
    initialize=_random_initialize,
    weights_id=lambda spec, ctx: f"random:torch.manual_seed({RANDOM_SEED})",
    weights_source="no weights: generated on the fly",
)


@hookimpl
def register_inits(register):
    register(RANDOM)
