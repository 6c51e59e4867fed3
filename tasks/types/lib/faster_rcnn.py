"""The head of the detection task: torchvision's Faster R-CNN pieces (FPN, region proposal network,
RoIAlign box head) over the last maps of the backbone's pyramid, its loss (the sum of the four
Faster R-CNN losses) and its predictions. Trained by :mod:`gaia_bench.plugins.adaptations.lib.detection_head`.

Anchors follow the input: one size per level, ``short_side x 2^-k``, ``k = levels .. 0`` from the
finest to the pooled level (4 levels: 1/16 .. 1) (a 600-pixel VOC image gets 37-600 px, close to
Detectron's 32-512), aspect ratios 0.5, 1, 2. Training targets are the boxes scaled to the fixed
input size (labels 1..C, 0 is background), difficult objects left out (the metric ignores them
too), mirrored with the image. Predictions keep up to 100 detections per image above score 0.01
(VOC AP integrates the whole ranked list, so a low threshold is the honest one), scaled back to the
image's own size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench.api import DatasetSpec, HeadInput, Sample, Samples

ASPECT_RATIOS = (0.5, 1.0, 2.0)
SCORE_THRESHOLD, DETECTIONS_PER_IMAGE = 0.01, 100
FPN_CHANNELS, REPRESENTATION = 64, 256  # defaults of the det_fpn_channels / det_representation knobs


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
            return self.detect(self.pyramid(feats), targets)

        def pyramid(self, feats: Sequence[Any]) -> "OrderedDict[str, Any]":
            """The FPN's maps (fine to coarse, plus ``pool``) over the backbone's maps."""
            return self.fpn(OrderedDict(zip(self.names, feats)))

        def detect(self, features: "OrderedDict[str, Any]", targets: list[dict] | None = None):
            """RPN + RoI heads over FPN maps: what ``forward`` returns. Methods that train the head
            on other maps of the same shapes (``lgd``'s teacher) call it directly."""
            first = next(iter(features.values()))
            batch = first.shape[0]
            # The RPN reads only the padded batch's shape; an expanded view costs no memory.
            shape_only = first.new_zeros(1, 1, 1, 1).expand(batch, 3, *self.size)
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
    from gaia_bench.tasks.types.lib.metrics_detection import ImageDetections

    boxes = detection["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
    sx, sy = target.width / size[1], target.height / size[0]
    boxes = boxes * np.asarray([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, target.width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, target.height)
    return ImageDetections(boxes, detection["scores"].detach().cpu().numpy(),
                           detection["labels"].detach().cpu().numpy() - 1)



class DetectionHead:
    """A :class:`PyramidDetector` for one job: training targets, loss and per-image detections."""

    def __init__(self, inputs: HeadInput, num_classes: int, fpn_channels: int, representation: int, seed: int) -> None:
        self.size, self.fpn_channels, self.representation = inputs.size, fpn_channels, representation
        self.module = build_detector(list(inputs.channels), num_classes, inputs.size, seed, fpn_channels, representation)

    def target(self, sample: Sample, mirrored: bool = False) -> dict:
        return training_target(sample.target, self.size, mirrored)

    def loss(self, inputs, targets: Sequence[dict]):
        device = next(self.module.parameters()).device
        parts = self.module(inputs, [{k: v.to(device) for k, v in t.items()} for t in targets])
        return sum(parts.values())

    def predict(self, inputs, samples: Sequence[Sample]) -> list:
        import torch

        self.module.eval()
        with torch.no_grad():
            detections = self.module(inputs)
        return [to_image_detections(d, s.target, self.size) for d, s in zip(detections, samples)]

    def describe(self) -> dict[str, Any]:
        levels = len(self.module.names)
        return {"kind": "faster-rcnn+fpn (torchvision)", "fpn_channels": self.fpn_channels,
                "representation": self.representation, "levels_used": levels,
                "anchor_sizes": [s[0] for s in anchor_sizes(self.size, levels)], "aspect_ratios": list(ASPECT_RATIOS),
                "score_threshold": SCORE_THRESHOLD, "detections_per_image": DETECTIONS_PER_IMAGE}


def make_head(inputs: HeadInput, dataset: DatasetSpec, fit: Samples, hyperparams: Mapping[str, Any],
              seed: int) -> DetectionHead:
    return DetectionHead(inputs, len(fit.classes), int(hyperparams.get("det_fpn_channels", FPN_CHANNELS)),
                         int(hyperparams.get("det_representation", REPRESENTATION)), seed)
