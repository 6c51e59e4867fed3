"""``vqgan-replay``: fine-tune on the downstream subset while replaying the upstream pool, stored
only as VQ code indices, so the backbone does not forget what it learnt upstream.

The pool's labelled images are kept as their VQ-GAN code indices (``codes.pt`` beside the cached
VQ-GAN, :mod:`gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train`), bit-packed ``ceil(log2(codebook))`` bits per token:
the result's ``details.storage`` compares that with the pool as image files and as JPEG. Every
training step decodes ``round(b * r / (1 - r))`` random upstream samples (``r`` = ``replay_ratio``,
``b`` = the downstream batch) so they are ``r`` of the mixed batch; they pass through the backbone
with the downstream images and are classified by an upstream head over the pool's labels
(``source/class``), the downstream images by the task head. Otherwise it is ``finetune``'s recipe
(:mod:`gaia_bench.plugins.adaptations.vqgan.lib.vqgan_finetune`; the replay is the training loop's extra batch stream),
so the comparison isolates the replay.
Classification only: replayed samples carry image-level labels.
"""

from __future__ import annotations

import time
from typing import Any

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec
from gaia_bench.errors import UsageError
from gaia_bench.plugins.adaptations.lib.finetune_classification import CLASSIFICATION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_config import VQGAN_HYPERPARAMS

PLUGIN_ORDER = 340

HYPERPARAMS = {**FINETUNE_DEFAULTS, **CLASSIFICATION_HYPERPARAMS, "replay_ratio": 0.25, **VQGAN_HYPERPARAMS}


def run(ctx) -> AdaptationResult:
    import torch
    from torch import nn

    from gaia_bench.plugins.adaptations.lib.training import rng_devices
    from gaia_bench.runner import peak_memory_mb
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_finetune import Replay, evaluate_test, fine_tune, job_split, replay_count
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import vqgan_for_job

    hp: dict[str, Any] = {**HYPERPARAMS, **ctx.hyperparams}
    ratio = float(hp["replay_ratio"])
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"replay_ratio={ratio} is outside [0, 1)", "it is the replayed share of each batch, e.g. --hp replay_ratio=0.25")
    split = job_split(ctx, hp)
    spec, seed = ctx.job.backbone, int(ctx.config.seed)
    down_batch = min(int(hp["batch"]), max(len(split.fit), 1))
    with torch.random.fork_rng(devices=rng_devices(ctx.device)):
        trained, vqgan_seconds = vqgan_for_job(ctx, hp)
        vqgan_memory = peak_memory_mb("cpu")["peak_rss_mb"]
        codes = trained.codes()
        # seeded apart from the downstream stream (which the job seed seeds)
        replay = Replay(trained.model, codes["indices"], codes["labels"], replay_count(down_batch, ratio),
                        int(ctx.config.image_size), tuple(spec.mean), tuple(spec.std), seed + 1)
        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = nn.Linear(backbone.num_features, split.num_classes)
        replay_head = nn.Linear(backbone.num_features, len(codes["classes"]))
        start = time.perf_counter()
        model, record, trainable = fine_tune(ctx, hp, split, backbone, head, label="vqgan-replay", replay=replay,
                                             replay_head=replay_head)
        train_seconds = time.perf_counter() - start
        train_memory = peak_memory_mb("cpu")["peak_rss_mb"]
        start = time.perf_counter()
        metrics, predictions, calibration = evaluate_test(ctx, model, "vqgan-replay", split)
        eval_seconds = time.perf_counter() - start

    seen = record.pop("samples_seen")
    mixed = seen["downstream"] + seen["upstream"]
    details = {
        **record,
        "replay": {"ratio": ratio, "per_step": {"downstream": record["optimizer"]["batch"],
                                                "upstream": replay.count},
                   "samples_seen": seen, "measured_ratio": round(seen["upstream"] / mixed, 4) if mixed else 0.0,
                   "upstream_samples": len(codes["indices"]), "upstream_classes": len(codes["classes"])},
        "storage": trained.summary["storage"],
        "steps_per_stage": {"vqgan": trained.summary["config"]["steps"], "finetune_replay": record["iterations_run"]},
        "peak_rss_mb_per_stage": {"vqgan": vqgan_memory, "finetune_replay": train_memory},
        "vqgan": {k: trained.summary[k] for k in ("pool_l1", "pool_psnr_db", "pool_codes_used", "train_seconds")}
                 | {"directory": str(trained.directory)},
        **calibration,
    }
    return AdaptationResult(
        metrics=metrics, predictions=predictions, details=details,
        stage_seconds={"vqgan": vqgan_seconds, "finetune_replay_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=trainable,
    )


VQGAN_REPLAY = AdaptationSpec(
    name="vqgan-replay",
    description="finetune with upstream samples replayed from VQ code indices (decoded on the fly, upstream "
                "head and labels) as replay_ratio of every batch, so the backbone does not forget",
    task_types=("classification",),
    run=run,
    hyperparams=HYPERPARAMS,
)


@hookimpl
def register_adaptations(register):
    register(VQGAN_REPLAY)
