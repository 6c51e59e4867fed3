"""The one training loop every adaptation that trains weights runs on (a library: registers nothing).

:func:`fit` trains a :class:`TrainModel` for :attr:`Recipe.iterations` steps on the batches of a
:class:`BatchSource` (plus, optionally, an ``extra`` source whose batches are handed to the model
next to each main batch: how ``tsds`` adds its selected upstream images and ``vqgan-replay`` and
``mf`` stage 4 their replayed ones). It owns, once for everyone:

* optimizer groups: the model names its parameter groups; ``"backbone"`` trains at
  ``backbone_lr_scale`` x the recipe's lr (a new head needs large steps, pretrained features small
  ones), every other group at the lr. AdamW, Adam or SGD with momentum, weight decay on all groups;
* the schedule: linear warm-up over ``warmup`` steps, then cosine decay to 0, step decay (x0.1 at
  each milestone) or a constant lr (:func:`lr_factor`); optional gradient-norm clipping;
* held-out early stopping: every ``eval_every`` steps (and at the last) a :class:`HeldOut` scores
  the model; the best weights (ties keep the earlier) are restored at the end, and training stops
  after ``patience`` checks without improvement -- but never before ``stop_floor`` steps: a
  held-out set of a dozen images plateaus by chance early on, and a few-shot run must not stop
  near chance because of it. The test split never chooses the weights;
* data-parallel training (``processes > 1``, ``--gpus-per-job``, :mod:`.distributed`): every rank
  draws the same global batches and trains on its shard of each (``BatchSource.batches(rank,
  world_size)``), its loss weighted by its shard's share so the averaged gradient is the global
  batch's; the held-out statistics are summed over the ranks' shards, so every rank takes the
  same stopping decision; the trained weights come back into the caller's model.

The caller seeds (``torch.random.fork_rng(devices=rng_devices(device))`` + ``manual_seed``) and
builds the model inside that scope; the loop draws no global random numbers itself, so a job id
always gives the same numbers.

The rest of the module is the image-classification kit the classification fine-tunes share
(``finetune``, ``tsds``, ``vqgan-replay``, ``mf``): :class:`Classifier` (backbone + linear head,
optionally an upstream head for extra images), :class:`ImageStream` (seeded, augmented batch
stream), :class:`TopOneHeldOut`, :func:`predict_logits`, :func:`finetune_recipe` and the
``finetune`` defaults :data:`FINETUNE_DEFAULTS`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Protocol, Sequence

import numpy as np

from gaia_bench.api import Sample
from gaia_bench.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gaia_bench.api import Progress

# ``finetune``'s shared hyper-parameters (every task's, and of the methods built on finetune). Job
# ids hash them: names and defaults never change.
FINETUNE_DEFAULTS: dict[str, Any] = {"backbone_lr_scale": 0.1, "val_share": 0.2, "patience": 5}
# Warm-up share of a classification fine-tune's steps (Adam's early steps on a random head would
# wreck pretrained features).
WARMUP_SHARE = 0.05
UNREADABLE_HINT = "replace or delete the file, or re-create the dataset with `gaia-bench datasets prepare`"


# ----------------------------------------------------------------------------- the contract
@dataclass(frozen=True)
class Recipe:
    """How to train, all of it picklable (it travels to data-parallel ranks)."""

    iterations: int  # optimizer steps at most
    lr: float  # every group's but the backbone's
    backbone_lr_scale: float = 1.0  # the "backbone" group's lr is lr x this
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    warmup: int = 0  # linear warm-up steps (see lr_factor)
    warmup_start: float = 0.0  # lr factor the warm-up starts from ("steps" decay: 0.1 in detection)
    decay: Literal["cosine", "steps", "constant"] = "cosine"
    milestones: tuple[float, ...] = ()  # "steps": x0.1 from each of these steps on (e.g. 2 * n / 3)
    clip_norm: float | None = None  # max gradient norm over all trained parameters
    eval_every: int = 1  # steps between held-out checks (and one at the last step)
    patience: int = 5  # checks without improvement before stopping
    stop_floor: int = 0  # never stop early before this many steps
    higher_is_better: bool = True  # of the held-out score
    seed: int = 0  # the job seed: seeds each data-parallel rank's global RNG
    precision: str | None = None  # the job's --precision: autocast of every forward (None: fp32)


@dataclass
class Batch:
    """One step's data for this process: ``inputs`` is what the model's ``forward`` receives (its
    tensors, also inside tuples, lists and dicts, are moved to the device by the loop); ``size``
    counts this process's items (its shard of the global batch when data-parallel)."""

    inputs: Any
    size: int


