"""``finetune`` on classification: the whole backbone plus a new linear head on its pooled features,
trained on the job's percentage-shot subset and evaluated on the dataset's test split.

Recipe, and why:

* Hold-out: ``val_share`` of every class with 2+ samples in the subset (the split
  :func:`gaia_bench.plugins.linear_probe.holdout_split` gives the probe, same seed) is kept out of
  training. Held-out top-1 is measured every ``eval_every_epochs`` epochs; the best weights (backbone
  and head, ties keep the earlier) are the ones tested, and training stops after ``patience``
  evaluations without improvement, but never before the schedule's floor (``min_iters`` x its
  scratch factor): few-shot fine-tuning overfits quickly, and the test split must never choose the
  weights, yet a held-out set of a dozen images plateaus by chance early on (a random-init
  test_resnet on 10% of digits-lt stopped at step 28 of 180 near chance without the floor). When no
  class can spare a sample the full schedule runs and the final weights are tested (recorded).
* Schedule: :func:`gaia_bench.plugins.schedules.scaled_schedule` (grows with the subset, has a floor
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
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterator, Sequence

import numpy as np

from gaia_bench.api import AdaptationResult, Sample
from gaia_bench.errors import DataError
from gaia_bench.plugins.linear_probe import holdout_split
from gaia_bench.plugins.schedules import scaled_schedule

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
}
# Shared with the other tasks; the finetune adaptation adds them to the same dict.
SHARED_DEFAULTS = {"backbone_lr_scale": 0.1, "val_share": 0.2, "patience": 5}
WARMUP_SHARE = 0.05
UNREADABLE_HINT = "replace or delete the file, or re-create the dataset with `gaia-bench datasets prepare`"


def _stream_batches(n: int, batch: int, steps: int, generator) -> Iterator[list[tuple[int, int]]]:
    """``steps`` batches of ``min(batch, n)`` draws ``(index, augmentation seed)`` from back-to-back
    reshuffled epochs; all randomness comes from ``generator`` (in the main process)."""
    import torch

    size = min(batch, n)
    pool: list[int] = []
    for _ in range(steps):
        while len(pool) < size:
            pool.extend(torch.randperm(n, generator=generator).tolist())
        seeds = torch.randint(0, 2**62, (size,), generator=generator).tolist()
        yield list(zip(pool[:size], seeds))
        del pool[:size]


class _BatchStream:
    """A DataLoader ``batch_sampler`` over :func:`_stream_batches`."""

    def __init__(self, n: int, batch: int, steps: int, generator) -> None:
        self.n, self.batch, self.steps, self.generator = n, batch, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return _stream_batches(self.n, self.batch, self.steps, self.generator)


class _SeededDraws:
    """A map-style dataset over an :class:`~gaia_bench.imagedata.ImageSamples` indexed by
    ``(index, seed)``: each draw's augmentation is seeded by the sampler, so the numbers do not
    depend on ``--workers`` (not part of the job id) nor on which worker reads which image."""

    def __init__(self, images) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]):
        import torch

        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.images[index]


def _check_errors(samples: Sequence[Sample], indices, errors) -> None:
    bad = [(int(i), e) for i, e in zip(indices, errors) if e]
    if bad:
        i, err = bad[0]
        raise DataError(f"cannot read image {samples[i].path}: {err}", UNREADABLE_HINT)


def _predict(model, samples: Sequence[Sample], transform, size: int, device: str, batch_size: int, workers: int,
             on_batch=None) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader

    from gaia_bench.imagedata import ImageSamples

    loader = DataLoader(ImageSamples(samples, transform, size), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    model.eval()
    out = np.zeros(len(samples), dtype=np.int64)
    with torch.no_grad():
        for images, indices, errors in loader:
            _check_errors(samples, indices, errors)
            out[indices.numpy()] = model(images.to(device)).argmax(dim=1).cpu().numpy()
            if on_batch:
                on_batch(len(indices))
    return out


def _lr_factor(warmup: int, total: int):
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def _rng_devices(device: str) -> list[int]:
    import torch

    dev = torch.device(device)
    return [dev.index or 0] if dev.type == "cuda" else []


def run_classification_finetune(ctx) -> AdaptationResult:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from gaia_bench.imagedata import ImageSamples, eval_transform

    hp: dict[str, Any] = {**CLASSIFICATION_HYPERPARAMS, **SHARED_DEFAULTS, **ctx.hyperparams}
    dataset, spec = ctx.job.dataset, ctx.job.backbone
    size, seed, device = int(ctx.config.image_size), int(ctx.config.seed), ctx.device
    workers, eval_batch = int(ctx.session.workers), int(ctx.session.batch_size)
    train, indices = ctx.train_subset()
    test = ctx.load(dataset.test_split)
    num_classes = len(train.classes)
    subset = [train.samples[i] for i in indices]
    y_subset = np.asarray(train.labels())[indices]
    fit, val = holdout_split(y_subset, float(hp["val_share"]), seed)
    fit_samples, y_fit = [subset[i] for i in fit], y_subset[fit]
    val_samples, y_val = [subset[i] for i in val], y_subset[val]

    batch = int(hp["batch"])
    iterations, schedule = scaled_schedule(len(fit), batch, hp["epochs"], int(hp["min_iters"]), int(hp["max_iters"]),
                                           ctx.config.init, trains_backbone=True)
    steps_per_epoch = math.ceil(max(len(fit), 1) / max(batch, 1))
    eval_interval = max(1, round(float(hp["eval_every_epochs"]) * steps_per_epoch))
    warmup = max(1, round(WARMUP_SHARE * iterations))
    head_lr = float(hp["lr"])
    backbone_lr = head_lr * float(hp["backbone_lr_scale"])
    patience = int(hp["patience"])
    stop_floor = min(iterations, schedule["min_iters"] * schedule["scratch_factor"])

    augment = [transforms.RandomResizedCrop(size, scale=(float(hp["crop_scale_min"]), 1.0))]
    if hp["hflip"]:
        augment.append(transforms.RandomHorizontalFlip())
    train_transform = transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
    test_transform = eval_transform(size, spec.mean, spec.std)

    name = f"{spec.name} / {dataset.name}"
    with torch.random.fork_rng(devices=_rng_devices(device)):
        # A copy: the session keeps the initialized backbone for the other jobs of the command. Seeded
        # after it is built: building reseeds (random init), reusing the session's copy does not.
        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = nn.Linear(backbone.num_features, num_classes)
        model = nn.Sequential(backbone, head).to(device)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        optimizer = torch.optim.AdamW([{"params": head.parameters(), "lr": head_lr},
                                       {"params": backbone.parameters(), "lr": backbone_lr}],
                                      weight_decay=float(hp["weight_decay"]))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(warmup, iterations))
        criterion = nn.CrossEntropyLoss(label_smoothing=float(hp["label_smoothing"]))
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(_SeededDraws(ImageSamples(fit_samples, train_transform, size)), num_workers=workers,
                            batch_sampler=_BatchStream(len(fit_samples), batch, iterations, generator),
                            generator=generator)

        start = time.perf_counter()
        best: dict[str, Any] = {"top1": None, "iteration": None, "state": None}
        curve: list[list[float]] = []
        stale, stopped_early, step, last_loss = 0, False, 0, float("nan")

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

        advance = ctx.progress.start(f"finetune {name}", iterations)
        model.train()
        for images, batch_indices, errors in loader:
            _check_errors(fit_samples, batch_indices, errors)
            loss = criterion(model(images.to(device)), torch.as_tensor(y_fit[batch_indices.numpy()], device=device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            last_loss = float(loss.detach())
            advance(1)
            if len(val) and (step % eval_interval == 0 or step == iterations):
                evaluate_holdout()
                model.train()
                if stale >= patience and stop_floor <= step < iterations:
                    stopped_early = True
                    break
        ctx.progress.finish()
        del loader  # stop worker processes before the test pass
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        train_seconds = time.perf_counter() - start

        start = time.perf_counter()
        advance = ctx.progress.start(f"evaluate {name}:{dataset.test_split}", len(test))
        y_pred = _predict(model, test.samples, test_transform, size, device, eval_batch, workers, on_batch=advance)
        ctx.progress.finish()
        eval_seconds = time.perf_counter() - start

    metrics = ctx.job.task.compute_metrics(np.asarray(test.labels()), y_pred, num_classes)
    best_iteration = best["iteration"]
    details = {
        "subset": ctx.subset_stats(train, indices),
        "schedule": schedule,
        "iterations_run": step,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(step / steps_per_epoch, 3),
        "n_fit": int(len(fit)),
        "n_val": int(len(val)),
        "early_stopping": {
            "enabled": bool(len(val)),
            "reason_disabled": None if len(val) else "no class has 2+ samples to hold out: final weights tested",
            "metric": "held-out top1",
            "eval_every_epochs": hp["eval_every_epochs"],
            "eval_every_iterations": eval_interval,
            "patience": patience,
            "not_before_iteration": stop_floor,
            "stopped_early": stopped_early,
        },
        "best_val_top1": best["top1"],
        "best_iteration": best_iteration,
        "best_epoch": None if best_iteration is None else round(best_iteration / steps_per_epoch, 3),
        "weights_tested": "best held-out" if best["state"] is not None else "final",
        "val_curve": curve,
        "final_train_loss": last_loss,
        "optimizer": {
            "name": "AdamW", "head_lr": head_lr, "backbone_lr": backbone_lr,
            "backbone_lr_scale": float(hp["backbone_lr_scale"]), "weight_decay": float(hp["weight_decay"]),
            "warmup_iterations": warmup, "warmup": "linear", "decay": "cosine to 0",
            "label_smoothing": float(hp["label_smoothing"]), "batch": min(batch, max(len(fit), 1)),
        },
        "augmentation": {"random_resized_crop_scale": [float(hp["crop_scale_min"]), 1.0], "hflip": bool(hp["hflip"])},
    }
    return AdaptationResult(
        metrics=metrics,
        n_train=len(indices),
        n_test=len(test),
        details=details,
        stage_seconds={"finetune_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=int(trainable),
    )
