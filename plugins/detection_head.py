"""Object detection on any backbone with a feature pyramid: torchvision's Faster R-CNN pieces
(FPN, region proposal network, RoIAlign box head) on the last ``LEVELS`` maps of
:meth:`Backbone.pyramid`, trained on the job's percentage-shot subset and scored with VOC box AP.

Two modes, chosen by the adaptation:

* ``linear-probe`` (``train_backbone=False``, GV-B's protocol): the backbone is frozen (eval mode,
  so BatchNorm statistics and affine parameters are frozen too; no gradients). Its pyramid is
  computed once per training image and once for the image's mirror (horizontal-flip augmentation)
  and kept in memory, when that fits in ``CACHE_MB``; otherwise it is recomputed per batch.
* ``finetune`` (``train_backbone=True``): the backbone trains too, at ``backbone_lr_scale`` x the
  head's learning rate. Its BatchNorm layers keep their running statistics frozen (the detection
  recipe for small batches) unless the init is un-pretrained (``random`` / ``scratch``), whose
  statistics mean nothing, where BatchNorm normalizes with batch statistics. ``val_share`` of the
  subset is held out; VOC mAP on it is checked every ``det_eval_every`` iterations and the best
  weights are the ones tested (early stopping after ``patience`` checks without improvement).

Input: every image is resized (bilinear) to one fixed size, the first training image's size rounded
to a multiple of 32 (mini-voc-det: 128 x 192, unchanged); boxes are scaled with it and predictions are
scaled back to the image's own size before scoring. Anchors follow the input: one size per level,
``short_side x 2^-k``, ``k = levels .. 0`` from the finest to the pooled level (4 levels:
1/16 .. 1) (a 600-pixel VOC
image gets 37-600 px, close to Detectron's 32-512), aspect ratios 0.5, 1, 2.

Training: SGD (momentum 0.9, lr ``det_lr``, weight decay ``det_weight_decay``), batch ``det_batch``,
linear warm-up over the first ``min(100, iterations / 5)`` steps, lr x0.1 at 2/3 and 8/9 of the
schedule (Detectron's 1x shape); gradient norm clipped at 10. Difficult objects are left out of the
training targets (they are ignored by the metric too). Iterations follow
:mod:`gaia_bench.plugins.schedules` with ``det_epochs`` / ``det_min_iters`` / ``det_max_iters``.
Everything random (head initialization, order, flips, RPN / RoI sampling) is seeded by the job seed.

Evaluation keeps up to 100 detections per image above score 0.01 (VOC AP integrates the whole
ranked list, so a low threshold is the honest one).
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from gaia_bench.api import AdaptationResult
from gaia_bench.plugins.dense_probe import batchnorm_trains, fixed_size, load_image, set_batchnorm_mode
from gaia_bench.plugins.schedules import scaled_schedule

LEVELS = 4
ASPECT_RATIOS = (0.5, 1.0, 2.0)
SCORE_THRESHOLD, DETECTIONS_PER_IMAGE = 0.01, 100
MOMENTUM, CLIP_NORM = 0.9, 10.0

DETECTION_HYPERPARAMS = {
    "det_epochs": 24, "det_min_iters": 300, "det_max_iters": 1500, "det_batch": 4, "det_lr": 0.02,
    "det_weight_decay": 1e-4, "det_fpn_channels": 64, "det_representation": 256, "det_eval_every": 100,
}
CACHE_MB = 2048  # frozen pyramids (plain + mirrored) are kept in memory up to this size


def anchor_sizes(size: tuple[int, int], levels: int) -> tuple[tuple[int, ...], ...]:
    """One anchor size per FPN output (``levels`` backbone maps + the pooled one)."""
    short = min(size)
    return tuple((max(4, int(round(short * 2.0 ** (i - levels)))),) for i in range(levels + 1))


def _detector_class():
    from torch import nn
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    class PyramidDetector(nn.Module):
        """FPN + RPN + RoI heads over given backbone maps (fine to coarse). ``forward`` returns the
        four Faster R-CNN losses in training mode, per-image detections in eval mode."""

        def __init__(self, in_channels: Sequence[int], num_classes: int, size: tuple[int, int],
                     fpn_channels: int, representation: int) -> None:
            super().__init__()
            levels = len(in_channels)
            self.size = size
            self.names = [str(i) for i in range(levels)]
            self.fpn = FeaturePyramidNetwork(list(in_channels), fpn_channels, extra_blocks=LastLevelMaxPool())
            anchors = AnchorGenerator(anchor_sizes(size, levels), (ASPECT_RATIOS,) * (levels + 1))
            self.rpn = RegionProposalNetwork(
                anchors, RPNHead(fpn_channels, len(ASPECT_RATIOS)), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
                batch_size_per_image=128, positive_fraction=0.5, pre_nms_top_n={"training": 600, "testing": 300},
                post_nms_top_n={"training": 300, "testing": 150}, nms_thresh=0.7)
            self.roi_heads = RoIHeads(
                MultiScaleRoIAlign(self.names, output_size=7, sampling_ratio=2),
                TwoMLPHead(fpn_channels * 49, representation), FastRCNNPredictor(representation, num_classes + 1),
                fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=64, positive_fraction=0.25,
                bbox_reg_weights=None, score_thresh=SCORE_THRESHOLD, nms_thresh=0.5,
                detections_per_img=DETECTIONS_PER_IMAGE)

        def forward(self, feats: Sequence[Any], targets: list[dict] | None = None):
            features = self.fpn(OrderedDict(zip(self.names, feats)))
            batch = feats[0].shape[0]
            # The RPN reads only the padded batch's shape; an expanded view costs no memory.
            shape_only = feats[0].new_zeros(1, 1, 1, 1).expand(batch, 3, *self.size)
            images = ImageList(shape_only, [tuple(self.size)] * batch)
            proposals, rpn_losses = self.rpn(images, features, targets)
            detections, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
            return {**rpn_losses, **roi_losses} if self.training else detections

    return PyramidDetector


def build_detector(in_channels: Sequence[int], num_classes: int, size: tuple[int, int], seed: int,
                   fpn_channels: int, representation: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _detector_class()(in_channels, num_classes, size, fpn_channels, representation)


# ----------------------------------------------------------------------------- data
def training_target(target, size: tuple[int, int], flip: bool) -> dict:
    """torchvision's target dict at the fixed input size (labels 1..C, 0 is background),
    difficult objects dropped, mirrored when ``flip``."""
    import torch

    keep = [i for i, difficult in enumerate(target.difficult) if not difficult]
    boxes = np.asarray([target.boxes[i] for i in keep], dtype=np.float32).reshape(-1, 4)
    sx, sy = size[1] / target.width, size[0] / target.height
    boxes = boxes * np.asarray([sx, sy, sx, sy], dtype=np.float32)
    if flip:
        boxes = np.stack([size[1] - boxes[:, 2], boxes[:, 1], size[1] - boxes[:, 0], boxes[:, 3]], axis=1)
    labels = np.asarray([target.labels[i] + 1 for i in keep], dtype=np.int64)
    return {"boxes": torch.from_numpy(np.ascontiguousarray(boxes)), "labels": torch.from_numpy(labels)}


def to_image_detections(detection: dict, target, size: tuple[int, int]):
    """One image's torchvision output, scaled from the fixed input size back to the image's own."""
    from gaia_bench.tasks.metrics_detection import ImageDetections

    boxes = detection["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
    sx, sy = target.width / size[1], target.height / size[0]
    boxes = boxes * np.asarray([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, target.width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, target.height)
    return ImageDetections(boxes, detection["scores"].detach().cpu().numpy(),
                           detection["labels"].detach().cpu().numpy() - 1)


class PyramidSource:
    """The backbone's last ``levels`` maps for a batch of subset positions, plain or mirrored:
    from memory when the pyramids were cached, else computed now (with gradients when the backbone
    trains)."""

    def __init__(self, backbone, samples, size, mean, std, device: str, levels: int, trainable: bool) -> None:
        self.backbone, self.samples, self.size = backbone, samples, size
        self.mean, self.std, self.device, self.levels, self.trainable = mean, std, device, levels, trainable
        self.cache: dict[bool, list] | None = None

    def images(self, positions: Sequence[int], flip: Sequence[bool]):
        import torch

        batch = []
        for position, mirrored in zip(positions, flip):
            image = load_image(self.samples[position].path, self.size, self.mean, self.std)
            batch.append(torch.flip(image, dims=[-1]) if mirrored else image)
        return torch.stack(batch).to(self.device)

    def compute(self, positions: Sequence[int], flip: Sequence[bool]) -> list:
        import torch

        with torch.set_grad_enabled(self.trainable):
            return [f.float() for f in self.backbone.pyramid(self.images(positions, flip))[-self.levels:]]

    def fill_cache(self, batch_size: int, advance: Callable[[int], None]) -> None:
        import torch

        cache: dict[bool, list] = {}
        everything = list(range(len(self.samples)))
        with torch.no_grad():
            for mirrored in (False, True):
                chunks = [self.compute(everything[s:s + batch_size], [mirrored] * len(everything[s:s + batch_size]))
                          for s in range(0, len(everything), batch_size)]
                cache[mirrored] = [torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0]))]
                advance(len(everything))
        self.cache = cache

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


def lr_factor(step: int, iterations: int, warmup: int) -> float:
    """Linear warm-up from 0.1, then x0.1 at 2/3 and again at 8/9 of the schedule."""
    warm = 0.1 + 0.9 * min(1.0, (step + 1) / warmup) if warmup else 1.0
    decay = 0.1 ** ((step >= 2 * iterations / 3) + (step >= 8 * iterations / 9))
    return warm * decay


# ----------------------------------------------------------------------------- the job
def predict(detector, source: PyramidSource, size, batch: int, advance=lambda n: None) -> list:
    """Eval-mode detections (in the fixed input's coordinates) for every image of ``source``."""
    import torch

    detector.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(source.samples), batch):
            positions = list(range(s, min(s + batch, len(source.samples))))
            feats = source.compute(positions, [False] * len(positions)) if source.cache is None else \
                source(positions, [False] * len(positions))
            out.extend(detector(feats))
            advance(len(positions))
    return out


