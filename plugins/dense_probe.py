"""The dense half of ``linear-probe``: semantic segmentation and monocular depth with a FROZEN
backbone (eval mode, no gradients) and a light decoder trained on the job's percentage-shot subset.

Decoder (a small FPN, as in semantic-FPN heads): 1x1 lateral convolutions to ``WIDTH`` (64)
channels on the last ``LEVELS`` (4) maps of :meth:`Backbone.pyramid` (fewer when the backbone has
fewer); from the coarsest map, upsample (bilinear) and add the next finer lateral, down to the finest
level used; then a 3x3 conv + ReLU and a 1x1 predictor; the output is upsampled bilinearly to the
input size (training) or to the ground truth's resolution (evaluation).

* segmentation: one logit per class, cross-entropy with ``ignore_index`` 255 (VOC's void); the
  evaluation accumulates ONE confusion matrix over the whole test split (argmax at the mask's
  resolution) and scores it with the task's official metrics.
* depth: the predictor outputs log-depth (its bias starts at the mean log ground-truth depth of the
  training subset); trained with BTS's scale-invariant log loss
  ``10 * sqrt(mean(d^2) - 0.85 * mean(d)^2)``, ``d = log pred - log gt`` over valid pixels
  (``gt > 0``) of the batch; evaluated in metres (``exp``, clipped to [1e-3, max_depth]) at the ground
  truth's resolution on its valid pixels, with the dataset's crop (KITTI: Garg, 80 m).

Because the backbone is frozen, its pyramid is computed ONCE per training image and kept in memory.
Images are resized (bilinear) to one fixed size: the first training image's native size rounded to a
multiple of 32 (mini-voc-seg / mini-kitti-depth: 128 x 192, kept as is), normalized with the
backbone's mean / std; ``--image-size`` (the classification input) is not used. Training targets are
resized to that size with nearest-neighbour only when their size differs.

Schedule: Adam (lr 1e-3, weight decay 1e-4), batch 8, reshuffled each pass by a generator seeded with
the job seed (head initialization too), so a job is deterministic. The number of iterations is
``clamp(EPOCHS * ceil(n_train / BATCH), MIN_ITERS, MAX_ITERS)`` with 40 epochs, 100 and 600: it grows
with the shot fraction (10% of mini-voc-seg = 24 images -> 120 iterations; 100% = 240 -> 600).
Defaults can be overridden with the adaptation hyper-parameters ``dense_epochs``, ``dense_min_iters``,
``dense_max_iters``, ``dense_batch``, ``dense_lr``, ``dense_weight_decay``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from gaia_bench.api import AdaptationResult

WIDTH = 64
LEVELS = 4
MULTIPLE = 32
EPOCHS, MIN_ITERS, MAX_ITERS = 40, 100, 600
BATCH = 8
LR, WEIGHT_DECAY = 1e-3, 1e-4
SILOG_LAMBDA = 0.85
MIN_DEPTH = 1e-3
IGNORE_INDEX = 255


def schedule_iterations(n_train: int, batch: int = BATCH, epochs: int = EPOCHS, min_iters: int = MIN_ITERS,
                        max_iters: int = MAX_ITERS) -> int:
    """``clamp(epochs * ceil(n_train / batch), min_iters, max_iters)``."""
    return int(min(max(epochs * math.ceil(max(n_train, 1) / batch), min_iters), max_iters))


def fixed_size(height: int, width: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """The size rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    return (max(multiple, int(round(height / multiple)) * multiple), max(multiple, int(round(width / multiple)) * multiple))


def _decoder_class():
    import torch.nn.functional as F
    from torch import nn

    class FPNDecoder(nn.Module):
        """Laterals to ``width`` channels, top-down upsample-and-sum, 3x3 conv + ReLU, 1x1 predictor."""

        def __init__(self, in_channels: Sequence[int], out_channels: int, width: int = WIDTH) -> None:
            super().__init__()
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
            self.fuse = nn.Conv2d(width, width, 3, padding=1)
            self.predict = nn.Conv2d(width, out_channels, 1)

        def forward(self, feats: Sequence[Any], size: tuple[int, int]):
            x = self.lateral[-1](feats[-1])
            for lateral, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
                x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False) + lateral(f)
            x = self.predict(F.relu(self.fuse(x)))
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    return FPNDecoder


def build_decoder(in_channels: Sequence[int], out_channels: int, seed: int, width: int = WIDTH):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _decoder_class()(in_channels, out_channels, width)


