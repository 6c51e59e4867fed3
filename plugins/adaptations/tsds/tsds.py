"""``tsds``: GAIA's task-specific data selection, then fine-tuning on the downstream subset together
with the selected upstream images.

1. Features: the init's backbone (frozen, eval mode) gives the pooled penultimate feature of every
   image of the job's downstream subset and of every labelled image of the upstream pool
   (``upstream``, a dataset of task ``upstream`` whose splits are its sources; an upstream class is
   ``source/name``, so the same concept under two vocabularies stays two classes). Both go through
   the feature cache, so the pool is embedded once per backbone and weights.
2. Selection (:mod:`gaia_bench.plugins.adaptations.tsds.lib.tsds_select`): class means, cosine similarity, ``top-k`` or
   ``pairs`` until ``budget`` images. The downstream class means come from the whole subset, so 2
   images per class (``--shots 2/class``) are enough, as in GAIA.
3. Training: ``finetune``'s recipe (:func:`gaia_bench.plugins.adaptations.lib.training.train_classifier`: the same
   hold-out and early stopping, schedule -- sized by the downstream images, so both methods take
   the same number of steps --, optimizer, warm-up and cosine decay, augmentation and seeding) with
   every batch topped up by the loop's extra stream: ``round(upstream_ratio x b)`` selected upstream
   images (``b`` = the downstream batch), drawn from their own stream of reshuffled epochs. The loss
   is ``CE(downstream) + upstream_weight x CE(upstream)``, each the mean over its part of the
   batch, so the downstream images never drown in a larger selection. ``labels`` says what an
   upstream image is trained to predict: ``matched`` (GAIA's use of the selection, the default),
   the downstream class it was selected for, through the one downstream head -- the selection is
   extra labelled data of that class; ``upstream-head``, its own upstream class, through a second
   linear head that is dropped after training -- the upstream labels only shape the backbone.

The record's details keep the class matching (pairs, cosines, images taken), the number selected,
the schedule, steps run, peak memory; ``stage_seconds`` times each stage. `gaia-bench tsds select`
shows the matching without training, through :data:`TSDS` ``.preview``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec, DatasetSpec, Sample
from gaia_bench.errors import UsageError
from gaia_bench.plugins.adaptations.lib.finetune_classification import CLASSIFICATION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS
from gaia_bench.plugins.adaptations.tsds.lib.tsds_select import MODES, Selection, select

PLUGIN_ORDER = 320

LABEL_MODES = ("matched", "upstream-head")

HYPERPARAMS = {
    **FINETUNE_DEFAULTS,
    "upstream": "mini-upstream",  # the pool selected from (a dataset of task 'upstream')
    "mode": "top-k",  # or "pairs"; "random": the control (same budget, images drawn by the job seed)
    "budget": 500,  # upstream images selected at most
    "top_k": 2,  # upstream classes matched per downstream class (mode top-k)
    "labels": "matched",  # or "upstream-head"
    "upstream_ratio": 1.0,  # upstream images per downstream image in every batch
    "upstream_weight": 1.0,  # weight of the upstream part of the loss
}


@dataclass(frozen=True)
class SelectingAdaptationSpec(AdaptationSpec):
    """An adaptation that can also show what it selects without training: ``preview(ctx)`` returns
    :func:`selection_summary`'s dict (what `gaia-bench tsds select` prints)."""

    preview: Callable[[Any], dict] | None = None


@dataclass(frozen=True)
class Pool:
    """The labelled upstream images, one label space over all sources."""

    spec: DatasetSpec
    samples: list[Sample]
    labels: np.ndarray
    classes: list[str]
    source_of: list[str]  # per sample


def _check(hp: dict) -> None:
    if hp["mode"] not in MODES:
        raise UsageError(f"tsds mode '{hp['mode']}' is unknown", f"use --hp mode={' or mode='.join(MODES)}")
    if hp["labels"] not in LABEL_MODES:
        raise UsageError(f"tsds labels '{hp['labels']}' is unknown", f"use --hp labels={' or labels='.join(LABEL_MODES)}")
    if int(hp["budget"]) < 0 or int(hp["top_k"]) < 1:
        raise UsageError(f"tsds budget={hp['budget']} top_k={hp['top_k']} out of range", "use budget >= 0 and top_k >= 1")
    if float(hp["upstream_ratio"]) < 0 or float(hp["upstream_weight"]) < 0:
        raise UsageError("tsds upstream_ratio and upstream_weight must be >= 0", "e.g. --hp upstream_ratio=1.0")


