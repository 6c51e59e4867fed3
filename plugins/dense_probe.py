"""Semantic segmentation and monocular depth heads: a light decoder over the backbone's pyramid,
trained on the job's percentage-shot subset. Under ``linear-probe`` the backbone is FROZEN (eval
mode, no gradients); under ``finetune`` (``train_backbone=True``) it trains too, at
``backbone_lr_scale`` x the decoder's learning rate, BatchNorm statistics frozen for pretrained
inits (batch statistics for un-pretrained ones), early-stopped on a held-out part of the subset.

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
``dense_max_iters``, ``dense_batch``, ``dense_lr``, ``dense_weight_decay``; fine-tuning an
un-pretrained init triples the schedule (:mod:`gaia_bench.plugins.schedules`).
"""

from __future__ import annotations

import copy
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


DENSE_HYPERPARAMS = {
    "dense_epochs": EPOCHS, "dense_min_iters": MIN_ITERS, "dense_max_iters": MAX_ITERS, "dense_batch": BATCH,
    "dense_lr": LR, "dense_weight_decay": WEIGHT_DECAY, "dense_eval_every": 50,
}


def schedule_iterations(n_train: int, batch: int = BATCH, epochs: int = EPOCHS, min_iters: int = MIN_ITERS,
                        max_iters: int = MAX_ITERS) -> int:
    """``clamp(epochs * ceil(n_train / batch), min_iters, max_iters)`` (see :mod:`.schedules`)."""
    from gaia_bench.plugins.schedules import schedule_iterations as rule

    return rule(n_train, batch, epochs, min_iters, max_iters)


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
    from gaia_bench.plugins.schedules import UNPRETRAINED_INITS

    return init_name in UNPRETRAINED_INITS


# ----------------------------------------------------------------------------- the job
def stack_targets(task: str, samples, size: tuple[int, int], device: str):
    """Training targets at the fixed input size: class maps (int64) or depth [N,1,H,W] (metres)."""
    import torch

    raw = np.stack([_resize_nearest(read_target(s.target), size) for s in samples])
    if task == "segmentation":
        return torch.from_numpy(raw.astype(np.int64)).to(device)
    return torch.from_numpy(raw.astype(np.float32))[:, None].to(device)


def evaluate_dense(task_spec, task: str, head, backbone, samples, size, spec, levels: int, out_channels: int,
                   class_names, batch: int, device: str, advance=lambda n: None) -> tuple[dict, float]:
    """The task's metrics over ``samples`` at each ground truth's resolution, and the seconds spent
    in the model (backbone + head) as opposed to reading files and scoring."""
    import torch

    from gaia_bench.tasks.metrics_segmentation import confusion_matrix

    head.eval()
    backbone.eval()
    confusion = np.zeros((out_channels, out_channels), dtype=np.int64) if task == "segmentation" else None
    gts: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    model_seconds = 0.0
    with torch.no_grad():
        for s in range(0, len(samples), batch):
            chunk = samples[s:s + batch]
            x = torch.stack([load_image(sample.path, size, spec.mean, spec.std) for sample in chunk]).to(device)
            truths = [read_target(sample.target) for sample in chunk]
            tick = time.perf_counter()
            pyramid = [f.float() for f in backbone.pyramid(x)[-levels:]]
            outs = [head([f[i:i + 1] for f in pyramid], tuple(gt.shape)) for i, gt in enumerate(truths)]
            model_seconds += time.perf_counter() - tick
            for sample, gt, out in zip(chunk, truths, outs):
                if task == "segmentation":
                    pred = out[0].argmax(dim=0).cpu().numpy()
                    confusion += confusion_matrix(gt, pred, out_channels, getattr(sample.target, "ignore_index", IGNORE_INDEX))
                else:
                    cap = float(getattr(sample.target, "max_depth", 80.0))
                    preds.append(torch.exp(out[0, 0]).clamp(MIN_DEPTH, cap).cpu().numpy().astype(np.float64))
                    gts.append(gt)
            advance(len(chunk))
    if task == "segmentation":
        return task_spec.compute_metrics(confusion, class_names), model_seconds
    kind = getattr(samples[0].target, "kind", "kitti")
    return task_spec.compute_metrics(gts, preds, kind), model_seconds