# ----------------------------------------------------------------------------- data
def load_image(path, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]):
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as img:
        image = img.convert("RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return TF.normalize(TF.to_tensor(image), mean, std)


def read_target(target) -> np.ndarray:
    """Segmentation: class indices (uint8, 255 void); depth: float32 metres, 0 = invalid."""
    from gaia_bench.tasks.dense_targets import DepthTarget, SegmentationTarget

    if isinstance(target, SegmentationTarget):
        from gaia_bench.tasks.voc_format import read_segmentation

        return read_segmentation(target.mask_path)
    if isinstance(target, DepthTarget):
        from gaia_bench.tasks.kitti_depth_format import read_kitti_depth, read_nyu_depth

        return (read_kitti_depth if target.kind == "kitti" else read_nyu_depth)(target.depth_path)
    raise TypeError(f"no dense reader for a {type(target).__name__} target")


def _resize_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if values.shape == size:
        return values
    rows = (np.arange(size[0]) * values.shape[0] // size[0]).clip(0, values.shape[0] - 1)
    cols = (np.arange(size[1]) * values.shape[1] // size[1]).clip(0, values.shape[1] - 1)
    return values[rows[:, None], cols[None, :]]


def compute_pyramids(backbone, samples, size, mean, std, device: str, batch_size: int, levels: int,
                     advance=lambda n: None) -> list:
    """The last ``levels`` pyramid maps of every sample, concatenated per level (kept on ``device``)."""
    import torch

    backbone.eval()
    chunks: list[list] = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = samples[start:start + batch_size]
            x = torch.stack([load_image(s.path, size, mean, std) for s in batch]).to(device)
            chunks.append([f.float() for f in backbone.pyramid(x)[-levels:]])
            advance(len(batch))
    return [torch.cat([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]


# ----------------------------------------------------------------------------- losses
def silog_loss(log_pred, gt, lam: float = SILOG_LAMBDA):
    """BTS's scale-invariant log loss over pixels with ``gt > 0`` (``log_pred`` and ``gt``: [B,1,H,W])."""
    import torch

    valid = gt > MIN_DEPTH
    if not valid.any():
        return log_pred.sum() * 0.0
    d = log_pred[valid] - torch.log(gt[valid])
    return 10.0 * torch.sqrt(torch.clamp((d ** 2).mean() - lam * d.mean() ** 2, min=1e-12))


# ----------------------------------------------------------------------------- the job
def run_dense(ctx, iterations: int | None = None) -> AdaptationResult:
    """Train the decoder on the job's subset and evaluate it on the dataset's test split.
    ``iterations`` overrides the schedule (0 = the untrained decoder, for comparisons)."""
    import torch
    import torch.nn.functional as F

    hp = ctx.hyperparams
    job = ctx.job
    dataset = job.dataset
    task = dataset.task
    if task not in ("segmentation", "depth"):
        raise ValueError(f"dense probe does not handle task {task!r}")
    spec = job.backbone
    device = ctx.device
    seed = int(ctx.config.seed)
    epochs = int(hp.get("dense_epochs", EPOCHS))
    batch = int(hp.get("dense_batch", BATCH))
    min_iters, max_iters = int(hp.get("dense_min_iters", MIN_ITERS)), int(hp.get("dense_max_iters", MAX_ITERS))
    lr, wd = float(hp.get("dense_lr", LR)), float(hp.get("dense_weight_decay", WEIGHT_DECAY))

    train, indices = ctx.train_subset()
    test = ctx.load(dataset.test_split)
    subset = [train.samples[i] for i in indices]
    if not subset:
        raise ValueError("the training subset is empty")
    n_iters = schedule_iterations(len(subset), batch, epochs, min_iters, max_iters) if iterations is None else int(iterations)

    from PIL import Image

    with Image.open(subset[0].path) as first:
        size = fixed_size(first.height, first.width)

    # --- frozen backbone: one pyramid per training image
    start = time.perf_counter()
    backbone = ctx.build_backbone()
    levels = min(LEVELS, len(backbone.pyramid_channels)) if backbone.pyramid_channels else LEVELS
    advance = ctx.progress.start(f"pyramid {spec.name} / {dataset.name}:{dataset.train_split}", len(subset))
    feats = compute_pyramids(backbone, subset, size, spec.mean, spec.std, device, ctx.session.batch_size, levels, advance)
    ctx.progress.finish()
    raw_targets = [read_target(s.target) for s in subset]
    if task == "segmentation":
        num_classes = len(train.classes) or int(dataset.num_classes or 0)
        targets = torch.from_numpy(np.stack([_resize_nearest(t, size) for t in raw_targets]).astype(np.int64)).to(device)
        out_channels = num_classes
    else:
        targets = torch.from_numpy(np.stack([_resize_nearest(t, size) for t in raw_targets]).astype(np.float32))
        targets = targets[:, None].to(device)
        out_channels = 1
    pyramid_seconds = time.perf_counter() - start

    # --- the decoder
    start = time.perf_counter()
    head = build_decoder([f.shape[1] for f in feats], out_channels, seed).to(device)
    if task == "depth":
        valid = targets > MIN_DEPTH
        log_init = float(torch.log(targets[valid]).mean()) if valid.any() else 0.0
        with torch.no_grad():
            head.predict.bias.fill_(log_init)

    def loss_of(out, target):
        if task == "segmentation":
            if not (target != IGNORE_INDEX).any():
                return out.sum() * 0.0
            return F.cross_entropy(out, target, ignore_index=IGNORE_INDEX)
        return silog_loss(out, target)

    def full_loss() -> float:
        head.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(subset), batch):
                idx = slice(s, s + batch)
                out = head([f[idx] for f in feats], size)
                n = out.shape[0]
                total += float(loss_of(out, targets[idx])) * n
                count += n
        head.train()
        return total / max(count, 1)

    loss_start = full_loss()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=wd)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(subset), generator=generator)
    pointer = 0
    head.train()
    advance = ctx.progress.start(f"decoder {dataset.name}", n_iters) if n_iters else (lambda n: None)
    for _ in range(n_iters):
        if pointer >= len(subset):
            order, pointer = torch.randperm(len(subset), generator=generator), 0
        idx = order[pointer:pointer + batch].to(device)
        pointer += batch
        loss = loss_of(head([f[idx] for f in feats], size), targets[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        advance(1)
    if n_iters:
        ctx.progress.finish()
    loss_end = full_loss()
    head.eval()
    train_seconds = time.perf_counter() - start
    del feats

    # --- evaluation on the whole test split, at ground-truth resolution
    start = time.perf_counter()
    advance = ctx.progress.start(f"evaluate {dataset.name}:{dataset.test_split}", len(test))
    confusion = np.zeros((out_channels, out_channels), dtype=np.int64) if task == "segmentation" else None
    gts: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    eval_batch = max(1, ctx.session.batch_size)
    from gaia_bench.tasks.metrics_segmentation import confusion_matrix

    with torch.no_grad():
        for s in range(0, len(test), eval_batch):
            chunk = test.samples[s:s + eval_batch]
            x = torch.stack([load_image(sample.path, size, spec.mean, spec.std) for sample in chunk]).to(device)
            pyramid = [f.float() for f in backbone.pyramid(x)[-levels:]]
            for i, sample in enumerate(chunk):
                gt = read_target(sample.target)
                out = head([f[i:i + 1] for f in pyramid], tuple(gt.shape))
                if task == "segmentation":
                    pred = out[0].argmax(dim=0).cpu().numpy()
                    confusion += confusion_matrix(gt, pred, out_channels, getattr(sample.target, "ignore_index", IGNORE_INDEX))
                else:
                    cap = float(getattr(sample.target, "max_depth", 80.0))
                    preds.append(torch.exp(out[0, 0]).clamp(MIN_DEPTH, cap).cpu().numpy().astype(np.float64))
                    gts.append(gt)
            advance(len(chunk))
    ctx.progress.finish()
    if task == "segmentation":
        metrics = job.task.compute_metrics(confusion, list(train.classes) or None)
    else:
        kind = getattr(test.samples[0].target, "kind", "kitti")
        metrics = job.task.compute_metrics(gts, preds, kind)
    eval_seconds = time.perf_counter() - start

    trainable = int(sum(p.numel() for p in head.parameters() if p.requires_grad))
    details = {
        "subset": ctx.subset_stats(train, indices),
        "decoder": {
            "kind": "fpn", "width": WIDTH, "levels_used": levels,
            "in_channels": [int(c) for c in (backbone.pyramid_channels[-levels:] if backbone.pyramid_channels else [])],
            "reductions": [int(r) for r in (backbone.pyramid_reductions[-levels:] if backbone.pyramid_reductions else [])],
            "output": "log-depth" if task == "depth" else f"{out_channels} class logits",
            "loss": f"silog (lambda {SILOG_LAMBDA})" if task == "depth" else f"cross-entropy (ignore {IGNORE_INDEX})",
        },
        "schedule": {
            "rule": "iterations = clamp(epochs * ceil(n_train / batch), min_iters, max_iters)",
            "epochs": epochs, "batch": batch, "min_iters": min_iters, "max_iters": max_iters,
            "iterations": n_iters, "optimizer": "adam", "lr": lr, "weight_decay": wd,
        },
        "input_size": list(size),
        "loss_start": loss_start,
        "loss_end": loss_end,
        "trainable_params": trainable,
        "frozen_backbone": True,
    }
    return AdaptationResult(
        metrics=metrics,
        n_train=len(indices),
        n_test=len(test),
        details=details,
        stage_seconds={"pyramid": pyramid_seconds, "head_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=trainable,
    )