def load_pool(ctx, name: str) -> Pool:
    """Every labelled source of the upstream pool ``name`` (a pool, or a suite standing for its
    pool), classes named ``source/class``."""
    spec = ctx.upstream_pool(name)
    samples, labels, classes, sources = [], [], [], []
    for source in spec.splits:
        part = ctx.session.load_split(spec, source)
        offset = len(classes)
        classes += [f"{source}/{c}" for c in part.classes]
        for s in part.samples:
            samples.append(s)
            labels.append(offset + int(s.target))
            sources.append(source)
    return Pool(spec, samples, np.asarray(labels, dtype=np.int64), classes, sources)


def pool_features(ctx, pool: Pool) -> np.ndarray:
    """Pooled features of the pool's images from the job's (frozen) backbone, via the feature cache."""
    from gaia_bench.features import cache_key, extract_features, samples_fingerprint
    from gaia_bench.imagedata import transform_id

    spec, size = ctx.job.backbone, ctx.config.image_size
    keys = [s.key for s in pool.samples]
    key = cache_key({"backbone": spec.name, "weights": ctx.config.weights_id, "dataset": pool.spec.name,
                     "dataset_version": pool.spec.version, "split": "+".join(pool.spec.splits),
                     "samples": samples_fingerprint(pool.samples), "transform": transform_id(size, spec.mean, spec.std)},
                    ctx.config.precision)
    cache = ctx.session.feature_cache
    feats = cache.load(key, keys) if cache else None
    if feats is None:
        advance = ctx.progress.start(f"features {spec.name} / {pool.spec.name}", len(keys))
        feats = extract_features(ctx.build_backbone(), pool.samples, image_size=size, mean=spec.mean, std=spec.std,
                                 device=ctx.device, batch_size=int(ctx.batch_size),
                                 workers=int(ctx.workers), on_batch=advance, precision=ctx.config.precision)
        ctx.progress.finish()
        if cache:
            cache.save(key, feats, keys, {"backbone": spec.name, "dataset": pool.spec.name, "split": "labelled sources"})
    return feats


def selection_summary(selection: Selection, pool: Pool, down_classes: list[str], down_counts: np.ndarray,
                      hp: dict) -> dict:
    """The class matching as the result record and `gaia-bench tsds select` show it."""
    per_class = np.bincount(selection.assigned, minlength=len(down_classes)) if len(selection) else \
        np.zeros(len(down_classes), dtype=int)
    return {
        "upstream": pool.spec.name,
        "mode": hp["mode"], "budget": int(hp["budget"]), "top_k": int(hp["top_k"]), "labels": hp["labels"],
        "n_pool": len(pool.samples), "n_upstream_classes": len(pool.classes),
        "n_selected": len(selection),
        "matches": [{"downstream": down_classes[m.downstream], "upstream": pool.classes[m.upstream],
                     "similarity": round(m.similarity, 4), "n_selected": m.n_selected} for m in selection.matches],
        "per_downstream_class": [{"class": c, "n_downstream": int(down_counts[i]), "n_selected": int(per_class[i])}
                                 for i, c in enumerate(down_classes)],
    }


def _select(ctx, hp: dict) -> tuple[Pool, Selection, dict, dict[str, float]]:
    """Features of subset and pool, then the selection; also its summary and stage timings."""
    _check(hp)
    start = time.perf_counter()
    pool = load_pool(ctx, str(hp["upstream"]))  # first: a wrong pool fails before any feature is computed
    x_up = pool_features(ctx, pool)
    features_seconds = time.perf_counter() - start
    dataset = ctx.job.dataset
    data = ctx.data
    x_down = ctx.features(dataset.train_split)[list(data.indices)]
    y_down = data.subset_labels()
    train = data.train
    start = time.perf_counter()
    selection = select(x_down, y_down, len(train.classes), x_up, pool.labels, len(pool.classes),
                       mode=hp["mode"], budget=int(hp["budget"]), top_k=int(hp["top_k"]), seed=int(ctx.config.seed))
    select_seconds = time.perf_counter() - start
    summary = selection_summary(selection, pool, list(train.classes),
                                np.bincount(y_down, minlength=len(train.classes)), hp)
    return pool, selection, summary, {"tsds_upstream_features": features_seconds, "tsds_select": select_seconds}


def preview(ctx) -> dict:
    """The selection of this job, without training (for `gaia-bench tsds select`)."""
    hp = {**CLASSIFICATION_HYPERPARAMS, **HYPERPARAMS, **ctx.hyperparams}
    summary = _select(ctx, hp)[2]
    summary["dataset"], summary["shots"], summary["model"] = ctx.job.dataset.name, ctx.config.shots, ctx.config.model
    summary["init"] = ctx.config.init
    return summary


