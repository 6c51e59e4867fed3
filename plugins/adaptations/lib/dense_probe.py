"""Training a dense task's head (segmentation, depth: the FPN decoder of
:mod:`gaia_bench.tasks.types.lib.dense_decoder`, built by the task's ``make_head``) over the backbone's
pyramid, on the job's percentage-shot subset. Under ``linear-probe`` the backbone is FROZEN (eval
mode, no gradients); under ``finetune`` (``train_backbone=True``) it trains too, at
``backbone_lr_scale`` x the decoder's learning rate, BatchNorm statistics frozen for pretrained
inits (batch statistics for un-pretrained ones), early-stopped on a held-out part of the subset.
The head reads the last ``LEVELS`` (4) maps of :meth:`Backbone.pyramid` (fewer when the backbone
has fewer); its loss, predictions and the task's ``evaluate`` are the task's. Nothing here knows
which dense task it trains. The test predictions go back to the runner, which scores and keeps them.

Because the backbone is frozen, its pyramid is computed ONCE per training image and kept in memory.
Images are resized (bilinear) to one fixed size: the first training image's native size rounded to a
multiple of 32 (mini-voc-seg / mini-kitti-depth: 128 x 192, kept as is), normalized with the
backbone's mean / std; ``--image-size`` (the classification input) is not used.

Schedule: Adam (lr 1e-3, weight decay 1e-4), batch 8, reshuffled each pass by a generator seeded with
the job seed (head initialization too), trained and tested with a fixed thread count and
deterministic algorithms (:mod:`.reproducible`), so a job is deterministic. The number of iterations is
``clamp(EPOCHS * ceil(n_train / BATCH), MIN_ITERS, MAX_ITERS)`` with 40 epochs, 100 and 600: it grows
with the shot fraction (10% of mini-voc-seg = 24 images -> 120 iterations; 100% = 240 -> 600).
Defaults can be overridden with the adaptation hyper-parameters ``dense_epochs``, ``dense_min_iters``,
``dense_max_iters``, ``dense_batch``, ``dense_lr``, ``dense_weight_decay``; fine-tuning an
un-pretrained init triples the schedule (:mod:`gaia_bench.plugins.adaptations.lib.schedules`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from gaia_bench.api import AdaptationResult, HeadInput, Samples
from gaia_bench.errors import UsageError

LEVELS = 4
MULTIPLE = 32
EPOCHS, MIN_ITERS, MAX_ITERS = 40, 100, 600
BATCH = 8
LR, WEIGHT_DECAY = 1e-3, 1e-4


DENSE_HYPERPARAMS = {
    "dense_epochs": EPOCHS, "dense_min_iters": MIN_ITERS, "dense_max_iters": MAX_ITERS, "dense_batch": BATCH,
    "dense_lr": LR, "dense_weight_decay": WEIGHT_DECAY, "dense_eval_every": 50,
}


def schedule_iterations(n_train: int, batch: int = BATCH, epochs: int = EPOCHS, min_iters: int = MIN_ITERS,
                        max_iters: int = MAX_ITERS) -> int:
    """``clamp(epochs * ceil(n_train / batch), min_iters, max_iters)`` (see :mod:`.schedules`)."""
    from gaia_bench.plugins.adaptations.lib.schedules import schedule_iterations as rule

    return rule(n_train, batch, epochs, min_iters, max_iters)


def fixed_size(height: int, width: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """The size rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    return (max(multiple, int(round(height / multiple)) * multiple), max(multiple, int(round(width / multiple)) * multiple))


