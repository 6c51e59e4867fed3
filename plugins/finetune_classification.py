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
* Data-parallel (``--gpus-per-job N``, :mod:`gaia_bench.plugins.distributed`): N ranks draw the
  same stream of global batches and each trains on its shard of every batch (per-rank batch =
  batch / N), with its loss weighted by its shard's share, so the averaged gradient is the global
  batch's; held-out counts are summed over the ranks' shards. The trained weights come back to
  this process, which tests them as above. Without BatchNorm (or with SyncBatchNorm on CUDA) the
  numbers equal one process's up to floating-point summation order; the job id is the same.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from gaia_bench.api import AdaptationResult, HeadInput, Sample, Samples
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


def _stream_batches(n: int, batch: int, steps: int, generator, rank: int = 0,
                    world_size: int = 1) -> Iterator[list[tuple[int, int]]]:
    """``steps`` batches of ``min(batch, n)`` draws ``(index, augmentation seed)`` from back-to-back
    reshuffled epochs; all randomness comes from ``generator`` (in the main process). A
    data-parallel rank gets its contiguous shard of each of these global batches: the ranks
    together see exactly the batches one process sees."""
    import torch

    size = min(batch, n)
    part = slice(0, size)
    if world_size > 1:
        from gaia_bench.plugins.distributed import shard

        part = shard(size, rank, world_size)
    pool: list[int] = []
    for _ in range(steps):
        while len(pool) < size:
            pool.extend(torch.randperm(n, generator=generator).tolist())
        seeds = torch.randint(0, 2**62, (size,), generator=generator).tolist()
        yield list(zip(pool[:size], seeds))[part]
        del pool[:size]


