"""The classification fine-tuning loop that ``mf`` (stage 4) and ``vqgan-replay`` share.

It is ``finetune``'s recipe (:mod:`gaia_bench.plugins.finetune_classification`: same hold-out,
schedule, optimizer, warm-up, augmentation, early stopping and seeded batch stream, imported from
there) with two openings that recipe has no use for:

* ``head``: the task head to start from (``mf`` starts stage 4 from the head of stage 3);
* ``replay``: upstream samples decoded from VQ code indices and mixed into every batch, with their
  upstream labels on an upstream head of their own (``vqgan-replay``). The replayed images go
  through the backbone in the same forward pass as the downstream ones (one BatchNorm batch).

Comparing ``mf`` or ``vqgan-replay`` with ``finetune`` therefore changes only what these methods add.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gaia_bench.api import Sample
from gaia_bench.plugins.finetune_classification import (
    WARMUP_SHARE,
    _BatchStream,
    _check_errors,
    _lr_factor,
    _predict,
    _SeededDraws,
)
from gaia_bench.plugins.linear_probe import holdout_split
from gaia_bench.plugins.schedules import scaled_schedule
from gaia_bench.plugins.vqgan import VQGAN, to_unit_range

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
    train, indices = ctx.train_subset()
    subset = [train.samples[i] for i in indices]
    y = np.asarray(train.labels())[indices]
    fit, val = holdout_split(y, float(hp["val_share"]), int(ctx.config.seed))
    return Split(subset, len(indices), [subset[i] for i in fit], y[fit], [subset[i] for i in val], y[val],
                 len(train.classes), ctx.subset_stats(train, indices))


def replay_count(batch: int, ratio: float) -> int:
    """Upstream samples added to a downstream batch of ``batch`` so that they are ``ratio`` of the
    mixed batch: ``round(batch * ratio / (1 - ratio))``."""
    if ratio <= 0:
        return 0
    return max(1, round(batch * ratio / (1.0 - ratio)))


@dataclass
class Replay:
    """Upstream samples kept as code indices ``[N, h, w]`` and decoded by ``vqgan`` when drawn."""

    vqgan: VQGAN
    indices: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    ratio: float
    seen: dict[str, int] = field(default_factory=lambda: {"downstream": 0, "upstream": 0})

    def draw(self, n: int, generator: torch.Generator, size: int, mean, std, device: str):
        picks = torch.randint(0, len(self.indices), (n,), generator=generator)
        with torch.no_grad():
            images = to_unit_range(self.vqgan.decode_indices(self.indices[picks].long()))
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            images = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        return images.to(device), self.labels[picks].to(device)


def train_transform(size: int, hp: dict[str, Any], mean, std):
    from torchvision import transforms

    augment = [transforms.RandomResizedCrop(size, scale=(float(hp["crop_scale_min"]), 1.0))]
    if hp["hflip"]:
        augment.append(transforms.RandomHorizontalFlip())
    return transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(mean, std)])


def fine_tune(ctx, hp: dict[str, Any], split: Split, backbone: nn.Module, head: nn.Linear, *,
              label: str, replay: Replay | None = None) -> tuple[nn.Module, dict, int]:
    """Train ``backbone`` + ``head`` on the fit part (with ``replay`` mixed in when given), keep the
    best held-out weights; return (model with them, details, trainable parameter count).
    Call it under the caller's ``fork_rng``; it seeds its own generators from the job seed."""
    from torch.utils.data import DataLoader

    from gaia_bench.imagedata import ImageSamples, eval_transform

    spec = ctx.job.backbone
    size, seed, device = int(ctx.config.image_size), int(ctx.config.seed), ctx.device
    batch = int(hp["batch"])
    n_fit = len(split.fit)
    iterations, schedule = scaled_schedule(n_fit, batch, hp["epochs"], int(hp["min_iters"]), int(hp["max_iters"]),
                                           ctx.config.init, trains_backbone=True)
    steps_per_epoch = math.ceil(max(n_fit, 1) / max(batch, 1))
    eval_interval = max(1, round(float(hp["eval_every_epochs"]) * steps_per_epoch))
    warmup = max(1, round(WARMUP_SHARE * iterations))
    head_lr = float(hp["lr"])
    backbone_lr = head_lr * float(hp["backbone_lr_scale"])
    patience = int(hp["patience"])
    stop_floor = min(iterations, schedule["min_iters"] * schedule["scratch_factor"])
    test_transform = eval_transform(size, spec.mean, spec.std)

    up_head = nn.Linear(backbone.num_features, replay.num_classes) if replay else None
    model = nn.Sequential(backbone, head).to(device)
    groups = [{"params": head.parameters(), "lr": head_lr}, {"params": backbone.parameters(), "lr": backbone_lr}]
    if up_head is not None:
        up_head.to(device)
        groups.append({"params": up_head.parameters(), "lr": head_lr})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainable += sum(p.numel() for p in up_head.parameters()) if up_head is not None else 0
    optimizer = torch.optim.AdamW(groups, weight_decay=float(hp["weight_decay"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(warmup, iterations))
    criterion = nn.CrossEntropyLoss(label_smoothing=float(hp["label_smoothing"]))
    generator = torch.Generator().manual_seed(seed)
    replay_generator = torch.Generator().manual_seed(seed + 1)
    loader = DataLoader(_SeededDraws(ImageSamples(split.fit, train_transform(size, hp, spec.mean, spec.std), size)),
                        num_workers=int(ctx.session.workers), generator=generator,
                        batch_sampler=_BatchStream(n_fit, batch, iterations, generator))

    start = time.perf_counter()
    best: dict[str, Any] = {"top1": None, "iteration": None, "state": None}
    curve: list[list[float]] = []
    stale, stopped_early, step, last_loss = 0, False, 0, float("nan")
    eval_batch = int(ctx.session.batch_size)

    def evaluate_holdout() -> None:
        nonlocal stale
        pred = _predict(model, split.val, test_transform, size, device, eval_batch, 0)
        top1 = float((pred == split.y_val).mean() * 100)
        curve.append([step, top1])
        if best["top1"] is None or top1 > best["top1"]:
            best.update(top1=top1, iteration=step, state={k: v.detach().clone() for k, v in model.state_dict().items()})
            stale = 0
        else:
            stale += 1

    advance = ctx.progress.start(f"{label} {spec.name} / {ctx.job.dataset.name}", iterations)
    model.train()
    for images, batch_indices, errors in loader:
        _check_errors(split.fit, batch_indices, errors)
        targets = torch.as_tensor(split.y_fit[batch_indices.numpy()], device=device)
        images = images.to(device)
        n_down = len(targets)
        if replay is not None and up_head is not None:
            up_images, up_targets = replay.draw(replay_count(n_down, replay.ratio), replay_generator, size,
                                                spec.mean, spec.std, device)
            features = backbone(torch.cat([images, up_images]))
            n_up = len(up_targets)
            loss = (n_down * criterion(head(features[:n_down]), targets)
                    + n_up * criterion(up_head(features[n_down:]), up_targets)) / (n_down + n_up)
            replay.seen["downstream"] += n_down
            replay.seen["upstream"] += n_up
        else:
            loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        last_loss = float(loss.detach())
        advance(1)
        if len(split.val) and (step % eval_interval == 0 or step == iterations):
            evaluate_holdout()
            model.train()
            if stale >= patience and stop_floor <= step < iterations:
                stopped_early = True
                break
    ctx.progress.finish()
    del loader
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    details = {
        "schedule": schedule, "iterations_run": step, "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(step / steps_per_epoch, 3), "n_fit": n_fit, "n_val": len(split.val),
        "early_stopping": {"enabled": bool(len(split.val)), "metric": "held-out top1", "patience": patience,
                           "eval_every_iterations": eval_interval, "not_before_iteration": stop_floor,
                           "stopped_early": stopped_early},
        "best_val_top1": best["top1"], "best_iteration": best["iteration"], "val_curve": curve,
        "weights_tested": "best held-out" if best["state"] is not None else "final",
        "final_train_loss": last_loss, "train_seconds": round(time.perf_counter() - start, 3),
        "optimizer": {"name": "AdamW", "head_lr": head_lr, "backbone_lr": backbone_lr,
                      "weight_decay": float(hp["weight_decay"]), "warmup_iterations": warmup,
                      "label_smoothing": float(hp["label_smoothing"]), "batch": min(batch, max(n_fit, 1))},
    }
    return model, details, int(trainable)


def evaluate_test(ctx, model: nn.Module, label: str) -> tuple[dict[str, float], int]:
    """The job's metrics on the test split, and the test size."""
    from gaia_bench.imagedata import eval_transform

    spec, dataset = ctx.job.backbone, ctx.job.dataset
    size = int(ctx.config.image_size)
    test = ctx.load(dataset.test_split)
    advance = ctx.progress.start(f"evaluate {label} {spec.name} / {dataset.name}:{dataset.test_split}", len(test))
    y_pred = _predict(model, test.samples, eval_transform(size, spec.mean, spec.std), size, ctx.device,
                      int(ctx.session.batch_size), int(ctx.session.workers), on_batch=advance)
    ctx.progress.finish()
    return ctx.job.task.evaluate(y_pred.tolist(), test, dataset), len(test)


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rng_devices(device: str) -> list[int]:
    dev = torch.device(device)
    return [dev.index or 0] if dev.type == "cuda" else []


def sample_images(samples: Sequence[Sample], size: int) -> torch.Tensor:
    """uint8 ``[N, 3, size, size]`` of the samples' images (what the VQ-GAN reads)."""
    from gaia_bench.plugins.vqgan_train import load_image

    return torch.from_numpy(np.stack([load_image(s.path, size) for s in samples]))
