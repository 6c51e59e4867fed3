"""``finetune``: the whole model (backbone and a new task head) trained on the percentage-shot
subset, the backbone at a lower learning rate (``backbone_lr_scale`` x the head's), with
early stopping on a held-out part of the subset (``val_share`` of it, chosen by the job seed):
the weights that scored best there are the ones evaluated on the test split.

Each task trains its own head through its ``train_head`` hook with the backbone trainable:

* classification: :mod:`gaia_bench.plugins.adaptations.lib.finetune_classification` (linear head on the pooled
  features, augmentation, held-out top-1);
* segmentation / depth: the FPN decoder, trained by :mod:`gaia_bench.plugins.adaptations.lib.dense_probe`
  (held-out mIoU / RMSE);
* detection: torchvision's Faster R-CNN + FPN, trained by :mod:`gaia_bench.plugins.adaptations.lib.detection_head`
  (held-out VOC mAP).

All of them train on the one loop of :mod:`gaia_bench.plugins.adaptations.lib.training`.

Schedules follow :mod:`gaia_bench.plugins.adaptations.lib.schedules`; an un-pretrained init (``random``,
``scratch``) gets the 3x longer schedule the *Rethinking ImageNet Pre-training* paper calls for.

With ``--gpus-per-job N`` classification trains data-parallel in N processes
(:mod:`gaia_bench.plugins.adaptations.lib.distributed`; same global batch, same job id); the dense tasks train in
one process.
"""

from __future__ import annotations

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationSpec
from gaia_bench.plugins.adaptations.lib.detection_head import DETECTION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.dense_probe import DENSE_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.finetune_classification import CLASSIFICATION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS, train_task_head

PLUGIN_ORDER = 310

# Shared by every task; each head's own knobs enter only its task's job ids.
HYPERPARAMS = dict(FINETUNE_DEFAULTS)
TASK_HYPERPARAMS = {"classification": CLASSIFICATION_HYPERPARAMS, "segmentation": DENSE_HYPERPARAMS,
                    "depth": DENSE_HYPERPARAMS, "detection": DETECTION_HYPERPARAMS}


FINETUNE = AdaptationSpec(
    name="finetune",
    description="whole model trained on the subset (backbone at a lower lr), early-stopped on a held-out part; "
                "dense tasks use the same heads as linear-probe with the backbone trainable",
    task_types=("classification", "detection", "segmentation", "depth"),
    run=train_task_head(train_backbone=True),  # the task's head and the backbone, trained together
    hyperparams=HYPERPARAMS,
    task_hyperparams=TASK_HYPERPARAMS,
    data_parallel_tasks=("classification",),
    trains_task_heads=True,
)


@hookimpl
def register_adaptations(register):
    register(FINETUNE)