# ----------------------------------------------------------------------------- data
def load_pixels(path, size: tuple[int, int]):
    """The image resized (bilinear) to ``size``, uint8 ``[3, H, W]``: a quarter of float32's memory,
    normalized per batch by :func:`gaia_bench.imagedata.normalize` (the numbers ToTensor +
    Normalize give each image, without a small tensor op per image)."""
    import torch
    from PIL import Image

    with Image.open(path) as img:
        image = img.convert("RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def pixel_batches(samples: Sequence, size: tuple[int, int], batch: int) -> Iterator:
    """uint8 ``[B, 3, H, W]`` batches of ``samples`` in order, each decoded by a background thread
    while the caller runs the model on the previous one."""
    import torch

    from gaia_bench.imagedata import prefetched

    chunks = (samples[s:s + batch] for s in range(0, len(samples), batch))
    return prefetched(torch.stack([load_pixels(x.path, size) for x in chunk]) for chunk in chunks)


def decode_all(samples: Sequence, size: tuple[int, int], batch: int = 64):
    """Every sample's :func:`load_pixels`, decoded once and kept: ``[N, 3, H, W]`` uint8."""
    import torch

    return torch.cat(list(pixel_batches(samples, size, batch))) if samples else torch.zeros(0, 3, *size, dtype=torch.uint8)


def compute_pyramids(backbone, samples, size, mean, std, device: str, batch_size: int, levels: int,
                     advance=lambda n: None, precision: str | None = None) -> list:
    """The last ``levels`` pyramid maps of every sample, concatenated per level (kept on ``device``, float32;
    computed under ``precision``'s autocast)."""
    import torch

    from gaia_bench.devices import autocast
    from gaia_bench.imagedata import normalize

    backbone.eval()
    chunks: list[list] = []
    with torch.no_grad(), autocast(device, precision):
        for pixels in pixel_batches(samples, size, batch_size):
            chunks.append([f.float() for f in backbone.pyramid(normalize(pixels.to(device), mean, std))[-levels:]])
            advance(len(pixels))
    return [torch.cat([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]


# ----------------------------------------------------------------------------- shared by the dense heads
def set_batchnorm_mode(module, train_statistics: bool) -> None:
    """Every BatchNorm layer in eval mode (frozen running statistics) unless asked to train them."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(train_statistics)


def batchnorm_trains(init_name: str) -> bool:
    """Fine-tuning keeps pretrained BatchNorm statistics frozen (small batches); an un-pretrained
    init's statistics mean nothing, so there BatchNorm normalizes with batch statistics."""
    from gaia_bench.plugins.adaptations.lib.schedules import UNPRETRAINED_INITS

    return init_name in UNPRETRAINED_INITS


# ----------------------------------------------------------------------------- on the training loop
def pyramid_model(head, backbone, levels: int, train_batchnorm: bool | None):
    """The :class:`~gaia_bench.plugins.adaptations.lib.training.TrainModel` of a head over a backbone's pyramid.
    ``train_batchnorm`` None: the backbone is frozen and not part of the model (its inputs are
    pyramids); otherwise it trains too (its inputs are images) and its BatchNorm layers use batch
    statistics only when ``train_batchnorm``. ``forward((inputs, targets))`` is the head's loss."""
    from torch import nn

    class PyramidHeadModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head.module
            self.backbone = backbone if train_batchnorm is not None else None

        def forward(self, batch):
            inputs, targets = batch
            if self.backbone is not None:
                inputs = [f.float() for f in self.backbone.pyramid(inputs)[-levels:]]
            return head.loss(inputs, targets)

        def train(self, mode: bool = True):
            super().train(mode)
            if mode and self.backbone is not None:
                set_batchnorm_mode(self.backbone, bool(train_batchnorm))
            return self

        def parameter_groups(self):
            return {"head": list(self.head.parameters()),
                    "backbone": list(self.backbone.parameters()) if self.backbone is not None else []}

    return PyramidHeadModel()


class ShuffledBatches:
    """The dense heads' batch stream (a :class:`~gaia_bench.plugins.adaptations.lib.training.BatchSource`):
    ``batch`` positions at a time from back-to-back passes over ``n`` items, each reshuffled by a
    generator seeded with ``seed`` (a pass's last batch may be shorter); with ``flips`` every item
    is also mirrored with probability 0.5, drawn from the same generator. ``fetch(positions,
    mirrored)`` makes a batch's ``(inputs, targets)``. One process only: the stream holds the
    in-memory pyramids."""

    def __init__(self, n: int, batch: int, seed: int, fetch: Callable[[list, list], Any], flips: bool = False) -> None:
        self.n, self.batch, self.seed, self.fetch, self.flips = n, batch, seed, fetch, flips

    @property
    def batch_size(self) -> int:
        return self.batch

    def batches(self, steps: int, rank: int = 0, world_size: int = 1) -> Iterator:
        import torch

        from gaia_bench.plugins.adaptations.lib.training import Batch

        if world_size != 1:
            raise ValueError("the pyramid heads train in one process")
        generator = torch.Generator().manual_seed(self.seed)
        order, pointer = torch.randperm(self.n, generator=generator).tolist(), 0
        for _ in range(steps):
            if pointer >= self.n:
                order, pointer = torch.randperm(self.n, generator=generator).tolist(), 0
            positions = order[pointer:pointer + self.batch]
            pointer += self.batch
            mirrored = ((torch.rand(len(positions), generator=generator) < 0.5).tolist() if self.flips
                        else [False] * len(positions))
            yield Batch(self.fetch(positions, mirrored), len(positions))


class TaskHeldOut:
    """A :class:`~gaia_bench.plugins.adaptations.lib.training.HeldOut` scored with the task's own ``evaluate``
    (``metric`` of it: the job's primary metric). ``predict(samples)`` is the head's predictions for them. A task's
    metric is not a sum over items (AP, the mean over images), so the whole held-out set is scored
    at once, in one process."""

    def __init__(self, samples: Sequence, classes: Sequence[str], task, dataset, metric: str,
                 predict: Callable[[Sequence], list]) -> None:
        self.samples, self.classes, self.task, self.dataset = list(samples), classes, task, dataset
        self.metric, self.predict = metric, predict

    def __len__(self) -> int:
        return len(self.samples)

    def statistics(self, model, part: slice) -> list[float]:
        if range(len(self.samples))[part] != range(len(self.samples)):
            raise ValueError("a task's held-out metric needs the whole held-out set in one process")
        metrics = self.task.evaluate(self.predict(self.samples), Samples(self.samples, self.classes), self.dataset)
        return [float(metrics[self.metric])]

    def score(self, totals: Sequence[float]) -> float:
        return float(totals[0])


def early_stopping_details(result, n_fit: int, n_val: int, metric: str) -> dict[str, Any]:
    """What a finetune's held-out early stopping did (NaN scores, an undefined metric, as None)."""
    def clean(value):
        return None if value is None or math.isnan(value) else value

    return {"n_fit": n_fit, "n_val": n_val, "metric": metric,
            "val_curve": [[step, clean(value)] for step, value in result.curve],
            "best_iteration": result.best_iteration, "best_val": clean(result.best_score),
            "stopped_early": result.stopped_early}


# ----------------------------------------------------------------------------- the job
def predict_dense(head, backbone, samples: Sequence, size, spec, levels: int, batch: int, device: str,
                  advance=lambda n: None, pixels=None, precision: str | None = None) -> tuple[list, float]:
    """The head's prediction for every sample (in order), and the seconds spent in the model
    (backbone + head, with the head's per-image scoring, under ``precision``'s autocast) as opposed to
    reading images. ``pixels``: the samples' :func:`decode_all`, when kept (a held-out set scored at every check)."""
    import torch

    from gaia_bench.devices import autocast
    from gaia_bench.imagedata import normalize

    backbone.eval()
    predictions: list = []
    model_seconds = 0.0
    batches = pixel_batches(samples, size, batch) if pixels is None else pixels.split(batch)
    with torch.no_grad(), autocast(device, precision):
        for s, x in zip(range(0, len(samples), batch), batches):
            chunk = samples[s:s + batch]
            tick = time.perf_counter()
            pyramid = [f.float() for f in backbone.pyramid(normalize(x.to(device), spec.mean, spec.std))[-levels:]]
            predictions.extend(head.predict(pyramid, chunk))
            model_seconds += time.perf_counter() - tick
            advance(len(chunk))
    return predictions, model_seconds


def run_dense(ctx, iterations: int | None = None, train_backbone: bool = False) -> AdaptationResult:
    """Train the task's head (and, with ``train_backbone``, the backbone at ``backbone_lr_scale`` x
    the head's lr) on the job's subset and evaluate it on the dataset's test split. ``iterations``
    overrides the schedule (0 = the untrained head, for comparisons).

    With ``train_backbone`` (``finetune``), ``val_share`` of the subset's images are held out, the
    task's primary metric on them is checked every ``dense_eval_every`` iterations, and the best
    weights are tested (early stopping after ``patience`` checks without improvement); the frozen
    case trains on the whole subset from cached pyramids."""
    import torch

    from gaia_bench.devices import autocast
    from gaia_bench.imagedata import normalize
    from gaia_bench.plugins.adaptations.lib.reproducible import reproducible
    from gaia_bench.plugins.adaptations.lib.schedules import scaled_schedule
    from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS, Recipe, fit as train_loop

    hp = {**DENSE_HYPERPARAMS, **FINETUNE_DEFAULTS, **ctx.hyperparams}
    job = ctx.job
    dataset = job.dataset
    task = job.task
    if task.make_head is None:
        raise UsageError(f"task {task.name!r} has no head to train", "give its TaskSpec a make_head")
    spec = job.backbone
    device, precision = ctx.device, ctx.config.precision
    seed = int(ctx.config.seed)
    batch = int(hp["dense_batch"])
    lr, wd = float(hp["dense_lr"]), float(hp["dense_weight_decay"])

    data = ctx.data
    test = data.test
    subset = list(data.subset.samples)
    if not subset:
        raise ValueError("the training subset is empty")
    fit, val = list(data.fit), list(data.val)
    fit_samples, val_samples = list(data.fit_samples.samples), list(data.val_samples.samples)
    n_iters, schedule = scaled_schedule(len(fit_samples), batch, float(hp["dense_epochs"]), int(hp["dense_min_iters"]),
                                        int(hp["dense_max_iters"]), ctx.config.init, train_backbone)
    if iterations is not None:
        n_iters = schedule["iterations"] = int(iterations)

    from PIL import Image

    with Image.open(subset[0].path) as first:
        size = fixed_size(first.height, first.width)

    # --- inputs: cached pyramids of the frozen backbone, or the images themselves when it trains
    start = time.perf_counter()
    backbone = (ctx.trainable_backbone() if train_backbone else ctx.build_backbone()).to(device)
    if not backbone.has_pyramid:
        backbone.pyramid(torch.zeros(1, 3, *size))  # raises the backbone's own clear error
    levels = min(LEVELS, len(backbone.pyramid_channels)) if backbone.pyramid_channels else LEVELS
    backbone.eval()
    advance = ctx.progress.start(f"{'images' if train_backbone else 'pyramid'} {spec.name} / "
                                 f"{dataset.name}:{dataset.train_split}", len(fit_samples))
    if train_backbone:
        images_t = normalize(decode_all(fit_samples, size).to(device), spec.mean, spec.std)
        advance(len(fit_samples))
        feats = None
    else:
        feats = compute_pyramids(backbone, fit_samples, size, spec.mean, spec.std, device, ctx.batch_size,
                                 levels, advance, precision)
    ctx.progress.finish()
    channels = (list(backbone.pyramid_channels[-levels:]) if backbone.pyramid_channels
                else [f.shape[1] for f in feats])
    head = task.make_head(HeadInput(tuple(int(c) for c in channels), size), dataset,
                          Samples(fit_samples, data.train.classes), hp, seed)
    head.module.to(device)
    targets = [head.target(sample) for sample in fit_samples]
    pyramid_seconds = time.perf_counter() - start

    def pyramid_of(positions):
        idx = torch.as_tensor(positions, dtype=torch.long)
        if feats is not None:
            return [f[idx] for f in feats]
        return [f.float() for f in backbone.pyramid(images_t[idx.to(device)])[-levels:]]

    def fetch(positions: list, mirrored: list):
        inputs = [f[torch.as_tensor(positions, dtype=torch.long)] for f in feats] if feats is not None \
            else images_t[torch.as_tensor(positions, dtype=torch.long).to(device)]
        return inputs, [targets[i] for i in positions]

    model_seconds = [0.0]  # in the model outside the loop's steps: the loss reports and held-out checks

    def full_loss() -> float:
        head.module.eval()
        backbone.eval()
        total, count, tick = 0.0, 0, time.perf_counter()
        with torch.no_grad(), autocast(device, precision):
            for s in range(0, len(fit_samples), batch):
                positions = list(range(s, min(s + batch, len(fit_samples))))
                total += float(head.loss(pyramid_of(positions), [targets[i] for i in positions])) * len(positions)
                count += len(positions)
        model_seconds[0] += time.perf_counter() - tick
        return total / max(count, 1)

    def predict_held_out(samples: Sequence) -> list:
        predictions, seconds = predict_dense(head, backbone, samples, size, spec, levels, batch, device, pixels=val_pixels,
                                            precision=precision)
        model_seconds[0] += seconds
        return predictions

    # --- the head (and backbone), on the one training loop
    start = time.perf_counter()
    primary = job.primary_metric
    train_bn = train_backbone and batchnorm_trains(ctx.config.init)
    model = pyramid_model(head, backbone, levels, train_bn if train_backbone else None)
    recipe = Recipe(iterations=n_iters, lr=lr, backbone_lr_scale=float(hp["backbone_lr_scale"]), optimizer="adam",
                    weight_decay=wd, decay="constant", eval_every=int(hp["dense_eval_every"]),
                    patience=int(hp["patience"]), higher_is_better=task.metric(primary).higher_is_better, seed=seed,
                    precision=precision)
    val_pixels = decode_all(val_samples, size)  # decoded once, scored at every check
    held_out = TaskHeldOut(val_samples, data.train.classes, task, dataset, primary, predict_held_out)
    with reproducible(device) as numerics:  # training and testing alike
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loss_start = full_loss()
            result = train_loop(model, recipe, ShuffledBatches(len(fit_samples), batch, seed, fetch), held_out=held_out,
                         device=device, progress=ctx.progress,
                         label=f"{'finetune' if train_backbone else 'decoder'} {dataset.name}")
            loss_end = full_loss()
        done = result.steps
        train_seconds = time.perf_counter() - start
        feats = None  # free the cached pyramids before the test split

        # --- evaluation on the whole test split, at ground-truth resolution
        start = time.perf_counter()
        advance = ctx.progress.start(f"evaluate {dataset.name}:{dataset.test_split}", len(test))
        predictions, eval_model_seconds = predict_dense(head, backbone, list(test.samples), size, spec, levels,
                                                        max(1, ctx.batch_size), device, advance,
                                                        precision=precision)
        ctx.progress.finish()
        eval_seconds = time.perf_counter() - start

    trainable = int(sum(p.numel() for p in head.module.parameters()))
    if train_backbone:
        trainable += int(sum(p.numel() for p in backbone.parameters()))
    details = {
        "decoder": {
            **head.describe(), "levels_used": levels,
            "in_channels": [int(c) for c in (backbone.pyramid_channels[-levels:] if backbone.pyramid_channels else [])],
            "reductions": [int(r) for r in (backbone.pyramid_reductions[-levels:] if backbone.pyramid_reductions else [])],
        },
        "schedule": {**schedule, "iterations_run": done, "optimizer": "adam", "lr": lr, "weight_decay": wd},
        "backbone": {"trained": train_backbone,
                     "lr_scale": float(hp["backbone_lr_scale"]) if train_backbone else 0.0,
                     "batchnorm": ("batch statistics" if train_bn else "frozen statistics") if train_backbone else "frozen"},
        "early_stopping": early_stopping_details(result, len(fit), len(val), primary) if train_backbone else None,
        "input_size": list(size),
        "loss_start": loss_start,
        "loss_end": loss_end,
        "throughput": {"train_images": done * batch, "train_seconds": train_seconds,
                       "train_model_seconds": result.model_seconds + model_seconds[0], "eval_images": len(test),
                       "eval_seconds": eval_seconds, "eval_model_seconds": eval_model_seconds},
        "trainable_params": trainable,
        "frozen_backbone": not train_backbone,
        "numerics": numerics,  # threads and deterministic mode of training and testing
    }
    return AdaptationResult(
        predictions=predictions,  # the runner scores them with the task's evaluate
        details=details,
        stage_seconds={"pyramid": pyramid_seconds, "head_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=trainable,
    )