def score(task, detections: list, samples, size, classes: Sequence[str]) -> dict[str, float]:
    targets = [s.target for s in samples]
    image_detections = [to_image_detections(d, t, size) for d, t in zip(detections, targets)]
    return task.compute_metrics(image_detections, targets, list(classes))


def run_detection(ctx, train_backbone: bool = False, iterations: int | None = None) -> AdaptationResult:
    """Train the detector on the job's subset and evaluate on the test split. ``iterations``
    overrides the schedule (0 = the untrained head, for comparisons)."""
    import torch

    hp = {**DETECTION_HYPERPARAMS, "backbone_lr_scale": 0.1, "val_share": 0.2, "patience": 5, **ctx.hyperparams}
    job = ctx.job
    dataset, spec = job.dataset, job.backbone
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
    source = PyramidSource(backbone, fit_samples, size, spec.mean, spec.std, device, levels, train_backbone)
    cache_mb = 2 * len(fit_samples) * pyramid_bytes(backbone, size, levels) / 2**20
    cached = not train_backbone and cache_mb <= CACHE_MB
    if cached:
        advance = ctx.progress.start(f"pyramid {spec.name} / {dataset.name}:{dataset.train_split} (+ mirrored)",
                                     2 * len(fit_samples))
        source.fill_cache(max(1, ctx.session.batch_size), advance)
        ctx.progress.finish()
    stage["pyramid"] = time.perf_counter() - start

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        detector = build_detector(backbone.pyramid_channels[-levels:], len(classes), size, seed,
                                  int(hp["det_fpn_channels"]), int(hp["det_representation"])).to(device)
        lr = float(hp["det_lr"])
        groups = [{"params": list(detector.parameters()), "lr": lr}]
        if train_backbone:
            groups.append({"params": list(backbone.parameters()), "lr": lr * float(hp["backbone_lr_scale"])})
        base_lrs = [g["lr"] for g in groups]
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM, weight_decay=float(hp["det_weight_decay"]))
        train_bn = train_backbone and batchnorm_trains(ctx.config.init)
        targets = {m: [training_target(s.target, size, m) for s in fit_samples] for m in (False, True)}
        generator = torch.Generator().manual_seed(seed)
        warmup = min(100, n_iters // 5)
        order, pointer = torch.randperm(len(fit_samples), generator=generator).tolist(), 0
        val_source = PyramidSource(backbone, [subset[i] for i in val], size, spec.mean, spec.std, device, levels, False)
        val_curve: list[list[float]] = []
        best = {"score": -1.0, "iteration": 0, "state": None}
        bad_checks, stopped_early, done = 0, False, 0
        losses: list[float] = []
        model_seconds = 0.0

        def check(step: int) -> bool:
            """Held-out mAP now; keep the best weights; True when patience ran out."""
            nonlocal bad_checks
            backbone.eval()
            dets = predict(detector, val_source, size, batch)
            value = score(job.task, dets, val_source.samples, size, classes)[job.primary_metric]
            value = -1.0 if math.isnan(value) else value
            val_curve.append([step, value])
            if value > best["score"]:
                best.update(score=value, iteration=step,
                            state=(copy.deepcopy(detector.state_dict()), copy.deepcopy(backbone.state_dict())))
                bad_checks = 0
            else:
                bad_checks += 1
            return bad_checks >= int(hp["patience"])

        start = time.perf_counter()
        advance = ctx.progress.start(f"detector {dataset.name}", n_iters) if n_iters else (lambda n: None)
        for step in range(n_iters):
            detector.train()
            if train_backbone:
                backbone.train()
                set_batchnorm_mode(backbone, train_bn)
            if pointer >= len(order):
                order, pointer = torch.randperm(len(fit_samples), generator=generator).tolist(), 0
            positions = order[pointer:pointer + batch]
            pointer += batch
            flips = (torch.rand(len(positions), generator=generator) < 0.5).tolist()
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * lr_factor(step, n_iters, warmup)
            tick = time.perf_counter()
            feats = source(positions, flips)
            batch_targets = [{k: v.to(device) for k, v in targets[m][p].items()} for p, m in zip(positions, flips)]
            loss_parts = detector(feats, batch_targets)
            loss = sum(loss_parts.values())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], CLIP_NORM)
            optimizer.step()
            model_seconds += time.perf_counter() - tick
            losses.append(float(loss.detach()))
            done = step + 1
            advance(1)
            if val and (done % int(hp["det_eval_every"]) == 0 or done == n_iters):
                if check(done):
                    stopped_early = done < n_iters
                    break
        if n_iters:
            ctx.progress.finish()
        if val and best["state"] is not None:
            detector.load_state_dict(best["state"][0])
            backbone.load_state_dict(best["state"][1])
        stage["head_train"] = time.perf_counter() - start
    train_images = done * batch

    start = time.perf_counter()
    backbone.eval()
    del source
    test_source = PyramidSource(backbone, test.samples, size, spec.mean, spec.std, device, levels, False)
    advance = ctx.progress.start(f"evaluate {dataset.name}:{dataset.test_split}", len(test))
    tick = time.perf_counter()
    detections = predict(detector, test_source, size, max(1, ctx.session.batch_size), advance)
    eval_model_seconds = time.perf_counter() - tick
    ctx.progress.finish()
    metrics = score(job.task, detections, test.samples, size, classes)
    stage["evaluate"] = time.perf_counter() - start

    trainable = sum(p.numel() for p in detector.parameters())
    if train_backbone:
        trainable += sum(p.numel() for p in backbone.parameters())
    details = {
        "head": {
            "kind": "faster-rcnn+fpn (torchvision)", "fpn_channels": int(hp["det_fpn_channels"]),
            "representation": int(hp["det_representation"]), "levels_used": levels,
            "in_channels": [int(c) for c in backbone.pyramid_channels[-levels:]],
            "reductions": [int(r) for r in backbone.pyramid_reductions[-levels:]],
            "anchor_sizes": [s[0] for s in anchor_sizes(size, levels)], "aspect_ratios": list(ASPECT_RATIOS),
            "score_threshold": SCORE_THRESHOLD, "detections_per_image": DETECTIONS_PER_IMAGE,
        },
        "schedule": {**schedule, "optimizer": "sgd", "momentum": MOMENTUM, "lr": float(hp["det_lr"]),
                     "weight_decay": float(hp["det_weight_decay"]), "warmup": warmup,
                     "steps": "x0.1 at 2/3 and 8/9", "iterations_run": done, "augmentation": "hflip 0.5"},
        "backbone": {"trained": train_backbone, "lr_scale": float(hp["backbone_lr_scale"]) if train_backbone else 0.0,
                     "batchnorm": ("batch statistics" if train_bn else "frozen statistics") if train_backbone else "frozen",
                     "pyramids_cached": cached, "cache_mb": round(cache_mb, 1)},
        "early_stopping": {"n_fit": len(fit), "n_val": len(val), "val_curve": val_curve,
                           "best_iteration": best["iteration"], "best_val": best["score"] if val else None,
                           "stopped_early": stopped_early} if train_backbone else None,
        "loss_start": float(np.mean(losses[:10])) if losses else None,
        "loss_end": float(np.mean(losses[-10:])) if losses else None,
        "input_size": list(size),
        "throughput": {"train_images": train_images, "train_seconds": stage["head_train"],
                       "train_model_seconds": model_seconds, "eval_images": len(test),
                       "eval_seconds": stage["evaluate"], "eval_model_seconds": eval_model_seconds},
        "trainable_params": int(trainable),
        "frozen_backbone": not train_backbone,
    }
    return AdaptationResult(metrics=metrics, details=details,
                            stage_seconds=stage, trainable_params=int(trainable))
