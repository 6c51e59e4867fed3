"""What ``--adapt lgd`` trains on the one training loop: the student detector (backbone + the
task's Faster R-CNN + FPN) together with LGD's label-guided teacher
(:mod:`gaia_bench.plugins.adaptations.lib.lgd_teacher`), and what it costs against plain
fine-tuning.

One step's loss, as in the paper's code: the student's four Faster R-CNN losses, plus the same
losses of the student's own RPN and RoI heads run on the teacher's maps (the only signal that
trains the teacher; it also trains the shared heads), plus ``weight`` x the distillation loss:
the mean squared difference between the student's FPN maps passed through an adapter (three 3x3
convs) and the teacher's maps, both instance-normalised (per image and channel over the map's
cells), over every cell of every level; the teacher side is detached. For the first
``distill_from`` steps the student side is detached too (only the adapter learns: the paper's
"pre non-distill" iterations, 30k of 180k). Teacher and adapter are trained at the head's lr and
dropped after training: the detector that is evaluated is the student alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from gaia_bench.plugins.adaptations.lib.dense_probe import set_batchnorm_mode
from gaia_bench.plugins.adaptations.lib.lgd_teacher import LabelGuidedTeacher

SGD_STATE_PER_PARAM = 3  # weight, gradient, momentum buffer (float32 each)


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per image and channel over the cells (a 1x1 map gives zeros, where torch's raises)."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = x.var(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def distillation_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], adapter: nn.Module,
                      detach_student: bool = False) -> torch.Tensor:
    """The mean squared difference, over every cell of every level, between the instance-normalised
    adapted student maps and the instance-normalised (detached) teacher maps."""
    s = [instance_norm(adapter(f.detach() if detach_student else f)) for f in student]
    t = [instance_norm(m.detach()) for m in teacher]
    batch = s[0].shape[0]
    return nn.functional.mse_loss(torch.cat([x.reshape(batch, -1) for x in s], dim=1),
                                  torch.cat([x.reshape(batch, -1) for x in t], dim=1))


def adapter(channels: int) -> nn.Module:
    """The student-side adapter of the distillation loss (the paper code's ``SequentialConvs``)."""
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1))


class LGDModel(nn.Module):
    """A :class:`~gaia_bench.plugins.adaptations.lib.training.TrainModel`: ``forward((images,
    targets))`` returns the step's loss and its parts, and keeps every step's parts in
    :attr:`curves`. ``head`` is the task's detection head (its ``module`` has ``pyramid`` and
    ``detect``), ``backbone`` trains with it (its BatchNorm statistics only when
    ``train_batchnorm``)."""

    def __init__(self, head: Any, backbone: nn.Module, levels: int, train_batchnorm: bool, num_classes: int,
                 heads: int, weight: float, distill_from: int) -> None:
        super().__init__()
        self.detector, self.backbone = head.module, backbone
        self.levels, self.train_batchnorm, self.size = levels, train_batchnorm, tuple(head.size)
        channels = head.fpn_channels
        self.teacher = LabelGuidedTeacher(num_classes, channels, heads)
        self.adapter = adapter(channels)
        self.weight, self.distill_from = weight, distill_from
        self.steps = 0
        self.curves: dict[str, list[float]] = {"detection": [], "teacher_detection": [], "distill": []}
        self.teacher_seconds = 0.0  # time in the teacher's forward and the distillation loss
        self.last_batch: Any = None  # for the cost probe

    def losses(self, batch: Any, with_teacher: bool = True) -> dict[str, torch.Tensor]:
        images, targets = batch
        pyramid = [f.float() for f in self.backbone.pyramid(images)[-self.levels:]]
        features = self.detector.pyramid(pyramid)
        parts = {"detection": sum(self.detector.detect(features, targets).values())}
        if with_teacher:
            tick = time.perf_counter()
            maps = self.teacher(list(features.values()), [t["boxes"] for t in targets],
                                [t["labels"] for t in targets], self.size)
            taught = self.detector.detect(OrderedDict(zip(features.keys(), maps)), targets)
            parts["teacher_detection"] = sum(taught.values())
            parts["distill"] = self.weight * distillation_loss(list(features.values()), maps, self.adapter,
                                                               detach_student=self.steps < self.distill_from)
            self.teacher_seconds += time.perf_counter() - tick
        return parts

    def forward(self, batch: Any):
        parts = self.losses(batch)
        self.steps += 1
        self.last_batch = batch
        for name, value in parts.items():
            self.curves[name].append(float(value.detach()))
        return sum(parts.values()), parts

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            set_batchnorm_mode(self.backbone, self.train_batchnorm)
        return self

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.detector.parameters()), "backbone": list(self.backbone.parameters()),
                "teacher": [*self.teacher.parameters(), *self.adapter.parameters()]}

    def extra_params(self) -> int:
        """Parameters that only LGD trains (teacher + adapter), all dropped after training."""
        return sum(p.numel() for p in self.parameter_groups()["teacher"])


def _saved_bytes(run) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while ``run()`` builds its graph
    (each storage counted once): the activation memory of a training step."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(t.device.type, storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()
    loss.backward()
    return sum(seen.values())


def step_cost(model: LGDModel, device: str, repeats: int = 3) -> dict[str, Any]:
    """A training step of the student alone (what ``finetune`` computes) against one of LGD, on
    the last training batch, in this process: the fastest of ``repeats`` interleaved timings of
    forward + backward, after a pass that measures the activation memory (:func:`_saved_bytes`),
    and the memory of the extra trained parameters with their gradients and SGD momentum. Call it
    after training, under a forked RNG: it changes no number of the job."""
    model.train()
    batch = model.last_batch

    def step(with_teacher: bool) -> torch.Tensor:
        return sum(model.losses(batch, with_teacher).values())

    def timed(with_teacher: bool) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        tick = time.perf_counter()
        step(with_teacher).backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return time.perf_counter() - tick

    out: dict[str, Any] = {f"{name}_activation_mb": _saved_bytes(lambda: step(with_teacher)) / 2**20
                           for name, with_teacher in (("finetune", False), ("lgd", True))}  # also warms up
    times: dict[str, list[float]] = {"finetune": [], "lgd": []}
    for _ in range(repeats):  # interleaved, the fastest of each kept: load from other processes only adds
        times["finetune"].append(timed(False))
        times["lgd"].append(timed(True))
    out.update({f"{name}_step_s": min(values) for name, values in times.items()})
    model.zero_grad(set_to_none=True)
    state_mb = SGD_STATE_PER_PARAM * 4 * model.extra_params() / 2**20
    extra_mb = out["lgd_activation_mb"] - out["finetune_activation_mb"] + state_mb
    return {**{k: round(v, 4) for k, v in out.items()}, "extra_params_state_mb": round(state_mb, 3),
            "extra_memory_mb": round(extra_mb, 3),
            "extra_time_share": round(out["lgd_step_s"] / out["finetune_step_s"] - 1.0, 4),
            "batch": len(batch[1]), "repeats": repeats, "measured": "fastest forward + backward on the last "
            "training batch, this process, after training; memory: autograd-saved activations + extra "
            "weights, gradients and momentum"}
