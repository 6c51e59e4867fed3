"""``finetune`` on classification: the whole backbone plus a new linear head on its pooled features,
trained on the job's percentage-shot subset and evaluated on the dataset's test split.

Recipe, and why:

* Hold-out: ``val_share`` of every class with 2+ samples in the subset (the split
  :mod:`gaia_bench.protocol` draws it for every adaptation, same seed) is kept out of
  training. Held-out top-1 is measured every ``eval_every_epochs`` epochs; the best weights (backbone
  and head, ties keep the earlier) are the ones tested, and training stops after ``patience``
  evaluations without improvement, but never before the schedule's floor (``min_iters`` x its
  scratch factor): few-shot fine-tuning overfits quickly, and the test split must never choose the
  weights, yet a held-out set of a dozen images plateaus by chance early on (a random-init
  test_resnet on 10% of digits-lt stopped at step 28 of 180 near chance without the floor). When no
  class can spare a sample the full schedule runs and the final weights are tested (recorded).
* Schedule: :func:`gaia_bench.plugins.adaptations.lib.schedules.scaled_schedule` (grows with the subset, has a floor
  and a cap, 3x for an un-pretrained init), so every adaptation sizes its training the same way.
* Optimizer: AdamW, the backbone at ``backbone_lr_scale`` x the head's learning rate (a new head
  needs large steps, pretrained features small ones), weight decay on both; linear warm-up over the
  first 5% of the steps (Adam's early steps on a random head would wreck pretrained features), then
  cosine decay to 0. Cross-entropy with label smoothing (few labels: do not trust them to 100%).
* Augmentation: ``RandomResizedCrop(scale=(crop_scale_min, 1))``, mild because the images are small;
  horizontal flips only with ``hflip`` (off: a mirrored digit is another symbol). Evaluation uses the
  probe's deterministic pipeline (:func:`gaia_bench.imagedata.eval_transform`).
* Batches come from a stream of reshuffled epochs cut into full batches (``min(batch, n_fit)``), so
  every step has the same size (BatchNorm statistics and the step size stay comparable) and every
  image is seen equally often; an "epoch" is ``ceil(n_fit / batch)`` steps, as in the schedule rule.
* Determinism: all of it runs under ``torch.random.fork_rng`` seeded with the job seed (head init,
  shuffling, one augmentation seed per draw, so ``--workers`` changes nothing): a job id always
  gives the same numbers, and the caller's RNG state is untouched. The session's cached backbone
  is copied, never trained in place (the command's other jobs reuse it).
* Data-parallel (``--gpus-per-job N``, :mod:`gaia_bench.plugins.adaptations.lib.distributed`): N ranks draw the
  same stream of global batches and each trains on its shard of every batch (per-rank batch =
  batch / N), with its loss weighted by its shard's share, so the averaged gradient is the global
  batch's; held-out counts are summed over the ranks' shards. The trained weights come back to
  this process, which tests them as above. Without BatchNorm (or with SyncBatchNorm on CUDA) the
  numbers equal one process's up to floating-point summation order; the job id is the same.

The recipe, loop, early stopping, batch stream and data-parallel training are those of
:mod:`gaia_bench.plugins.adaptations.lib.training` (:func:`~gaia_bench.plugins.adaptations.lib.training.train_classifier`), shared
with ``tsds``, ``vqgan-replay`` and ``mf``; this module is the classification adaptation around it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gaia_bench.api import AdaptationResult, HeadInput, Samples
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS, rng_devices, train_classifier
from gaia_bench.tasks.types.lib.calibration import calibration_report

CLASSIFICATION_HYPERPARAMS = {
    "epochs": 30,
    "min_iters": 60,
    "max_iters": 600,
    "batch": 32,
    "lr": 1e-3,  # the head's; the backbone's is lr * backbone_lr_scale
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "crop_scale_min": 0.6,
    "hflip": False,  # digits and text must not be mirrored
    "eval_every_epochs": 1,
    # A fixed number of steps instead of the schedule rule (no floor, cap or scratch factor, and no
    # early stop before the last step; the best held-out weights are still tested): methods compared
    # at equal steps. None (the default) keeps the rule, and the job ids of cells that do not set it.
    "iters": None,
}


def run_classification_finetune(ctx) -> AdaptationResult:
    import torch

    from gaia_bench.plugins.adaptations.lib.training import Classifier, test_and_held_out_logits

    hp: dict[str, Any] = {**CLASSIFICATION_HYPERPARAMS, **FINETUNE_DEFAULTS, **ctx.hyperparams}
    dataset, spec = ctx.job.dataset, ctx.job.backbone
    size, seed, device = int(ctx.config.image_size), int(ctx.config.seed), ctx.device
    data = ctx.data
    train, test = data.train, data.test
    subset = list(data.subset.samples)
    y_subset = data.subset_labels()
    fit, val = np.asarray(data.fit, dtype=int), np.asarray(data.val, dtype=int)

    name = f"{spec.name} / {dataset.name}"
    with torch.random.fork_rng(devices=rng_devices(device)):
        # A copy: the session keeps the initialized backbone for the other jobs of the command. Seeded
        # after it is built: building reseeds (random init), reusing the session's copy does not.
        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = ctx.job.task.make_head(HeadInput((backbone.num_features,), (size, size)), dataset,
                                      Samples(subset, train.classes), hp, seed)
        model = Classifier(backbone, head.module, label_smoothing=float(hp["label_smoothing"]))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

        start = time.perf_counter()
        _, details = train_classifier(ctx, hp, model, ([subset[i] for i in fit], y_subset[fit]),
                                      ([subset[i] for i in val], y_subset[val]), label=f"finetune {name}",
                                      processes=ctx.processes)
        train_seconds = time.perf_counter() - start

        start = time.perf_counter()
        logits, val_logits = test_and_held_out_logits(ctx, model.classifier, test.samples, [subset[i] for i in val],
                                                      f"{name}:{dataset.test_split}")
        eval_seconds = time.perf_counter() - start

    metrics, calibration = calibration_report(logits, np.asarray(test.labels()), val_logits, y_subset[val],
                                              "held-out logits of the tested weights (those early stopping chose)")
    return AdaptationResult(
        predictions=list(logits),
        metrics=metrics,
        details={**details, **calibration},
        stage_seconds={"finetune_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=int(trainable),
    )
