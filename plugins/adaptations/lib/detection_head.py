"""Training a detection task's head (the Faster R-CNN + FPN of :mod:`gaia_bench.tasks.types.lib.faster_rcnn`,
built by the task's ``make_head``) on the last ``LEVELS`` maps of :meth:`Backbone.pyramid`, on the
job's percentage-shot subset; its test predictions go back to the runner, which scores them with the
task's ``evaluate`` and keeps them.

Two modes, chosen by the adaptation:

* ``linear-probe`` (``train_backbone=False``, GV-B's protocol): the backbone is frozen (eval mode,
  so BatchNorm statistics and affine parameters are frozen too; no gradients). Its pyramid is
  computed once per training image and once for the image's mirror (horizontal-flip augmentation)
  and kept in memory, when that fits in ``CACHE_MB``; otherwise it is recomputed per batch.
* ``finetune`` (``train_backbone=True``): the backbone trains too, at ``backbone_lr_scale`` x the
  head's learning rate. Its BatchNorm layers keep their running statistics frozen (the detection
  recipe for small batches) unless the init is un-pretrained (``random`` / ``scratch``), whose
  statistics mean nothing, where BatchNorm normalizes with batch statistics. ``val_share`` of the
  subset is held out (stratified by the task's ``holdout_strata``); the task's primary metric on
  it is checked every ``det_eval_every`` iterations and the best weights are the ones tested
  (early stopping after ``patience`` checks without improvement).

Input: every image is resized (bilinear) to one fixed size, the first training image's size rounded
to a multiple of 32 (mini-voc-det: 128 x 192, unchanged); the head scales boxes with it and its
predictions back to the image's own size.

Training: SGD (momentum 0.9, lr ``det_lr``, weight decay ``det_weight_decay``), batch ``det_batch``,
linear warm-up over the first ``min(100, iterations / 5)`` steps, lr x0.1 at 2/3 and 8/9 of the
schedule (Detectron's 1x shape); gradient norm clipped at 10; horizontal flips with probability
0.5. Iterations follow :mod:`gaia_bench.plugins.adaptations.lib.schedules` with ``det_epochs`` / ``det_min_iters`` /
``det_max_iters``. Everything random (head initialization, order, flips, RPN / RoI sampling) is
seeded by the job seed; training and testing run with a fixed thread count and deterministic algorithms
(:mod:`gaia_bench.plugins.adaptations.lib.reproducible`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from gaia_bench.api import AdaptationResult, HeadInput, Samples
from gaia_bench.errors import UsageError
from gaia_bench.plugins.adaptations.lib.dense_probe import (
    ShuffledBatches,
    TaskHeldOut,
    batchnorm_trains,
    early_stopping_details,
    decode_all,
    fixed_size,
    load_pixels,
    pixel_batches,
    pyramid_model,
)
from gaia_bench.plugins.adaptations.lib.reproducible import reproducible
from gaia_bench.plugins.adaptations.lib.schedules import scaled_schedule
from gaia_bench.plugins.adaptations.lib.training import FINETUNE_DEFAULTS, Recipe, fit as train_loop
from gaia_bench.tasks.types.lib.faster_rcnn import FPN_CHANNELS, REPRESENTATION

LEVELS = 4
MOMENTUM, CLIP_NORM = 0.9, 10.0

DETECTION_HYPERPARAMS = {
    "det_epochs": 24, "det_min_iters": 300, "det_max_iters": 1500, "det_batch": 4, "det_lr": 0.02,
    "det_weight_decay": 1e-4, "det_fpn_channels": FPN_CHANNELS, "det_representation": REPRESENTATION,
    "det_eval_every": 100,
}
CACHE_MB = 2048  # frozen pyramids (plain + mirrored), or the decoded images, are kept in memory up to this size


class PyramidSource:
    """The frozen backbone's last ``levels`` maps for a batch of positions, plain or mirrored:
    from memory when the pyramids were cached, else computed now; or the images themselves, for a
    backbone that trains. Images are decoded once when :meth:`keep_pixels` kept them (uint8)."""

    def __init__(self, backbone, samples, size, mean, std, device: str, levels: int, precision: str | None = None) -> None:
        self.backbone, self.samples, self.size = backbone, samples, size
        self.mean, self.std, self.device, self.levels = mean, std, device, levels
        self.precision = precision  # the job's --precision: autocast of the backbone's and the head's forwards
        self.cache: dict[bool, list] | None = None
        self.pixels = None  # [N, 3, H, W] uint8 once kept

    def keep_pixels(self) -> None:
        self.pixels = decode_all(self.samples, self.size)

    def normalized(self, pixels):
        from gaia_bench.imagedata import normalize

        return normalize(pixels.to(self.device), self.mean, self.std)

    def images(self, positions: Sequence[int], flip: Sequence[bool]):
        """Mirroring the uint8 pixels before normalizing gives the same numbers as after."""
        import torch

        pixels = self.pixels[list(positions)] if self.pixels is not None else \
            torch.stack([load_pixels(self.samples[p].path, self.size) for p in positions])
        return self.normalized(torch.stack([x.flip(-1) if m else x for x, m in zip(pixels, flip)]))

    def forward(self, images) -> list:
        import torch

        from gaia_bench.devices import autocast

        with torch.no_grad(), autocast(self.device, self.precision):
            return [f.float() for f in self.backbone.pyramid(images)[-self.levels:]]

    def compute(self, positions: Sequence[int], flip: Sequence[bool]) -> list:
        return self.forward(self.images(positions, flip))

    def fill_cache(self, batch_size: int, advance: Callable[[int], None]) -> None:
        import torch

        if self.pixels is None:
            self.keep_pixels()
        cache: dict[bool, list] = {}
        for mirrored in (False, True):
            chunks = [self.forward(self.normalized(p.flip(-1) if mirrored else p)) for p in self.pixels.split(batch_size)]
            cache[mirrored] = [torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0]))]
            advance(len(self.samples))
        self.cache, self.pixels = cache, None  # the pyramids replace the images

    def __call__(self, positions: Sequence[int], flip: Sequence[bool]) -> list:
        import torch

        if self.cache is None:
            return self.compute(positions, flip)
        out = []
        for level in range(self.levels):
            rows = [self.cache[bool(m)][level][p] for p, m in zip(positions, flip)]
            out.append(torch.stack(rows))
        return out


def pyramid_bytes(backbone, size: tuple[int, int], levels: int) -> int:
    """Bytes of one image's float32 pyramid (from the backbone's declared channels / reductions)."""
    channels = backbone.pyramid_channels[-levels:]
    reductions = backbone.pyramid_reductions[-levels:]
    return sum(4 * c * math.ceil(size[0] / r) * math.ceil(size[1] / r) for c, r in zip(channels, reductions))


# ----------------------------------------------------------------------------- the job
def predict(head, source: PyramidSource, batch: int, advance=lambda n: None) -> tuple[list, float]:
    """The head's prediction for every image of ``source``, in order, and the seconds spent in the
    model (backbone + head) as opposed to reading images (decoded one batch ahead, in a thread)."""
    import torch

    from gaia_bench.devices import autocast

    out, model_seconds = [], 0.0
    n = len(source.samples)
    pixels = iter(source.pixels.split(batch) if source.pixels is not None else pixel_batches(source.samples, source.size, batch))
    with torch.no_grad(), autocast(source.device, source.precision):
        for s in range(0, n, batch):
            positions = list(range(s, min(s + batch, n)))
            x = next(pixels) if source.cache is None else None
            tick = time.perf_counter()
            feats = source.forward(source.normalized(x)) if x is not None else source(positions, [False] * len(positions))
            out.extend(head.predict(feats, [source.samples[p] for p in positions]))
            model_seconds += time.perf_counter() - tick
            advance(len(positions))
    return out, model_seconds


def run_detection(ctx, train_backbone: bool = False, iterations: int | None = None,
                  train_model: Callable | None = None) -> AdaptationResult:
    """Train the task's head on the job's subset and evaluate on the test split. ``iterations``
    overrides the schedule (0 = the untrained head, for comparisons). ``train_model(head, backbone,
    levels, train_batchnorm, iterations)`` builds what the loop trains (default :func:`pyramid_model`): a method
    that trains extra modules beside the detector (``lgd``'s teacher) wraps it there; the test
    predictions always come from ``head`` alone."""
    import torch

    hp = {**DETECTION_HYPERPARAMS, **FINETUNE_DEFAULTS, **ctx.hyperparams}
    job = ctx.job
    dataset, spec, task = job.dataset, job.backbone, job.task
    if task.make_head is None:
        raise UsageError(f"task {task.name!r} has no head to train", "give its TaskSpec a make_head")
    seed, device = int(ctx.config.seed), ctx.device
    batch = int(hp["det_batch"])

    data = ctx.data
    test = data.test
    subset = list(data.subset.samples)
    if not subset:
        raise ValueError("the training subset is empty")
    classes = list(data.train.classes)
    fit, val = list(data.fit), list(data.val)
    n_iters, schedule = scaled_schedule(len(fit), batch, float(hp["det_epochs"]), int(hp["det_min_iters"]),
                                        int(hp["det_max_iters"]), ctx.config.init, train_backbone)
    if iterations is not None:
        n_iters = schedule["iterations"] = int(iterations)
    first_target = subset[0].target
    size = fixed_size(first_target.height, first_target.width)

    stage: dict[str, float] = {}
    start = time.perf_counter()
    backbone = ctx.trainable_backbone() if train_backbone else ctx.build_backbone()
    if not backbone.has_pyramid:
        backbone.pyramid(torch.zeros(1, 3, *size))  # raises the backbone's own clear error
    levels = min(LEVELS, len(backbone.pyramid_channels)) if backbone.pyramid_channels else LEVELS
    backbone.to(device)
    backbone.eval()
    fit_samples = [subset[i] for i in fit]
    source = PyramidSource(backbone, fit_samples, size, spec.mean, spec.std, device, levels,
                           ctx.config.precision)
    cache_mb = 2 * len(fit_samples) * pyramid_bytes(backbone, size, levels) / 2**20
    cached = not train_backbone and cache_mb <= CACHE_MB
    if len(fit_samples) * 3 * size[0] * size[1] / 2**20 <= CACHE_MB:
        source.keep_pixels()  # decoded once: a fine-tune reads each image every few steps
    if cached:
        advance = ctx.progress.start(f"pyramid {spec.name} / {dataset.name}:{dataset.train_split} (+ mirrored)",
                                     2 * len(fit_samples))
        source.fill_cache(max(1, ctx.batch_size), advance)
        ctx.progress.finish()
    stage["pyramid"] = time.perf_counter() - start

    start = time.perf_counter()
    primary = job.primary_metric
    train_bn = train_backbone and batchnorm_trains(ctx.config.init)
    warmup = min(100, n_iters // 5)
    recipe = Recipe(iterations=n_iters, lr=float(hp["det_lr"]), backbone_lr_scale=float(hp["backbone_lr_scale"]),
                    optimizer="sgd", momentum=MOMENTUM, weight_decay=float(hp["det_weight_decay"]), warmup=warmup,
                    warmup_start=0.1, decay="steps", milestones=(2 * n_iters / 3, 8 * n_iters / 9),
                    clip_norm=CLIP_NORM, eval_every=int(hp["det_eval_every"]), patience=int(hp["patience"]),
                    higher_is_better=task.metric(primary).higher_is_better, seed=seed, precision=ctx.config.precision)
    with reproducible(device) as numerics:  # training and testing alike
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = task.make_head(HeadInput(tuple(int(c) for c in backbone.pyramid_channels[-levels:]), size), dataset,
                                  Samples(fit_samples, classes), hp, seed)
            model = pyramid_model(head, backbone, levels, train_bn if train_backbone else None) if train_model is None \
                else train_model(head, backbone, levels, train_bn if train_backbone else None, n_iters)
            targets = {m: [head.target(s, m) for s in fit_samples] for m in (False, True)}

            def fetch(positions: list, mirrored: list):
                inputs = source.images(positions, mirrored) if train_backbone else source(positions, mirrored)
                return inputs, [targets[m][p] for p, m in zip(positions, mirrored)]

            val_source = PyramidSource(backbone, [subset[i] for i in val], size, spec.mean, spec.std, device, levels,
                                       ctx.config.precision)
            val_source.keep_pixels()  # scored at every check
            held_out_seconds = [0.0]  # in the model during the checks

            def predict_held_out(samples: Sequence) -> list:
                predictions, seconds = predict(head, val_source, batch)
                held_out_seconds[0] += seconds
                return predictions

            held_out = TaskHeldOut(val_source.samples, classes, task, dataset, primary, predict_held_out)
            result = train_loop(model, recipe, ShuffledBatches(len(fit_samples), batch, seed, fetch, flips=True),
                         held_out=held_out, device=device, progress=ctx.progress, label=f"detector {dataset.name}")
        stage["head_train"] = time.perf_counter() - start
        done = result.steps
        train_images = done * batch

        start = time.perf_counter()
        backbone.eval()
        del source
        test_source = PyramidSource(backbone, test.samples, size, spec.mean, spec.std, device, levels,
                                    ctx.config.precision)
        advance = ctx.progress.start(f"evaluate {dataset.name}:{dataset.test_split}", len(test))
        predictions, eval_model_seconds = predict(head, test_source, max(1, ctx.batch_size), advance)
        ctx.progress.finish()
        stage["evaluate"] = time.perf_counter() - start

    trainable = sum(p.numel() for p in head.module.parameters())
    if train_backbone:
        trainable += sum(p.numel() for p in backbone.parameters())
    details = {
        "head": {
            **head.describe(),
            "in_channels": [int(c) for c in backbone.pyramid_channels[-levels:]],
            "reductions": [int(r) for r in backbone.pyramid_reductions[-levels:]],
        },
        "schedule": {**schedule, "optimizer": "sgd", "momentum": MOMENTUM, "lr": float(hp["det_lr"]),
                     "weight_decay": float(hp["det_weight_decay"]), "warmup": warmup,
                     "steps": "x0.1 at 2/3 and 8/9", "iterations_run": done, "augmentation": "hflip 0.5"},
        "backbone": {"trained": train_backbone, "lr_scale": float(hp["backbone_lr_scale"]) if train_backbone else 0.0,
                     "batchnorm": ("batch statistics" if train_bn else "frozen statistics") if train_backbone else "frozen",
                     "pyramids_cached": cached, "cache_mb": round(cache_mb, 1)},
        "early_stopping": early_stopping_details(result, len(fit), len(val), primary) if train_backbone else None,
        "loss_start": float(np.mean(result.losses[:10])) if result.losses else None,
        "loss_end": float(np.mean(result.losses[-10:])) if result.losses else None,
        "input_size": list(size),
        "throughput": {"train_images": train_images, "train_seconds": stage["head_train"],
                       "train_model_seconds": result.model_seconds + held_out_seconds[0],
                       "eval_images": len(test),
                       "eval_seconds": stage["evaluate"], "eval_model_seconds": eval_model_seconds},
        "trainable_params": int(trainable),
        "frozen_backbone": not train_backbone,
        "numerics": numerics,  # threads and deterministic mode of training and testing
    }
    return AdaptationResult(predictions=predictions, details=details,  # the runner scores them
                            stage_seconds=stage, trainable_params=int(trainable))
