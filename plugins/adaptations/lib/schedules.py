"""Training-length rules shared by every adaptation that trains something.

One rule everywhere: ``iterations = clamp(epochs * ceil(n_train / batch), min_iters, max_iters)``,
so the schedule grows with the percentage-shot subset (more images, more passes' worth of steps)
but never falls below a floor that lets a head converge on a handful of images, nor past a cap
that keeps a CPU run practical.

Training from scratch needs a longer schedule than fine-tuning a pretrained network (He et al.,
*Rethinking ImageNet Pre-training*: roughly 2-3x the fine-tuning schedule to reach parity), so
when the WHOLE model is trained (``finetune`` and the methods built on it) and the init is one
without pretraining, every term of the rule (epochs, floor and cap) is multiplied by
``SCRATCH_FACTOR`` (3). With a frozen backbone (``linear-probe``) nothing is trained from scratch
and all inits get the same head schedule, so the comparison isolates the features.
"""

from __future__ import annotations

import math

SCRATCH_FACTOR = 3
# Inits whose weights come from no pretraining at all.
UNPRETRAINED_INITS = frozenset({"random", "scratch"})


def schedule_iterations(n_train: int, batch: int, epochs: float, min_iters: int, max_iters: int) -> int:
    """``clamp(epochs * ceil(n_train / batch), min_iters, max_iters)`` (at least one image)."""
    per_epoch = math.ceil(max(n_train, 1) / max(batch, 1))
    return int(min(max(round(epochs * per_epoch), min_iters), max_iters))


def schedule_factor(init_name: str, trains_backbone: bool) -> int:
    """``SCRATCH_FACTOR`` when the whole model is trained from an un-pretrained init, else 1."""
    return SCRATCH_FACTOR if trains_backbone and init_name in UNPRETRAINED_INITS else 1


def scaled_schedule(n_train: int, batch: int, epochs: float, min_iters: int, max_iters: int,
                    init_name: str, trains_backbone: bool) -> tuple[int, dict]:
    """The iteration count and a record of how it was reached (for the result's details)."""
    factor = schedule_factor(init_name, trains_backbone)
    iterations = schedule_iterations(n_train, batch, epochs * factor, min_iters * factor, max_iters * factor)
    return iterations, {
        "rule": "iterations = clamp(epochs * ceil(n_train / batch), min_iters, max_iters), "
                "all three x scratch_factor when an un-pretrained init is fine-tuned",
        "n_train": int(n_train), "batch": int(batch), "epochs": epochs, "min_iters": int(min_iters),
        "max_iters": int(max_iters), "scratch_factor": factor, "iterations": int(iterations),
    }
