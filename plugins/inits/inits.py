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
   not cached — for a backbone that publishes nothing for X, for timm's tiny ``test_*``
   architectures (made for exactly this kind of small local run), and when that checkpoint is
   already cached (so every cell planned before downloads existed keeps its job id);
3. else the published file downloaded by the library that owns it (``WeightsRef.download``) into
   its standard cache, noted with its sha256 for `gaia-bench weights list`. When downloads are off
   (``--offline``, ``GAIA_BENCH_OFFLINE=1``, ``HF_HUB_OFFLINE=1``) or the library cannot fetch it
   (a pip package), the init fails with the file expected, the directories searched and the fixes
   (fetch it, or `gaia-bench pretrain` it).

A record of a job with published weights stores the file's tag, path, size and full sha256
(``weights``); its job id keeps the first 16 hex digits, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import BackboneSpec, DatasetSpec, InitContext, InitSpec, WeightsRef
from gaia_bench.errors import MissingWeightsError, UsageError
from gaia_bench.plugins.backbones.lib.weights_download import fetch_published, offline_reason
from gaia_bench.plugins.backbones.lib.weights_files import file_sha256
from gaia_bench.plugins.inits.lib.pretrain_contract import PretrainMethod

PLUGIN_ORDER = 200

RANDOM_SEED = 0
LABELS = {"imagenet": "ImageNet", "gaia": "GAIA", "clip": "CLIP"}


def _random_initialize(spec: BackboneSpec, ctx: InitContext):
    import torch

    torch.manual_seed(RANDOM_SEED)
    return spec.build(weights=None)


def locate_published(spec: BackboneSpec, name: str, ref: WeightsRef, ctx: InitContext, extra_fix: str = "") -> Path:
    """Init ``name``'s published file: on this machine, else downloaded by its library (unless
    downloads are off or the library cannot fetch it), else a MissingWeightsError naming the file,
    the directories searched and the fixes."""
    path = ref.locate()
    if path is not None:
        return path
    model = f"{spec.source}:{spec.name}"
    offline = offline_reason(ctx.offline)
    if ref.download is not None and offline is None:
        return fetch_published(model, name, spec.source, ref, ctx.progress)
    message = (f"{LABELS.get(name, name)} weights '{ref.tag}' for {spec.name} are not on this machine: "
               f"expected {ref.expected} in {' or '.join(ref.search_dirs)}")
    if ref.download is None:
        raise MissingWeightsError(message, f"on a machine with internet run `{ref.fetch_command}` and copy the cache "
                                           f"here{extra_fix}, or use --init random")
    raise MissingWeightsError(f"{message}, and downloads are off ({offline})",
                              f"drop {offline} to download them, or run `gaia-bench weights fetch {model} --init "
                              f"{name}` (or `{ref.fetch_command}`) on a machine with internet and copy the cache "
                              f"here{extra_fix}, or use --init random")


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


def _published_or_pool(name: str, method: PretrainMethod | None, spec: BackboneSpec, ctx: InitContext,
                       ref: WeightsRef) -> Path | None:
    """A published file that is not here: None when the init pretrains on the pool instead (its
    checkpoint is cached, or the backbone is a tiny test_* one: as before downloads existed),
    else the file downloaded (see :func:`locate_published`)."""
    if method is not None and pretrains_on_the_fly(spec, name) and ctx.upstream is not None:
        return None
    if method is None or ctx.upstream is None:
        return locate_published(spec, name, ref, ctx)
    if method.path(spec, ctx.upstream, ctx.hyperparams).exists():
        return None
    return locate_published(spec, name, ref, ctx, extra_fix=(
        f", or pretrain it on the upstream pool: `gaia-bench pretrain --method {name} --model "
        f"{spec.source}:{spec.name} --upstream {ctx.upstream.name}`"))


def _resolve(name: str, method: PretrainMethod | None, spec: BackboneSpec, ctx: InitContext,
             announce: bool = True) -> Resolved:
    from gaia_bench.console import notice

    label = LABELS.get(name, name)
    ref = spec.published_weights.get(name)
    path = ref.locate() if ref is not None else None
    if ref is not None and path is None:
        path = _published_or_pool(name, method, spec, ctx, ref)
    if ref is not None and path is not None:
        return Resolved(f"{name}:{ref.tag}:sha256={file_sha256(path)[:16]}", published=path)
    if method is None:
        raise UsageError(f"backbone '{spec.name}' has no published {label} weights",
                         "use --init random, or pick one from `gaia-bench models --pretrained`")
    upstream = _pool(name, ctx)
    hyperparams = ctx.hyperparams
    key = method.key(spec, upstream, hyperparams)
    if ref is not None and announce:
        notice(f"{spec.name}: {label} weights '{ref.tag}' are not on this machine (expected {ref.expected}); "
               f"init '{name}' uses its pretraining on {upstream.name} instead")
    return Resolved(f"{name}:pretrained:{upstream.name}@{upstream.version}:{key}", key=key)


def provenance(name: str, method: PretrainMethod | None, spec: BackboneSpec, ctx: InitContext) -> dict:
    """What a job's record says about its weights (never downloading): the published file's tag,
    path, size and full sha256 (``weights``), or the pool and hyper-parameters it was pretrained
    with (``pretraining``)."""
    ref = spec.published_weights.get(name)
    path = ref.locate() if ref is not None else None
    if ref is not None and path is not None:
        return {"weights": {"tag": ref.tag, "file": str(path), "bytes": path.stat().st_size,
                            "sha256": file_sha256(path)}}
    if method is None:
        return {}
    pool = ctx.upstream
    return {"pretraining": {"pool": f"{pool.name}@{pool.version}" if pool is not None else None,
                            "hyperparams": dict(ctx.hyperparams)}}


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
                    supports=supports, weights_source=weights_source, applies_to=applies_to, pretrain=method,
                    provenance=lambda spec, ctx: provenance(name, method, spec, ctx))


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