def run(ctx) -> AdaptationResult:
    import torch
    from torch import nn

    from gaia_bench.plugins.adaptations.lib.training import (
        Classifier,
        ImageStream,
        augmenting_transform,
        rng_devices,
        test_and_held_out_logits,
        train_classifier,
    )

    from gaia_bench.runner import peak_memory_mb
    from gaia_bench.tasks.types.lib.calibration import calibration_report

    hp = {**CLASSIFICATION_HYPERPARAMS, **HYPERPARAMS, **ctx.hyperparams}
    pool, selection, summary, seconds = _select(ctx, hp)
    select_memory = peak_memory_mb(ctx.device)

    dataset, data = ctx.job.dataset, ctx.data
    train, test = data.train, data.test
    subset = list(data.subset.samples)
    y_subset = data.subset_labels()
    fit, val = np.asarray(data.fit, dtype=int), np.asarray(data.val, dtype=int)
    up_samples = [pool.samples[i] for i in selection.indices]
    if hp["labels"] == "matched":
        y_up, n_up_classes = selection.assigned, len(train.classes)
    else:  # the selected upstream classes, renumbered densely for the auxiliary head
        kept = np.unique(pool.labels[selection.indices]) if len(selection) else np.zeros(0, dtype=np.int64)
        y_up = np.searchsorted(kept, pool.labels[selection.indices])
        n_up_classes = max(len(kept), 1)

    spec = ctx.job.backbone
    size, seed, device = int(ctx.config.image_size), int(ctx.config.seed), ctx.device
    workers = int(ctx.workers)
    down_batch = min(int(hp["batch"]), max(len(fit), 1))
    up_batch = min(len(up_samples), round(down_batch * float(hp["upstream_ratio"])))
    up_weight = float(hp["upstream_weight"])
    upstream = None
    if up_batch:  # its own stream, seeded apart from the downstream one
        transform = augmenting_transform(size, spec.mean, spec.std, float(hp["crop_scale_min"]), bool(hp["hflip"]))
        upstream = ImageStream(up_samples, np.asarray(y_up, dtype=np.int64), transform, size, up_batch, seed + 1,
                               workers)

    name = f"{spec.name} / {dataset.name}"
    with torch.random.fork_rng(devices=rng_devices(device)):
        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = nn.Linear(backbone.num_features, len(train.classes))
        up_head = nn.Linear(backbone.num_features, n_up_classes) if hp["labels"] == "upstream-head" else None
        model = Classifier(backbone, head, label_smoothing=float(hp["label_smoothing"]), extra_head=up_head,
                           extra_weight=up_weight)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

        start = time.perf_counter()
        result, trained = train_classifier(ctx, hp, model, ([subset[i] for i in fit], y_subset[fit]),
                                           ([subset[i] for i in val], y_subset[val]),
                                           label=f"tsds train {name} (+{len(up_samples)} upstream)", extra=upstream)
        train_seconds = time.perf_counter() - start
        train_memory = peak_memory_mb(device)

        start = time.perf_counter()
        logits, val_logits = test_and_held_out_logits(ctx, model.classifier, test.samples, [subset[i] for i in val],
                                                      f"{name}:{dataset.test_split}")
        eval_seconds = time.perf_counter() - start

    trained["early_stopping"]["metric"] = "held-out top1 (downstream images only)"
    details = {"selection": summary, **trained,
               "batch": {"downstream": down_batch, "upstream": up_batch, "upstream_weight": up_weight,
                         "upstream_labels": hp["labels"]},
               "final_losses": {"loss": result.last_loss,
                                "downstream_loss": result.last_parts.get("main", result.last_loss),
                                "upstream_loss": result.last_parts.get("extra", float("nan"))},
               "peak_memory_after_train": train_memory, "peak_memory_after_select": select_memory}
    metrics, calibration = calibration_report(logits, np.asarray(test.labels()), val_logits, y_subset[val],
                                              "held-out logits of the tested weights (those early stopping chose)")
    return AdaptationResult(
        predictions=list(logits), metrics=metrics, details={**details, **calibration},
        stage_seconds={**seconds, "tsds_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=int(trainable),
    )


TSDS = SelectingAdaptationSpec(
    name="tsds",
    description="GAIA task-specific data selection: upstream images whose class means are closest (cosine, penultimate "
                "features) to the downstream classes, top-k per class or most-similar pairs up to a budget; then "
                "finetune on the subset with the selection mixed into every batch",
    task_types=("classification",),
    run=run,
    hyperparams=HYPERPARAMS,
    task_hyperparams={"classification": CLASSIFICATION_HYPERPARAMS},
    preview=preview,
)


@hookimpl
def register_adaptations(register):
    register(TSDS)
