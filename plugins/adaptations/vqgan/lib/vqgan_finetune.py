"""What ``mf`` (stage 4) and ``vqgan-replay`` share: ``finetune``'s recipe on the job's split, and
the replayed upstream stream.

:func:`fine_tune` is :func:`gaia_bench.plugins.adaptations.lib.training.train_classifier` (the one training loop:
same hold-out, schedule, optimizer, warm-up, augmentation, early stopping and seeded batch
stream as ``finetune``) with two openings that recipe has no use for:

* ``head``: the task head to start from (``mf`` starts stage 4 from the head of stage 3);
* ``replay``: upstream samples decoded from VQ code indices (:class:`Replay`, the loop's extra
  batch stream) mixed into every batch, with their upstream labels on an upstream head of their
  own (``vqgan-replay``). The replayed images go through the backbone in the same forward pass as
  the downstream ones (one BatchNorm batch) and count like them in the loss (the mixed batch's mean).

Comparing ``mf`` or ``vqgan-replay`` with ``finetune`` therefore changes only what these methods add.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gaia_bench.api import Sample
from gaia_bench.plugins.adaptations.lib.training import Batch, Classifier, predict_logits, train_classifier
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan import VQGAN, to_unit_range


@dataclass(frozen=True)
class Split:
    """The job's subset cut into fit / held-out parts (as ``finetune`` cuts it)."""

    subset: list[Sample]
    n_subset: int
    fit: list[Sample]
    y_fit: np.ndarray
    val: list[Sample]
    y_val: np.ndarray
    num_classes: int
    stats: dict


def job_split(ctx, hp: dict[str, Any]) -> Split:
    """The runner's draw (:attr:`JobContext.data`) in the shape the VQ-GAN adaptations train on."""
    data = ctx.data
    subset = list(data.subset.samples)
    y = data.subset_labels()
    fit, val = list(data.fit), list(data.val)
    return Split(subset, len(subset), [subset[i] for i in fit], y[fit], [subset[i] for i in val], y[val],
                 data.num_classes, data.stats)


def replay_count(batch: int, ratio: float) -> int:
    """Upstream samples added to a downstream batch of ``batch`` so that they are ``ratio`` of the
    mixed batch: ``round(batch * ratio / (1 - ratio))``."""
    if ratio <= 0:
        return 0
    return max(1, round(batch * ratio / (1.0 - ratio)))


@dataclass
class Replay:
    """The loop's extra batch stream for replay: ``count`` upstream samples a step, drawn at random
    (generator seeded by ``seed``) from ``indices`` (code indices ``[N, h, w]``) and decoded by
    ``vqgan`` when drawn, resized to ``size`` and normalized like the backbone's inputs. Yields
    ``Batch((images, labels), n)``; a data-parallel rank gets its shard of every draw."""

    vqgan: VQGAN
    indices: torch.Tensor
    labels: torch.Tensor
    count: int
    size: int
    mean: Sequence[float]
    std: Sequence[float]
    seed: int

    @property
    def batch_size(self) -> int:
        return self.count

    def batches(self, steps: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        from gaia_bench.plugins.adaptations.lib.distributed import shard

        generator = torch.Generator().manual_seed(self.seed)
        part = shard(self.count, rank, world_size)
        for _ in range(steps):
            picks = torch.randint(0, len(self.indices), (self.count,), generator=generator)[part]
            with torch.no_grad():
                images = to_unit_range(self.vqgan.decode_indices(self.indices[picks].long()))
                images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
                images = (images - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)
            yield Batch((images, self.labels[picks]), len(picks))


def fine_tune(ctx, hp: dict[str, Any], split: Split, backbone: nn.Module, head: nn.Linear, *, label: str,
              replay: Replay | None = None, replay_head: nn.Linear | None = None) -> tuple[nn.Module, dict, int]:
    """Train ``backbone`` + ``head`` on the fit part (with ``replay`` mixed in, classified by
    ``replay_head``, when given), keep the best held-out weights; return (``backbone`` + ``head``
    with them, the training's details, trainable parameter count). Call it under the caller's
    ``fork_rng``; the streams are seeded by the job seed."""
    model = Classifier(backbone, head, label_smoothing=float(hp["label_smoothing"]), extra_head=replay_head)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    start = time.perf_counter()
    result, details = train_classifier(ctx, hp, model, (split.fit, split.y_fit), (split.val, split.y_val),
                                  label=f"{label} {ctx.job.backbone.name} / {ctx.job.dataset.name}",
                                  extra=replay if replay is not None and replay.count else None)
    details["train_seconds"] = round(time.perf_counter() - start, 3)
    if replay is not None:
        details["samples_seen"] = {"downstream": result.seen["main"], "upstream": result.seen["extra"]}
    return model.classifier, details, int(trainable)


def evaluate_test(ctx, model: nn.Module, label: str, split: Split) -> tuple[dict[str, float], list, dict]:
    """The job's metrics on the test split with their calibration (temperature fitted on the
    held-out part's logits), the predictions (logits per test item) and ``details.calibration``."""
    from gaia_bench.imagedata import eval_transform
    from gaia_bench.tasks.types.lib.calibration import calibration_report

    spec, dataset = ctx.job.backbone, ctx.job.dataset
    size = int(ctx.config.image_size)
    test = ctx.load(dataset.test_split)
    transform = eval_transform(size, spec.mean, spec.std)
    advance = ctx.progress.start(f"evaluate {label} {spec.name} / {dataset.name}:{dataset.test_split}",
                                 len(test) + len(split.val))
    logits = predict_logits(model, test.samples, transform, size, ctx.device, int(ctx.batch_size), int(ctx.workers),
                            on_batch=advance, precision=ctx.config.precision)
    val_logits = predict_logits(model, split.val, transform, size, ctx.device, int(ctx.batch_size), int(ctx.workers),
                                on_batch=advance, precision=ctx.config.precision) if len(split.val) else None
    ctx.progress.finish()
    predictions = list(logits)
    calibration, details = calibration_report(logits, np.asarray(test.labels()), val_logits, split.y_val,
                                              "held-out logits of the tested weights (those early stopping chose)")
    return {**ctx.job.task.evaluate(predictions, test, dataset), **calibration}, predictions, details


def sample_images(samples: Sequence[Sample], size: int) -> torch.Tensor:
    """uint8 ``[N, 3, size, size]`` of the samples' images (what the VQ-GAN reads)."""
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import load_image

    return torch.from_numpy(np.stack([load_image(s.path, size) for s in samples]))