class _BatchStream:
    """A DataLoader ``batch_sampler`` over :func:`_stream_batches` (one rank's shards of it)."""

    def __init__(self, n: int, batch: int, steps: int, generator, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch, self.steps, self.generator = n, batch, steps, generator
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return _stream_batches(self.n, self.batch, self.steps, self.generator, self.rank, self.world_size)


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


@dataclass
class _Recipe:
    """Everything the training loop needs, picklable: it travels to the data-parallel ranks."""

    fit_samples: list[Sample]
    y_fit: np.ndarray
    val_samples: list[Sample]
    y_val: np.ndarray
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_scale_min: float
    hflip: bool
    batch: int
    iterations: int
    eval_interval: int
    warmup: int
    head_lr: float
    backbone_lr: float
    weight_decay: float
    label_smoothing: float
    patience: int
    stop_floor: int
    seed: int
    workers: int
    eval_batch: int

    @property
    def global_batch(self) -> int:
        return min(self.batch, max(len(self.fit_samples), 1))

    def train_transform(self):
        from torchvision import transforms

        augment = [transforms.RandomResizedCrop(self.size, scale=(self.crop_scale_min, 1.0))]
        if self.hflip:
            augment.append(transforms.RandomHorizontalFlip())
        return transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def test_transform(self):
        from gaia_bench.imagedata import eval_transform

        return eval_transform(self.size, self.mean, self.std)


def _train(recipe: _Recipe, model, device: str, advance, rank=None) -> dict[str, Any]:
    """The training loop, in this process (``rank`` None) or as one data-parallel rank (a
    :class:`gaia_bench.plugins.distributed.Rank`): every rank draws the same stream of global
    batches and trains on its shard of each, weighting its loss by its shard's share so that the
    averaged gradient is the global batch's; held-out top-1 is summed over the ranks' shards of the
    held-out set, so every rank takes the same early-stopping decision. Returns the best held-out
    state (only where ``rank`` is None or rank 0) and the curve."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from gaia_bench.imagedata import ImageSamples

    world, index = (rank.world_size, rank.rank) if rank is not None else (1, 0)
    net = rank.wrap(model) if rank is not None else model
    module = net.module if rank is not None else model
    backbone, head = module[0], module[1]
    keeps_state = rank is None or rank.is_main
    optimizer = torch.optim.AdamW([{"params": head.parameters(), "lr": recipe.head_lr},
                                   {"params": backbone.parameters(), "lr": recipe.backbone_lr}],
                                  weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(recipe.warmup, recipe.iterations))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    generator = torch.Generator().manual_seed(recipe.seed)
    fit_samples, y_fit, val_samples, y_val = recipe.fit_samples, recipe.y_fit, recipe.val_samples, recipe.y_val
    loader = DataLoader(_SeededDraws(ImageSamples(fit_samples, recipe.train_transform(), recipe.size)),
                        num_workers=recipe.workers, generator=generator,
                        batch_sampler=_BatchStream(len(fit_samples), recipe.batch, recipe.iterations, generator,
                                                   index, world))
    test_transform = recipe.test_transform()

    best: dict[str, Any] = {"top1": None, "iteration": None, "state": None}
    curve: list[list[float]] = []
    stale, stopped_early, step, last_loss, last_n = 0, False, 0, float("nan"), 0

    def evaluate_holdout() -> None:
        nonlocal stale
        if rank is None:
            pred = _predict(module, val_samples, test_transform, recipe.size, device, recipe.eval_batch, 0)
            top1 = float((pred == y_val).mean() * 100)
        else:
            part = rank.shard(len(val_samples))
            pred = _predict(module, val_samples[part], test_transform, recipe.size, device, recipe.eval_batch, 0)
            top1 = float(rank.all_sum([float((pred == y_val[part]).sum())])[0] / len(val_samples) * 100)
        curve.append([step, top1])
        if best["top1"] is None or top1 > best["top1"]:
            best.update(top1=top1, iteration=step)
            if keeps_state:
                best["state"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
            stale = 0
        else:
            stale += 1

    net.train()
    for images, batch_indices, errors in loader:
        _check_errors(fit_samples, batch_indices, errors)
        loss = criterion(net(images.to(device)), torch.as_tensor(y_fit[batch_indices.numpy()], device=device))
        optimizer.zero_grad(set_to_none=True)
        if world > 1:  # DDP averages over the ranks: weight by the shard's share of the global batch
            (loss * (len(batch_indices) * world / recipe.global_batch)).backward()
        else:
            loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        last_loss, last_n = float(loss.detach()), len(batch_indices)
        advance(1)
        if len(val_samples) and (step % recipe.eval_interval == 0 or step == recipe.iterations):
            evaluate_holdout()
            net.train()
            if stale >= recipe.patience and recipe.stop_floor <= step < recipe.iterations:
                stopped_early = True
                break
    del loader  # stop worker processes before the test pass
    if rank is not None:  # the global batch's mean loss (every rank leaves the loop at the same step)
        last_loss = rank.all_sum([last_loss * last_n])[0] / recipe.global_batch
    state = best["state"]
    if rank is not None and keeps_state:  # back to the caller, on CPU
        final = state if state is not None else module.state_dict()
        state = {k: v.detach().cpu().clone() for k, v in final.items()}
    return {"best_top1": best["top1"], "best_iteration": best["iteration"], "best_state": best["state"] is not None,
            "state": state, "curve": curve, "step": step, "stopped_early": stopped_early, "last_loss": last_loss}


def _train_rank(rank, payload: tuple[_Recipe, Any]) -> dict[str, Any]:
    """One data-parallel rank (see :mod:`gaia_bench.plugins.distributed`). The model arrives on CPU
    in memory shared by every rank: each trains its own copy."""
    import copy

    import torch

    recipe, shared = payload
    torch.manual_seed(int(np.random.SeedSequence([recipe.seed, rank.rank]).generate_state(1)[0]))
    start = time.perf_counter()
    model = copy.deepcopy(shared).to(rank.device)
    del shared
    outcome = _train(recipe, model, rank.device, rank.advance, rank)
    return {**outcome, "rank0_train_s": time.perf_counter() - start}


def _data_parallel(ctx, recipe: _Recipe, model, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``model`` (on CPU) in ``ctx.processes`` ranks; (rank 0's outcome, the launch's details)."""
    from gaia_bench.errors import UsageError
    from gaia_bench.plugins.distributed import plan_launch, run_data_parallel, shard

    launch = plan_launch(ctx.device, ctx.processes)
    world = launch.world_size
    if recipe.global_batch < world:
        raise UsageError(f"the global batch of {recipe.global_batch} image(s) cannot be split over {world} processes",
                         f"use --gpus-per-job {recipe.global_batch} or fewer")
    advance = ctx.progress.start(f"finetune {name} ({world} × {launch.backend})", recipe.iterations)
    start = time.perf_counter()
    try:
        outcome = run_data_parallel(_train_rank, (recipe, model), launch, on_progress=advance)
    finally:
        ctx.progress.finish()
    wall = time.perf_counter() - start
    sizes = [len(range(recipe.global_batch)[shard(recipe.global_batch, r, world)]) for r in range(world)]
    details = {**launch.describe(), "batch_per_rank": sizes, "batchnorm": launch.batchnorm,
               "startup_s": round(wall - outcome["rank0_train_s"], 3)}
    return outcome, details


def run_classification_finetune(ctx) -> AdaptationResult:
    import torch
    from torch import nn

    hp: dict[str, Any] = {**CLASSIFICATION_HYPERPARAMS, **SHARED_DEFAULTS, **ctx.hyperparams}
    dataset, spec = ctx.job.dataset, ctx.job.backbone
    size, seed, device = int(ctx.config.image_size), int(ctx.config.seed), ctx.device
    workers, eval_batch = int(ctx.session.workers), int(ctx.session.batch_size)
    train, indices = ctx.train_subset()
    test = ctx.load(dataset.test_split)
    subset = [train.samples[i] for i in indices]
    y_subset = np.asarray(train.labels())[indices]
    fit, val = holdout_split(y_subset, float(hp["val_share"]), seed)

    batch = int(hp["batch"])
    iterations, schedule = scaled_schedule(len(fit), batch, hp["epochs"], int(hp["min_iters"]), int(hp["max_iters"]),
                                           ctx.config.init, trains_backbone=True)
    steps_per_epoch = math.ceil(max(len(fit), 1) / max(batch, 1))
    head_lr = float(hp["lr"])
    recipe = _Recipe(
        fit_samples=[subset[i] for i in fit], y_fit=y_subset[fit], val_samples=[subset[i] for i in val],
        y_val=y_subset[val], size=size, mean=tuple(spec.mean), std=tuple(spec.std),
        crop_scale_min=float(hp["crop_scale_min"]), hflip=bool(hp["hflip"]), batch=batch, iterations=iterations,
        eval_interval=max(1, round(float(hp["eval_every_epochs"]) * steps_per_epoch)),
        warmup=max(1, round(WARMUP_SHARE * iterations)), head_lr=head_lr,
        backbone_lr=head_lr * float(hp["backbone_lr_scale"]), weight_decay=float(hp["weight_decay"]),
        label_smoothing=float(hp["label_smoothing"]), patience=int(hp["patience"]),
        stop_floor=min(iterations, schedule["min_iters"] * schedule["scratch_factor"]), seed=seed, workers=workers,
        eval_batch=eval_batch)
    processes = ctx.processes
    distributed: dict[str, Any] = {"world_size": 1, "backend": None}

    name = f"{spec.name} / {dataset.name}"
    with torch.random.fork_rng(devices=_rng_devices(device)):
        # A copy: the session keeps the initialized backbone for the other jobs of the command. Seeded
        # after it is built: building reseeds (random init), reusing the session's copy does not.
        backbone = ctx.trainable_backbone()
        torch.manual_seed(seed)
        head = ctx.job.task.make_head(HeadInput((backbone.num_features,), (size, size)), dataset,
                                      Samples(subset, train.classes), hp, seed)
        model = nn.Sequential(backbone, head.module)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

        start = time.perf_counter()
        if processes > 1:
            outcome, distributed = _data_parallel(ctx, recipe, model.cpu(), name)
            model.load_state_dict(outcome["state"])
            model.to(device)
        else:
            model.to(device)
            advance = ctx.progress.start(f"finetune {name}", iterations)
            outcome = _train(recipe, model, device, advance)
            ctx.progress.finish()
            if outcome["state"] is not None:
                model.load_state_dict(outcome["state"])
        train_seconds = time.perf_counter() - start

        start = time.perf_counter()
        advance = ctx.progress.start(f"evaluate {name}:{dataset.test_split}", len(test))
        y_pred = _predict(model, test.samples, recipe.test_transform(), size, device, eval_batch, workers,
                          on_batch=advance)
        ctx.progress.finish()
        eval_seconds = time.perf_counter() - start

    metrics = ctx.job.task.evaluate(y_pred.tolist(), test, dataset)
    step, best_iteration = outcome["step"], outcome["best_iteration"]
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
            "eval_every_iterations": recipe.eval_interval,
            "patience": recipe.patience,
            "not_before_iteration": recipe.stop_floor,
            "stopped_early": outcome["stopped_early"],
        },
        "best_val_top1": outcome["best_top1"],
        "best_iteration": best_iteration,
        "best_epoch": None if best_iteration is None else round(best_iteration / steps_per_epoch, 3),
        "weights_tested": "best held-out" if outcome["best_state"] else "final",
        "val_curve": outcome["curve"],
        "final_train_loss": outcome["last_loss"],
        "optimizer": {
            "name": "AdamW", "head_lr": head_lr, "backbone_lr": recipe.backbone_lr,
            "backbone_lr_scale": float(hp["backbone_lr_scale"]), "weight_decay": recipe.weight_decay,
            "warmup_iterations": recipe.warmup, "warmup": "linear", "decay": "cosine to 0",
            "label_smoothing": recipe.label_smoothing, "batch": recipe.global_batch,
        },
        "augmentation": {"random_resized_crop_scale": [recipe.crop_scale_min, 1.0], "hflip": recipe.hflip},
        "distributed": distributed,
    }
    return AdaptationResult(
        metrics=metrics,
        n_train=len(indices),
        n_test=len(test),
        details=details,
        stage_seconds={"finetune_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=int(trainable),
    )
