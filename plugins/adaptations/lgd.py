"""``lgd``: label-guided self-distillation for detection (seed 004; Zhang et al., AAAI 2022).

``finetune``'s detection recipe -- the same Faster R-CNN + FPN head, backbone trained at
``backbone_lr_scale`` x the head's lr, schedule, held-out early stopping and seeding
(:func:`gaia_bench.plugins.adaptations.lib.detection_head.run_detection`) -- with a teacher made
from the labels trained jointly (:mod:`gaia_bench.plugins.adaptations.lib.lgd_teacher`) and a
distillation loss towards its maps added to the detector's loss
(:mod:`gaia_bench.plugins.adaptations.lib.lgd_training`). No pretrained teacher is needed; the
teacher and the distillation adapter are dropped after training, so the evaluated detector is the
student alone, with exactly ``finetune``'s parameters.

Knobs (detection jobs only): ``lgd_weight`` (the distillation loss's weight, the paper's lambda =
1), ``lgd_heads`` (attention heads of the relation adapter; must divide ``det_fpn_channels``),
``lgd_distill_from`` (share of the schedule before the student receives the distillation gradient:
the paper's 30k of 180k iterations).

The record's ``details.lgd`` keeps the loss curves (every step's distillation, teacher-detection
and student-detection losses), the teacher's extra parameters, and the cost against ``finetune``
measured in the same process on the same batch after training (:func:`step_cost`: step time,
activation memory, extra weights' memory); ``stage_seconds`` adds the time spent in the teacher
and the distillation loss during training (``lgd_teacher``) and the measurement
(``lgd_cost_probe``). The task offers only the Faster R-CNN head; LGD's main setting, torchvision's
RetinaNet head, is not one of the detection task's heads, so it is not supported here.
"""

from __future__ import annotations

import time

from gaia_bench import hookimpl
from gaia_bench.api import AdaptationResult, AdaptationSpec
from gaia_bench.errors import UsageError
from gaia_bench.plugins.adaptations.lib.detection_head import DETECTION_HYPERPARAMS
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS

PLUGIN_ORDER = 350

LGD_HYPERPARAMS = {"lgd_weight": 1.0, "lgd_heads": 8, "lgd_distill_from": 0.1667}


def _check(hp: dict) -> None:
    channels, heads = int(hp["det_fpn_channels"]), int(hp["lgd_heads"])
    if heads < 1 or channels % heads:
        raise UsageError(f"lgd_heads={heads} does not divide det_fpn_channels={channels}",
                         "choose lgd_heads among the divisors of det_fpn_channels, e.g. --hp lgd_heads=8")
    if float(hp["lgd_weight"]) < 0:
        raise UsageError(f"lgd_weight={hp['lgd_weight']} is negative", "give --hp lgd_weight=0 or more")
    if not 0.0 <= float(hp["lgd_distill_from"]) <= 1.0:
        raise UsageError(f"lgd_distill_from={hp['lgd_distill_from']} is not a share of the schedule",
                         "give --hp lgd_distill_from between 0 and 1")


def run(ctx) -> AdaptationResult:
    import torch

    from gaia_bench.plugins.adaptations.lib.detection_head import run_detection
    from gaia_bench.plugins.adaptations.lib.lgd_training import LGDModel, step_cost
    from gaia_bench.plugins.adaptations.lib.training import rng_devices

    hp = {**DETECTION_HYPERPARAMS, **LGD_HYPERPARAMS, **ctx.hyperparams}
    _check(hp)
    built: dict[str, LGDModel] = {}

    def train_model(head, backbone, levels: int, train_batchnorm: bool, iterations: int) -> LGDModel:
        if not all(hasattr(head.module, name) for name in ("pyramid", "detect")):
            raise UsageError(f"lgd needs a Faster R-CNN + FPN head; task {ctx.job.task.name!r} gives "
                             f"{type(head.module).__name__}", "use --adapt finetune for this task")
        built["model"] = LGDModel(head, backbone, levels, bool(train_batchnorm), len(ctx.data.train.classes),
                                  int(hp["lgd_heads"]), float(hp["lgd_weight"]),
                                  int(round(float(hp["lgd_distill_from"]) * iterations)))
        return built["model"]

    result = run_detection(ctx, train_backbone=True, train_model=train_model)
    model = built.pop("model")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=rng_devices(ctx.device)):
        cost = step_cost(model, ctx.device) if model.last_batch is not None else None
    stages = {**result.stage_seconds, "lgd_teacher": model.teacher_seconds,
              "lgd_cost_probe": time.perf_counter() - start}
    teacher = sum(p.numel() for p in model.teacher.parameters())
    details = {**result.details, "lgd": {
        "weight": float(hp["lgd_weight"]), "heads": int(hp["lgd_heads"]), "distill_from_step": model.distill_from,
        "teacher_params": teacher, "adapter_params": model.extra_params() - teacher,
        "extra_params": model.extra_params(), "evaluated": "student only (teacher and adapter dropped)",
        "curves": {name: [round(v, 6) for v in values] for name, values in model.curves.items()},
        "cost_vs_finetune": cost,
        "teacher_seconds": round(model.teacher_seconds, 3),
    }}
    del model  # the teacher goes with it
    return AdaptationResult(predictions=result.predictions, details=details, stage_seconds=stages,
                            trainable_params=result.trainable_params)


LGD = AdaptationSpec(
    name="lgd",
    description="finetune's detector trained with a teacher made from the labels (LGD label-guided "
                "self-distillation); the student alone is evaluated",
    task_types=("detection",),
    run=run,
    hyperparams=dict(FINETUNE_DEFAULTS),
    task_hyperparams={"detection": {**DETECTION_HYPERPARAMS, **LGD_HYPERPARAMS}},
)


@hookimpl
def register_adaptations(register):
    register(LGD)