class BatchSource(Protocol):
    """A stream of batches, made afresh in every process that trains (so it must be picklable)."""

    @property
    def batch_size(self) -> int:
        """Items per step over all ranks (the global batch)."""

    def batches(self, steps: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """``steps`` batches (rank ``rank``'s shard of each global batch). Every rank must draw the
        same global batches, so all randomness comes from the source's own seeded generator."""


class HeldOut(Protocol):
    """The held-out part of the subset, scored during training to choose the weights."""

    def __len__(self) -> int: ...

    def statistics(self, model: Any, part: slice) -> list[float]:
        """Additive statistics of ``model`` (eval mode, no grad) on the held-out items ``part``
        (all of them in one process; a rank's shard when data-parallel, summed over the ranks)."""

    def score(self, totals: Sequence[float]) -> float:
        """The score from the summed statistics (NaN: undefined, never counts as an improvement)."""


class TrainModel(Protocol):
    """What the loop trains: a ``torch.nn.Module`` whose ``forward`` returns the loss of a batch.

    ``forward(inputs)`` -- or ``forward(inputs, extra)`` when :func:`fit` has an ``extra`` source --
    returns the scalar loss (the mean over the batch's items), or ``(loss, parts)`` with ``parts``
    a dict of named loss tensors that the result reports. The loop calls ``train()`` before every
    step (override it to keep e.g. frozen BatchNorm statistics) and ``eval()`` before a held-out
    check; ``state_dict()`` is what it keeps of the best check and restores."""

    def parameter_groups(self) -> Mapping[str, Sequence["nn.Parameter"]]:
        """The trained parameters by group; ``"backbone"`` gets ``backbone_lr_scale`` x the lr,
        every other group the lr. Empty groups are left out."""


@dataclass
class FitResult:
    """What a run of :func:`fit` did. The model it trained holds the weights to test."""

    steps: int  # optimizer steps taken
    stopped_early: bool
    best_score: float | None  # best held-out score (None: no held-out check)
    best_iteration: int | None
    restored: bool  # True: the best held-out weights were restored; False: the final weights
    curve: list[list[float]]  # [step, held-out score] of every check
    last_loss: float  # the last step's loss (the global batch's mean when data-parallel)
    last_parts: dict[str, float]  # the last step's named loss parts (this process's)
    losses: list[float]  # every step's loss (this process's, rank 0's when data-parallel)
    seen: dict[str, int]  # items trained on: {"main": ..., "extra": ...} (rank 0's when data-parallel)
    model_seconds: float  # time in forward, backward and optimizer steps (rank 0's)
    distributed: dict[str, Any] = field(default_factory=lambda: {"world_size": 1, "backend": None})


# ----------------------------------------------------------------------------- shared helpers
def train_task_head(train_backbone: bool) -> Callable[[Any], Any]:
    """The ``run`` of an adaptation that trains the job's task head (``TaskSpec.train_head``), over
    the frozen backbone or together with it: ``linear-probe`` and ``finetune`` are this, nothing more."""

    def run(ctx):
        task = ctx.job.task
        if task.train_head is None:
            raise UsageError(f"task {task.name!r} has no head for {ctx.job.adaptation.name} to train",
                             "give its TaskSpec a train_head, or choose another --adapt")
        return task.train_head(ctx, train_backbone=train_backbone)

    return run


def check_errors(samples: Sequence[Sample], indices: Any, errors: Sequence[str]) -> None:
    """Raise the :class:`DataError` of the first unreadable image of a batch of
    :class:`gaia_bench.imagedata.ImageSamples` items (``indices`` into ``samples``)."""
    bad = [(int(i), e) for i, e in zip(indices, errors) if e]
    if bad:
        i, err = bad[0]
        raise DataError(f"cannot read image {samples[i].path}: {err}", UNREADABLE_HINT)


def rng_devices(device: str) -> list[int]:
    """The devices whose RNG ``torch.random.fork_rng`` must save for a job on ``device``."""
    import torch

    dev = torch.device(device)
    return [dev.index or 0] if dev.type == "cuda" else []


def lr_factor(recipe: Recipe, step: int) -> float:
    """The lr multiplier at (0-based) ``step``: linear warm-up from ``warmup_start`` over
    ``warmup`` steps, then ``cosine`` decay to 0 at ``iterations`` (measured from the warm-up's
    end), ``steps`` (x0.1 from each milestone step on, warm-up included) or ``constant``."""
    warmup, total = recipe.warmup, recipe.iterations
    if recipe.decay == "cosine":
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    warm = recipe.warmup_start + (1.0 - recipe.warmup_start) * min(1.0, (step + 1) / warmup) if warmup else 1.0
    if recipe.decay == "steps":
        return warm * 0.1 ** sum(step >= m for m in recipe.milestones)
    return warm


def _to_device(value: Any, device: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def grad_scaler(device: str, precision: str | None) -> Any:
    """fp16 on CUDA scales the loss (its gradients would underflow fp16's range); bf16 needs no scaling."""
    import torch

    return torch.amp.GradScaler("cuda") if precision == "fp16" and torch.device(device).type == "cuda" else None


def _optimizer(model: Any, recipe: Recipe):
    import torch

    groups = [{"params": list(params), "lr": recipe.lr * (recipe.backbone_lr_scale if name == "backbone" else 1.0)}
              for name, params in model.parameter_groups().items()]
    groups = [g for g in groups if g["params"]]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


# ----------------------------------------------------------------------------- the loop
def fit(model: Any, recipe: Recipe, batches: BatchSource, *, held_out: HeldOut | None = None,
        extra: BatchSource | None = None, device: str = "cpu", processes: int = 1,
        progress: "Progress | None" = None, label: str = "train") -> FitResult:
    """Train ``model`` (a :class:`TrainModel`) per ``recipe`` on ``batches`` (and ``extra``), in
    this process or data-parallel in ``processes`` ranks; early-stop on ``held_out`` when it has
    items. On return ``model`` is on ``device`` with the weights to test (the best held-out ones
    when there was a check). ``progress`` shows one bar named ``label``."""
    if processes > 1:
        return _fit_data_parallel(model, recipe, batches, held_out, extra, device, processes, progress, label)
    model.to(device)
    advance = progress.start(label, recipe.iterations) if progress is not None else (lambda n: None)
    try:
        result, state = _loop(model, recipe, batches, held_out, extra, device, advance)
    finally:
        if progress is not None:
            progress.finish()
    if state is not None:
        model.load_state_dict(state)
    return result


def _loop(model: Any, recipe: Recipe, batches: BatchSource, held_out: HeldOut | None, extra: BatchSource | None,
          device: str, advance: Callable[[int], None], rank: Any = None) -> tuple[FitResult, dict | None]:
    """The loop in this process (``rank`` None) or as one data-parallel rank (a
    :class:`gaia_bench.plugins.adaptations.lib.distributed.Rank`). Returns the result and the best held-out state
    (None when there was none; always None on ranks other than 0)."""
    import torch

    from gaia_bench.devices import autocast

    world, index = (rank.world_size, rank.rank) if rank is not None else (1, 0)
    net = rank.wrap(model) if rank is not None else model
    keeps_state = rank is None or rank.is_main
    optimizer = _optimizer(model, recipe)
    scaler = grad_scaler(device, recipe.precision)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    clipped = [p for group in optimizer.param_groups for p in group["params"]]
    main = batches.batches(recipe.iterations, index, world)
    side = extra.batches(recipe.iterations, index, world) if extra is not None else None
    n_held = len(held_out) if held_out is not None else 0

    best: dict[str, Any] = {"score": None, "iteration": None, "state": None}
    curve: list[list[float]] = []
    losses: list[float] = []
    seen = {"main": 0, "extra": 0}
    stale, stopped_early, step, model_seconds = 0, False, 0, 0.0
    last_loss, last_size, last_parts = float("nan"), 0, {}

    def check() -> None:
        nonlocal stale
        model.eval()
        with torch.no_grad(), autocast(device, recipe.precision):
            if rank is None:
                totals = held_out.statistics(model, slice(0, n_held))
            else:
                totals = rank.all_sum(held_out.statistics(model, rank.shard(n_held)))
        value = float(held_out.score(totals))
        curve.append([step, value])
        better = (value > best["score"] if recipe.higher_is_better else value < best["score"]) \
            if best["score"] is not None else not math.isnan(value)
        if better:
            best.update(score=value, iteration=step)
            if keeps_state:
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            stale = 0
        else:
            stale += 1

    try:
        for _ in range(recipe.iterations):
            batch = next(main)
            extra_batch = next(side) if side is not None else None
            net.train()
            factor = lr_factor(recipe, step)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            tick = time.perf_counter()
            inputs = _to_device(batch.inputs, device)
            with autocast(device, recipe.precision):
                out = net(inputs) if extra_batch is None else net(inputs, _to_device(extra_batch.inputs, device))
            loss, parts = out if isinstance(out, tuple) else (out, {})
            optimizer.zero_grad(set_to_none=True)
            # DDP averages over the ranks: weight by the shard's share of the global batch
            weighted = loss * (batch.size * world / batches.batch_size) if world > 1 else loss
            (scaler.scale(weighted) if scaler else weighted).backward()
            if scaler and recipe.clip_norm is not None:
                scaler.unscale_(optimizer)  # clip the true gradients
            if recipe.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(clipped, recipe.clip_norm)
            if scaler:
                scaler.step(optimizer)  # skips a step whose gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            model_seconds += time.perf_counter() - tick
            step += 1
            last_loss, last_size = float(loss.detach()), batch.size
            last_parts = {k: float(v.detach()) for k, v in parts.items()}
            losses.append(last_loss)
            seen["main"] += batch.size
            seen["extra"] += extra_batch.size if extra_batch is not None else 0
            advance(1)
            if n_held and (step % recipe.eval_every == 0 or step == recipe.iterations):
                check()
                if stale >= recipe.patience and recipe.stop_floor <= step < recipe.iterations:
                    stopped_early = True
                    break
    finally:
        for stream in (main, side):  # a generator's DataLoader workers stop before the test pass
            if hasattr(stream, "close"):
                stream.close()
    if rank is not None:  # the global batch's mean loss (every rank leaves the loop at the same step)
        last_loss = rank.all_sum([last_loss * last_size])[0] / batches.batch_size
    result = FitResult(steps=step, stopped_early=stopped_early, best_score=best["score"],
                       best_iteration=best["iteration"], restored=best["iteration"] is not None, curve=curve,
                       last_loss=last_loss, last_parts=last_parts, losses=losses, seen=seen,
                       model_seconds=model_seconds)
    return result, best["state"]


def _fit_rank(rank: Any, payload: tuple) -> tuple[FitResult, dict, float]:
    """One data-parallel rank: trains its own copy of the model (it arrives on CPU, in memory
    shared by every rank) and returns rank 0's result, the weights to test (on CPU) and its time."""
    import torch

    model, recipe, batches, held_out, extra = payload
    torch.manual_seed(int(np.random.SeedSequence([recipe.seed, rank.rank]).generate_state(1)[0]))
    start = time.perf_counter()
    model = copy.deepcopy(model).to(rank.device)
    result, state = _loop(model, recipe, batches, held_out, extra, rank.device, rank.advance, rank)
    if rank.is_main:
        state = {k: v.detach().cpu().clone() for k, v in (state if state is not None else model.state_dict()).items()}
    return result, state, time.perf_counter() - start


def _fit_data_parallel(model: Any, recipe: Recipe, batches: BatchSource, held_out: HeldOut | None,
                       extra: BatchSource | None, device: str, processes: int, progress: "Progress | None",
                       label: str) -> FitResult:
    from gaia_bench.plugins.adaptations.lib.distributed import plan_launch, run_data_parallel, shard

    launch = plan_launch(device, processes)
    world, global_batch = launch.world_size, batches.batch_size
    if global_batch < world:
        raise UsageError(f"the global batch of {global_batch} image(s) cannot be split over {world} processes",
                         f"use --gpus-per-job {global_batch} or fewer")
    advance = progress.start(f"{label} ({world} × {launch.backend})", recipe.iterations) if progress else None
    start = time.perf_counter()
    try:
        result, state, rank_seconds = run_data_parallel(_fit_rank, (model.cpu(), recipe, batches, held_out, extra),
                                                        launch, on_progress=advance or (lambda n: None))
    finally:
        if progress is not None:
            progress.finish()
    wall = time.perf_counter() - start
    model.load_state_dict(state)
    model.to(device)
    sizes = [len(range(global_batch)[shard(global_batch, r, world)]) for r in range(world)]
    result.distributed = {**launch.describe(), "batch_per_rank": sizes, "batchnorm": launch.batchnorm,
                          "startup_s": round(wall - rank_seconds, 3)}
    return result


# ----------------------------------------------------------------------------- image classification
def augmenting_transform(size: int, mean: Sequence[float], std: Sequence[float], crop_scale_min: float,
                         hflip: bool):
    """Fine-tuning's training pipeline: ``RandomResizedCrop(scale=(crop_scale_min, 1))`` (mild: the
    images are small), horizontal flips only with ``hflip`` (a mirrored digit is another symbol)."""
    from torchvision import transforms

    augment = [transforms.RandomResizedCrop(size, scale=(crop_scale_min, 1.0))]
    if hflip:
        augment.append(transforms.RandomHorizontalFlip())
    return transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(mean, std)])