def run_dense(ctx, iterations: int | None = None, train_backbone: bool = False) -> AdaptationResult:
    """Train the decoder (and, with ``train_backbone``, the backbone at ``backbone_lr_scale`` x the
    decoder's lr) on the job's subset and evaluate it on the dataset's test split. ``iterations``
    overrides the schedule (0 = the untrained decoder, for comparisons).

    With ``train_backbone`` (``finetune``), ``val_share`` of the subset's images are held out, the
    task's primary metric on them is checked every ``dense_eval_every`` iterations, and the best
    weights are tested (early stopping after ``patience`` checks without improvement); the frozen
    case trains on the whole subset from cached pyramids."""
    import torch
    import torch.nn.functional as F

    from gaia_bench.plugins.schedules import scaled_schedule

    hp = {**DENSE_HYPERPARAMS, "backbone_lr_scale": 0.1, "val_share": 0.2, "patience": 5, **ctx.hyperparams}
    job = ctx.job
    dataset = job.dataset
    task = dataset.task
    if task not in ("segmentation", "depth"):
        raise ValueError(f"dense probe does not handle task {task!r}")
    spec = job.backbone
    device = ctx.device
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
        images = []
        for sample in fit_samples:
            images.append(load_image(sample.path, size, spec.mean, spec.std))
            advance(1)
        images_t = torch.stack(images).to(device)
        feats = None
    else:
        feats = compute_pyramids(backbone, fit_samples, size, spec.mean, spec.std, device, ctx.session.batch_size,
                                 levels, advance)
    ctx.progress.finish()
    targets = stack_targets(task, fit_samples, size, device)
    num_classes = len(data.train.classes) or int(dataset.num_classes or 0)
    out_channels = num_classes if task == "segmentation" else 1
    class_names = list(data.train.classes) or None
    pyramid_seconds = time.perf_counter() - start

    def pyramid_of(idx):
        if feats is not None:
            return [f[idx] for f in feats]
        return [f.float() for f in backbone.pyramid(images_t[idx])[-levels:]]

    # --- the decoder (and backbone)
    start = time.perf_counter()
    head = build_decoder(list(backbone.pyramid_channels[-levels:]) if backbone.pyramid_channels
                         else [f.shape[1] for f in feats], out_channels, seed).to(device)
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
        backbone.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(fit_samples), batch):
                idx = torch.arange(s, min(s + batch, len(fit_samples)))
                out = head(pyramid_of(idx), size)
                total += float(loss_of(out, targets[idx])) * out.shape[0]
                count += out.shape[0]
        return total / max(count, 1)

    primary = job.primary_metric
    higher = job.task.metric(primary).higher_is_better
    train_bn = train_backbone and batchnorm_trains(ctx.config.init)
    val_curve: list[list[float]] = []
    best: dict[str, Any] = {"value": None, "iteration": 0, "state": None}
    bad_checks, stopped_early, done = 0, False, 0
    model_seconds = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loss_start = full_loss()
        groups = [{"params": list(head.parameters()), "lr": lr}]
        if train_backbone:
            groups.append({"params": list(backbone.parameters()), "lr": lr * float(hp["backbone_lr_scale"])})
        optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=wd)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(fit_samples), generator=generator)
        pointer = 0
        advance = ctx.progress.start(f"{'finetune' if train_backbone else 'decoder'} {dataset.name}", n_iters) \
            if n_iters else (lambda n: None)
        for step in range(n_iters):
            head.train()
            if train_backbone:
                backbone.train()
                set_batchnorm_mode(backbone, train_bn)
            if pointer >= len(fit_samples):
                order, pointer = torch.randperm(len(fit_samples), generator=generator), 0
            idx = order[pointer:pointer + batch]
            pointer += batch
            tick = time.perf_counter()
            loss = loss_of(head(pyramid_of(idx.to(device)), size), targets[idx.to(device)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model_seconds += time.perf_counter() - tick
            done = step + 1
            advance(1)
            if val_samples and (done % int(hp["dense_eval_every"]) == 0 or done == n_iters):
                value = evaluate_dense(job.task, task, head, backbone, val_samples, size, spec, levels, out_channels,
                                       class_names, batch, device)[0][primary]
                val_curve.append([done, value])
                if best["value"] is None or (value > best["value"] if higher else value < best["value"]):
                    best.update(value=value, iteration=done,
                                state=(copy.deepcopy(head.state_dict()), copy.deepcopy(backbone.state_dict())))
                    bad_checks = 0
                else:
                    bad_checks += 1
                if bad_checks >= int(hp["patience"]):
                    stopped_early = done < n_iters
                    break
        if n_iters:
            ctx.progress.finish()
        if best["state"] is not None:
            head.load_state_dict(best["state"][0])
            backbone.load_state_dict(best["state"][1])
        loss_end = full_loss()
    train_seconds = time.perf_counter() - start
    feats = None  # free the cached pyramids before the test split

    # --- evaluation on the whole test split, at ground-truth resolution
    start = time.perf_counter()
    advance = ctx.progress.start(f"evaluate {dataset.name}:{dataset.test_split}", len(test))
    metrics, eval_model_seconds = evaluate_dense(job.task, task, head, backbone, list(test.samples), size, spec, levels,
                                                 out_channels, class_names, max(1, ctx.session.batch_size), device,
                                                 advance)
    ctx.progress.finish()
    eval_seconds = time.perf_counter() - start

    trainable = int(sum(p.numel() for p in head.parameters()))
    if train_backbone:
        trainable += int(sum(p.numel() for p in backbone.parameters()))
    details = {
        "decoder": {
            "kind": "fpn", "width": WIDTH, "levels_used": levels,
            "in_channels": [int(c) for c in (backbone.pyramid_channels[-levels:] if backbone.pyramid_channels else [])],
            "reductions": [int(r) for r in (backbone.pyramid_reductions[-levels:] if backbone.pyramid_reductions else [])],
            "output": "log-depth" if task == "depth" else f"{out_channels} class logits",
            "loss": f"silog (lambda {SILOG_LAMBDA})" if task == "depth" else f"cross-entropy (ignore {IGNORE_INDEX})",
        },
        "schedule": {**schedule, "iterations_run": done, "optimizer": "adam", "lr": lr, "weight_decay": wd},
        "backbone": {"trained": train_backbone,
                     "lr_scale": float(hp["backbone_lr_scale"]) if train_backbone else 0.0,
                     "batchnorm": ("batch statistics" if train_bn else "frozen statistics") if train_backbone else "frozen"},
        "early_stopping": {"n_fit": len(fit), "n_val": len(val), "metric": primary, "val_curve": val_curve,
                           "best_iteration": best["iteration"], "best_val": best["value"],
                           "stopped_early": stopped_early} if train_backbone else None,
        "input_size": list(size),
        "loss_start": loss_start,
        "loss_end": loss_end,
        "throughput": {"train_images": done * batch, "train_seconds": train_seconds,
                       "train_model_seconds": model_seconds, "eval_images": len(test), "eval_seconds": eval_seconds,
                       "eval_model_seconds": eval_model_seconds},
        "trainable_params": trainable,
        "frozen_backbone": not train_backbone,
    }
    return AdaptationResult(
        metrics=metrics,
        details=details,
        stage_seconds={"pyramid": pyramid_seconds, "head_train": train_seconds, "evaluate": eval_seconds},
        trainable_params=trainable,
    )
