"""Fine-tuning on the downstream subset together with the images TSDS selected upstream.

The recipe is ``finetune``'s (:mod:`gaia_bench.plugins.finetune_classification`, whose helpers this
reuses): the same hold-out and early stopping, schedule (sized by the downstream images, so both
methods take the same number of steps), optimizer, warm-up and cosine decay, augmentation and
seeding. What changes is every step's batch: ``min(batch, n_fit)`` downstream images as in
``finetune`` plus ``round(upstream_ratio x that)`` selected upstream images, drawn from their own
stream of reshuffled epochs. The loss is ``CE(downstream) + upstream_weight x CE(upstream)``, each
the mean over its part of the batch, so the downstream images never drown in a larger selection.

``labels`` says what an upstream image is trained to predict:

* ``matched`` (GAIA's use of the selection, the default): the downstream class it was selected for,
  through the one downstream head -- the selection is extra labelled data of that class;
* ``upstream-head``: its own upstream class, through a second linear head that is dropped after
  training -- the upstream labels only shape the shared backbone.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from gaia_bench.api import Sample
from gaia_bench.plugins.finetune_classification import (
    WARMUP_SHARE,
    _BatchStream,
    _check_errors,
    _lr_factor,
    _predict,
    _rng_devices,
    _SeededDraws,
)
from gaia_bench.plugins.schedules import scaled_schedule

LABEL_MODES = ("matched", "upstream-head")


def peak_memory_mb(device: str) -> dict[str, float]:
    import resource

    import torch

    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.startswith("cuda"):
        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def train_union(ctx, hp: dict[str, Any], fit: tuple[Sequence[Sample], np.ndarray], val: tuple[Sequence[Sample], np.ndarray],
                upstream: tuple[Sequence[Sample], np.ndarray], num_classes: int, num_upstream_classes: int,
                test: tuple[Sequence[Sample], np.ndarray]) -> dict[str, Any]:
    """Train on ``fit`` plus ``upstream`` (targets per ``hp['labels']``), early-stop on ``val``,
    predict ``test``. Returns predictions, timings, the record's details and the trainable count."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from gaia_bench.imagedata import ImageSamples, eval_transform

    fit_samples, y_fit = fit
    val_samples, y_val = val
    up_samples, y_up = upstream
    spec, dataset = ctx.job.backbone, ctx.job.dataset
    size, seed, device = int(ctx.config.image_size), int(ctx.config.seed), ctx.device
    workers, eval_batch = int(ctx.session.workers), int(ctx.session.batch_size)

    batch = int(hp["batch"])
    iterations, schedule = scaled_schedule(len(fit_samples), batch, hp["epochs"], int(hp["min_iters"]),
                                           int(hp["max_iters"]), ctx.config.init, trains_backbone=True)
    steps_per_epoch = math.ceil(max(len(fit_samples), 1) / max(batch, 1))
    eval_interval = max(1, round(float(hp["eval_every_epochs"]) * steps_per_epoch))
    warmup = max(1, round(WARMUP_SHARE * iterations))
    head_lr = float(hp["lr"])
    backbone_lr = head_lr * float(hp["backbone_lr_scale"])
    patience = int(hp["patience"])
    stop_floor = min(iterations, schedule["min_iters"] * schedule["scratch_factor"])
    down_batch = min(batch, max(len(fit_samples), 1))
    up_batch = min(len(up_samples), round(down_batch * float(hp["upstream_ratio"])))
    up_weight = float(hp["upstream_weight"])

    augment = [transforms.RandomResizedCrop(size, scale=(float(hp["crop_scale_min"]), 1.0))]
    if hp["hflip"]:
        augment.append(transforms.RandomHorizontalFlip())
    train_transform = transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
    test_transform = eval_transform(size, spec.mean, spec.std)

    name = f"{spec.name} / {dataset.name}"
    with torch.random.fork_rng(devices=_rng_devices(device)):
        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = nn.Linear(backbone.num_features, num_classes)
        up_head = nn.Linear(backbone.num_features, num_upstream_classes) if hp["labels"] == "upstream-head" else head
        model = nn.Sequential(backbone, head).to(device)
        up_head.to(device)
        heads = nn.ModuleList([head] if up_head is head else [head, up_head])
        trainable = sum(p.numel() for p in [*backbone.parameters(), *heads.parameters()] if p.requires_grad)
        optimizer = torch.optim.AdamW([{"params": heads.parameters(), "lr": head_lr},
                                       {"params": backbone.parameters(), "lr": backbone_lr}],
                                      weight_decay=float(hp["weight_decay"]))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(warmup, iterations))
        criterion = nn.CrossEntropyLoss(label_smoothing=float(hp["label_smoothing"]))
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(_SeededDraws(ImageSamples(fit_samples, train_transform, size)), num_workers=workers,
                            batch_sampler=_BatchStream(len(fit_samples), batch, iterations, generator),
                            generator=generator)
        up_loader: Any = [None] * iterations
        if up_batch:
            up_generator = torch.Generator().manual_seed(seed + 1)
            up_loader = DataLoader(_SeededDraws(ImageSamples(up_samples, train_transform, size)), num_workers=workers,
                                   batch_sampler=_BatchStream(len(up_samples), up_batch, iterations, up_generator),
                                   generator=up_generator)

        start = time.perf_counter()
        best: dict[str, Any] = {"top1": None, "iteration": None, "state": None}
        curve: list[list[float]] = []
        stale, stopped_early, step = 0, False, 0
        last = {"loss": float("nan"), "downstream_loss": float("nan"), "upstream_loss": float("nan")}

        def evaluate_holdout() -> None:
            nonlocal stale
            pred = _predict(model, val_samples, test_transform, size, device, eval_batch, 0)
            top1 = float((pred == y_val).mean() * 100)
            curve.append([step, top1])
            if best["top1"] is None or top1 > best["top1"]:
                best.update(top1=top1, iteration=step,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1

        advance = ctx.progress.start(f"tsds train {name} (+{len(up_samples)} upstream)", iterations)
        model.train()
        up_head.train()
        for (images, idx, errors), up_part in zip(loader, up_loader):
            _check_errors(fit_samples, idx, errors)
            targets = torch.as_tensor(y_fit[idx.numpy()], device=device)
            if up_part is None:
                loss = down_loss = criterion(model(images.to(device)), targets)
                up_loss = None
            else:
                up_images, up_idx, up_errors = up_part
                _check_errors(up_samples, up_idx, up_errors)
                features = backbone(torch.cat([images, up_images]).to(device))
                down_loss = criterion(head(features[: len(idx)]), targets)
                up_loss = criterion(up_head(features[len(idx):]), torch.as_tensor(y_up[up_idx.numpy()], device=device))
                loss = down_loss + up_weight * up_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            last = {"loss": float(loss.detach()), "downstream_loss": float(down_loss.detach()),
                    "upstream_loss": float("nan") if up_loss is None else float(up_loss.detach())}
            advance(1)
            if len(val_samples) and (step % eval_interval == 0 or step == iterations):
                evaluate_holdout()
                model.train()
                if stale >= patience and stop_floor <= step < iterations:
                    stopped_early = True
                    break
        ctx.progress.finish()
        del loader, up_loader
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        train_seconds = time.perf_counter() - start
        train_memory = peak_memory_mb(device)

        test_samples, _ = test
        start = time.perf_counter()
        advance = ctx.progress.start(f"evaluate {name}:{dataset.test_split}", len(test_samples))
        y_pred = _predict(model, test_samples, test_transform, size, device, eval_batch, workers, on_batch=advance)
        ctx.progress.finish()
        eval_seconds = time.perf_counter() - start

    best_iteration = best["iteration"]
    details = {
        "schedule": schedule,
        "iterations_run": step,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(step / steps_per_epoch, 3),
        "n_fit": len(fit_samples),
        "n_val": len(val_samples),
        "batch": {"downstream": down_batch, "upstream": up_batch, "upstream_weight": up_weight,
                  "upstream_labels": hp["labels"]},
        "early_stopping": {
            "enabled": bool(len(val_samples)),
            "metric": "held-out top1 (downstream images only)",
            "eval_every_iterations": eval_interval,
            "patience": patience,
            "not_before_iteration": stop_floor,
            "stopped_early": stopped_early,
        },
        "best_val_top1": best["top1"],
        "best_iteration": best_iteration,
        "weights_tested": "best held-out" if best["state"] is not None else "final",
        "val_curve": curve,
        "final_losses": last,
        "optimizer": {"name": "AdamW", "head_lr": head_lr, "backbone_lr": backbone_lr,
                      "weight_decay": float(hp["weight_decay"]), "warmup_iterations": warmup,
                      "decay": "cosine to 0", "label_smoothing": float(hp["label_smoothing"])},
        "augmentation": {"random_resized_crop_scale": [float(hp["crop_scale_min"]), 1.0], "hflip": bool(hp["hflip"])},
        "peak_memory_after_train": train_memory,
    }
    return {"y_pred": y_pred, "train_seconds": train_seconds, "eval_seconds": eval_seconds, "details": details,
            "trainable_params": int(trainable)}