def predict_logits(net: Any, samples: Sequence[Sample], transform: Any, size: int, device: str, batch_size: int,
                   workers: int, on_batch: Callable[[int], None] | None = None, precision: str | None = None) -> np.ndarray:
    """The logits ``net`` (images -> logits, put in eval mode) gives every sample, in order (float32; the
    forward under ``precision``'s autocast)."""
    import torch
    from torch.utils.data import DataLoader

    from gaia_bench.devices import autocast
    from gaia_bench.imagedata import ImageSamples

    loader = DataLoader(ImageSamples(samples, transform, size), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    net.eval()
    out: np.ndarray | None = None
    with torch.no_grad():
        for images, indices, errors in loader:
            check_errors(samples, indices, errors)
            with autocast(device, precision):
                logits = net(images.to(device))
            logits = logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(samples), logits.shape[1]), dtype=np.float32)
            out[indices.numpy()] = logits
            if on_batch:
                on_batch(len(indices))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def test_and_held_out_logits(ctx, net: Any, test: Sequence[Sample], held_out: Sequence[Sample],
                             label: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The logits of the test split and of the held-out part (None when nothing is held out) under
    one progress bar, with the evaluation transform: the held-out logits fit the temperature that
    calibrates the test logits (:func:`~gaia_bench.tasks.types.lib.calibration.calibration_report`)."""
    from gaia_bench.imagedata import eval_transform

    spec, size = ctx.job.backbone, int(ctx.config.image_size)
    transform = eval_transform(size, spec.mean, spec.std)
    advance = ctx.progress.start(f"evaluate {label}", len(test) + len(held_out))
    logits, val_logits = (predict_logits(net, samples, transform, size, ctx.device, int(ctx.batch_size),
                                         int(ctx.workers), on_batch=advance, precision=ctx.config.precision)
                          if len(samples) else None
                          for samples in (test, held_out))
    ctx.progress.finish()
    return logits, val_logits


def predict_classes(net: Any, samples: Sequence[Sample], transform: Any, size: int, device: str, batch_size: int,
                    workers: int, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """The class ``net`` predicts for every sample, in order: the argmax of :func:`predict_logits`."""
    return predict_logits(net, samples, transform, size, device, batch_size, workers, on_batch).argmax(axis=1)


def _stream_draws(n: int, batch: int, steps: int, generator: Any, rank: int = 0,
                  world_size: int = 1) -> Iterator[list[tuple[int, int]]]:
    """``steps`` batches of ``min(batch, n)`` draws ``(index, augmentation seed)`` from back-to-back
    reshuffled epochs; all randomness comes from ``generator`` (in the main process). A
    data-parallel rank gets its contiguous shard of each of these global batches: the ranks
    together see exactly the batches one process sees."""
    import torch

    from gaia_bench.plugins.adaptations.lib.distributed import shard

    size = min(batch, n)
    part = shard(size, rank, world_size) if world_size > 1 else slice(0, size)
    pool: list[int] = []
    for _ in range(steps):
        while len(pool) < size:
            pool.extend(torch.randperm(n, generator=generator).tolist())
        seeds = torch.randint(0, 2**62, (size,), generator=generator).tolist()
        yield list(zip(pool[:size], seeds))[part]
        del pool[:size]


class _DrawSampler:
    """A DataLoader ``batch_sampler`` over :func:`_stream_draws`."""

    def __init__(self, n: int, batch: int, steps: int, generator: Any, rank: int, world_size: int) -> None:
        self.args = (n, batch, steps, generator, rank, world_size)

    def __len__(self) -> int:
        return self.args[2]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return _stream_draws(*self.args)


class _SeededDraws:
    """A map-style dataset over an :class:`~gaia_bench.imagedata.ImageSamples` indexed by
    ``(index, seed)``: each draw's augmentation is seeded by the sampler, so the numbers do not
    depend on ``--workers`` (not part of the job id) nor on which worker reads which image."""

    def __init__(self, images: Any) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]):
        import torch

        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.images[index]


@dataclass
class ImageStream:
    """A :class:`BatchSource` of labelled images: reshuffled epochs cut into full batches of
    ``min(batch, len(samples))`` (every step the same size, so BatchNorm statistics and step sizes
    stay comparable, and every image is seen equally often), each draw augmented under its own seed.
    Yields ``Batch((images, labels), n)``; the stream is seeded by ``seed`` alone."""

    samples: Sequence[Sample]
    labels: np.ndarray
    transform: Any
    size: int
    batch: int
    seed: int
    workers: int = 0

    @property
    def batch_size(self) -> int:
        return min(self.batch, max(len(self.samples), 1))

    def batches(self, steps: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        import torch
        from torch.utils.data import DataLoader

        from gaia_bench.imagedata import ImageSamples

        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(_SeededDraws(ImageSamples(self.samples, self.transform, self.size)),
                            num_workers=self.workers, generator=generator,
                            batch_sampler=_DrawSampler(len(self.samples), self.batch, steps, generator, rank,
                                                       world_size))
        for images, indices, errors in loader:
            check_errors(self.samples, indices, errors)
            yield Batch((images, torch.as_tensor(self.labels[indices.numpy()])), len(indices))


@dataclass
class TopOneHeldOut:
    """A :class:`HeldOut` of labelled images scored by top-1 (%) of a :class:`Classifier`."""

    samples: Sequence[Sample]
    labels: np.ndarray
    transform: Any
    size: int
    batch_size: int

    def __len__(self) -> int:
        return len(self.samples)

    def statistics(self, model: Any, part: slice) -> list[float]:
        device = str(next(model.parameters()).device)
        pred = predict_classes(model.classifier, self.samples[part], self.transform, self.size, device,
                               self.batch_size, 0)
        return [float((pred == self.labels[part]).sum())]

    def score(self, totals: Sequence[float]) -> float:
        return float(totals[0] / len(self.samples) * 100)


def _classifier_module():
    from torch import nn

    class Classifier(nn.Module):
        """A :class:`TrainModel`: ``backbone`` + linear ``head`` trained with label-smoothed
        cross-entropy. Extra images (``fit(extra=...)``, batches ``(images, labels)``) go through
        the backbone in the same forward pass as the main ones (one BatchNorm batch) and are
        classified by ``extra_head`` (their own label space) or, without one, by ``head``. Their
        loss counts as ``extra_weight`` x its mean next to the main images' mean, or, with
        ``extra_weight`` None, every image counts alike (the mean over the mixed batch)."""

        def __init__(self, backbone: nn.Module, head: nn.Module, label_smoothing: float = 0.0,
                     extra_head: nn.Module | None = None, extra_weight: float | None = None) -> None:
            super().__init__()
            self.backbone, self.head, self.extra_head = backbone, head, extra_head
            self.extra_weight = extra_weight
            self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

        @property
        def classifier(self) -> nn.Module:
            """Images -> logits of the main head (what is tested)."""
            return nn.Sequential(self.backbone, self.head)

        def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
            heads = [*self.head.parameters(), *(self.extra_head.parameters() if self.extra_head is not None else [])]
            return {"head": heads, "backbone": list(self.backbone.parameters())}

        def forward(self, inputs, extra=None):
            import torch

            images, targets = inputs
            if extra is None:
                return self.criterion(self.head(self.backbone(images)), targets)
            up_images, up_targets = extra
            n_down, n_up = len(targets), len(up_targets)
            features = self.backbone(torch.cat([images, up_images]))
            up_head = self.extra_head if self.extra_head is not None else self.head
            down = self.criterion(self.head(features[:n_down]), targets)
            up = self.criterion(up_head(features[n_down:]), up_targets)
            if self.extra_weight is None:
                loss = (n_down * down + n_up * up) / (n_down + n_up)
            else:
                loss = down + self.extra_weight * up
            return loss, {"main": down, "extra": up}

    return Classifier


def __getattr__(name: str) -> Any:
    # Classifier subclasses torch.nn.Module; built on first use so importing this module stays
    # light (the CLI imports every plugin to list them).
    if name == "Classifier":
        cls = _classifier_module()
        cls.__module__, cls.__qualname__ = __name__, "Classifier"
        globals()["Classifier"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fixed_schedule(iters: Any) -> tuple[int, dict]:
    """``--hp iters=N``: exactly N steps, whatever the subset and init (equal-step comparisons of
    methods); the stop floor is N, so all of them run."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise UsageError(f"--hp iters={iters!r} is not a number of steps", "give a positive integer, e.g. --hp iters=200")
    return iters, {"rule": "fixed by --hp iters (no floor, cap or scratch factor; no early stop before the last step)",
                   "min_iters": iters, "scratch_factor": 1, "iterations": iters}


def finetune_recipe(hp: Mapping[str, Any], n_fit: int, init_name: str, seed: int,
                    precision: str | None = None) -> tuple[Recipe, dict, int]:
    """``finetune``'s classification recipe for ``n_fit`` training images: the schedule of
    :func:`gaia_bench.plugins.adaptations.lib.schedules.scaled_schedule` (3x for an un-pretrained init), AdamW with
    the backbone at ``backbone_lr_scale`` x ``lr``, warm-up over 5% then cosine, a held-out check
    every ``eval_every_epochs`` epochs, never stopping before the schedule's floor. Returns the
    recipe, the schedule's record and the steps per epoch (``ceil(n_fit / batch)``)."""
    from gaia_bench.plugins.adaptations.lib.schedules import scaled_schedule

    batch = int(hp["batch"])
    if hp.get("iters") is not None:
        iterations, schedule = fixed_schedule(hp["iters"])
    else:
        iterations, schedule = scaled_schedule(n_fit, batch, hp["epochs"], int(hp["min_iters"]), int(hp["max_iters"]),
                                               init_name, trains_backbone=True)
    steps_per_epoch = math.ceil(max(n_fit, 1) / max(batch, 1))
    recipe = Recipe(iterations=iterations, lr=float(hp["lr"]), backbone_lr_scale=float(hp["backbone_lr_scale"]),
                    optimizer="adamw", weight_decay=float(hp["weight_decay"]),
                    warmup=max(1, round(WARMUP_SHARE * iterations)), decay="cosine",
                    eval_every=max(1, round(float(hp["eval_every_epochs"]) * steps_per_epoch)),
                    patience=int(hp["patience"]),
                    stop_floor=min(iterations, schedule["min_iters"] * schedule["scratch_factor"]), seed=seed,
                    precision=precision)
    return recipe, schedule, steps_per_epoch


def train_classifier(ctx: Any, hp: Mapping[str, Any], model: Any, fit_part: tuple[Sequence[Sample], np.ndarray],
                     val_part: tuple[Sequence[Sample], np.ndarray], *, label: str, extra: BatchSource | None = None,
                     processes: int = 1) -> tuple[FitResult, dict]:
    """``finetune``'s recipe (:func:`finetune_recipe`) for a :class:`Classifier` on the job's fit
    images (augmented :class:`ImageStream`, seeded by the job seed), early-stopped on top-1 of the
    held-out images, with ``extra`` batches when given. Returns the result and the record's
    details of the training (schedule, early stopping, optimizer, augmentation, distributed)."""
    from gaia_bench.imagedata import eval_transform

    fit_samples, y_fit = fit_part
    val_samples, y_val = val_part
    spec = ctx.job.backbone
    size, seed = int(ctx.config.image_size), int(ctx.config.seed)
    recipe, schedule, steps_per_epoch = finetune_recipe(hp, len(fit_samples), ctx.config.init, seed,
                                                        ctx.config.precision)
    crop, hflip, smoothing = float(hp["crop_scale_min"]), bool(hp["hflip"]), float(hp["label_smoothing"])
    stream = ImageStream(list(fit_samples), np.asarray(y_fit), augmenting_transform(size, spec.mean, spec.std, crop, hflip),
                         size, int(hp["batch"]), seed, int(ctx.workers))
    held_out = TopOneHeldOut(list(val_samples), np.asarray(y_val), eval_transform(size, spec.mean, spec.std), size,
                             int(ctx.batch_size))
    result = fit(model, recipe, stream, held_out=held_out, extra=extra, device=ctx.device, processes=processes,
                 progress=ctx.progress, label=label)
    n_val, step, best_iteration = len(val_samples), result.steps, result.best_iteration
    details = {
        "schedule": schedule,
        "iterations_run": step,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(step / steps_per_epoch, 3),
        "n_fit": len(fit_samples),
        "n_val": n_val,
        "early_stopping": {
            "enabled": bool(n_val),
            "reason_disabled": None if n_val else "no class has 2+ samples to hold out: final weights tested",
            "metric": "held-out top1",
            "eval_every_epochs": hp["eval_every_epochs"],
            "eval_every_iterations": recipe.eval_every,
            "patience": recipe.patience,
            "not_before_iteration": recipe.stop_floor,
            "stopped_early": result.stopped_early,
        },
        "best_val_top1": result.best_score,
        "best_iteration": best_iteration,
        "best_epoch": None if best_iteration is None else round(best_iteration / steps_per_epoch, 3),
        "weights_tested": "best held-out" if result.restored else "final",
        "val_curve": result.curve,
        "final_train_loss": result.last_loss,
        "optimizer": {
            "name": "AdamW", "head_lr": recipe.lr, "backbone_lr": recipe.lr * recipe.backbone_lr_scale,
            "backbone_lr_scale": recipe.backbone_lr_scale, "weight_decay": recipe.weight_decay,
            "warmup_iterations": recipe.warmup, "warmup": "linear", "decay": "cosine to 0",
            "label_smoothing": smoothing, "batch": stream.batch_size,
        },
        "augmentation": {"random_resized_crop_scale": [crop, 1.0], "hflip": hflip},
        "distributed": result.distributed,
    }
    return result, details
