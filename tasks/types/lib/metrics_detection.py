"""PASCAL VOC box AP exactly as the VOC devkit defines it, in both of its historical forms.

Rules (``VOCevaldet.m`` of the devkit; py-faster-rcnn's ``voc_eval.py`` is a port):

* per class, all detections of the test set are ranked by score (a stable sort, like MATLAB's);
* each detection goes to the ground truth of its class in its image with the highest IoU — among
  *all* of them, difficult or already taken. ``IoU >= 0.5`` (the devkit's ``ovmax >= minoverlap``;
  the py-faster-rcnn port writes ``>``, which differs only at exactly 0.5) then means: a difficult
  ground truth → the detection is ignored (neither TP nor FP); a taken one → FP (duplicate); else
  TP. Below 0.5, or no ground truth of the class in the image → FP. Boxes that do not overlap with
  positive width and height have IoU 0;
* ``npos`` counts the non-difficult ground truths; recall = TP / npos, precision = TP / (TP + FP).

Two AP variants from that curve, named explicitly because papers mix them up:

* :func:`ap_voc07_11pt` — VOC2007's 11-point interpolated AP: the mean over 11 recall thresholds
  ``t`` of the highest precision at recall ``>= t`` (0 where recall never reaches ``t``). The
  thresholds are the floating-point values the reference code compares against, not exact
  tenths: mmdet's ``eval_map`` (``np.arange(0, 1 + 1e-3, 0.1)``, where GV-B's numbers come from),
  py-faster-rcnn's ``voc_eval.py`` and the devkit's Python ports (``np.arange(0., 1.1, 0.1)``)
  all hold ``k * 0.1``, whose 3rd, 6th and 7th values are 0.30000000000000004,
  0.6000000000000001 and 0.7000000000000001. A recall of exactly 3/10, 3/5 or 7/10 (the doubles
  0.3, 0.6 and 0.7, each just below) therefore does not reach that threshold, and the precision
  there is not counted for it. (mmdet also sums the 11 values in float32; this module keeps
  float64, a difference below 1e-6 AP.);
* :func:`ap_area` — VOC2010+ (``VOCap.m``): the area under the monotone precision envelope
  (precision replaced by the highest precision at any higher recall).

mAP is the mean over classes with at least one non-difficult ground truth (classes without one
have no recall; mmdet's ``eval_map`` skips them too). GV-B's VOC07 test mAP is the 11-point one
(mmdet evaluates ``dataset='voc07'`` in ``11points`` mode).

Box convention: :class:`DetectionTarget`'s continuous ``(x1, y1, x2, y2)``, areas ``(x2-x1)(y2-y1)``
(``pixel_offset=0``). That equals the devkit's ``+1`` on its 1-based inclusive pixel indices
(``x1 = xmin - 1, x2 = xmax``), so no ``+1`` is added by default; ``pixel_offset=1`` reproduces
the devkit on boxes given in its inclusive coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gaia_bench.tasks.datasets.lib.dense_targets import DetectionTarget

IOU_THRESHOLD = 0.5
RECALL_POINTS_11 = np.arange(0.0, 1.1, 0.1)  # k * 0.1 as mmdet and py-faster-rcnn compute them (module docstring)


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections: ``boxes`` (N, 4) xyxy in the targets' convention, ``scores`` (N,),
    ``labels`` (N,) class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)

    @classmethod
    def empty(cls) -> ImageDetections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections in rank order, each TP, FP or neither (matched a difficult object),
    with the image each comes from (what a bootstrap resample weights)."""

    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    npos: int
    images: np.ndarray

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Recall and precision after each ranked detection. Where nothing has counted yet
        (only difficult matches so far) precision is 0: the devkit's NaN there never changes AP."""
        tp = np.cumsum(self.tp, dtype=np.float64)
        fp = np.cumsum(self.fp, dtype=np.float64)
        recall = tp / self.npos if self.npos else np.full_like(tp, np.nan)
        counted = tp + fp
        precision = np.divide(tp, counted, out=np.zeros_like(tp), where=counted > 0)
        return recall, precision


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, pixel_offset: float = 0.0) -> np.ndarray:
    """(N, M) IoU of xyxy boxes; widths are ``x2 - x1 + pixel_offset``. Pairs that do not overlap
    with positive width and height get 0, as in the devkit's ``iw > 0 & ih > 0`` test."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + pixel_offset
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + pixel_offset
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + pixel_offset) * (a[:, 3] - a[:, 1] + pixel_offset)
    area_b = (b[:, 2] - b[:, 0] + pixel_offset) * (b[:, 3] - b[:, 1] + pixel_offset)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap & (union > 0))


def _target_arrays(target: DetectionTarget) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(target.boxes, dtype=np.float64).reshape(-1, 4)
    return boxes, np.asarray(target.labels, dtype=np.int64), np.asarray(target.difficult, dtype=bool)


def match_class(detections: Sequence[ImageDetections], targets: Sequence[DetectionTarget], label: int,
                iou_threshold: float = IOU_THRESHOLD, pixel_offset: float = 0.0) -> ClassMatches:
    """The devkit's greedy assignment for one class over the whole test set (see module docstring)."""
    if len(detections) != len(targets):
        raise ValueError(f"{len(detections)} detection lists for {len(targets)} images")
    gt_boxes, gt_difficult, npos = [], [], 0
    det_image, det_index, det_scores = [], [], []
    for image, (dets, target) in enumerate(zip(detections, targets)):
        boxes, labels, difficult = _target_arrays(target)
        mine = labels == label
        gt_boxes.append(boxes[mine])
        gt_difficult.append(difficult[mine])
        npos += int(np.count_nonzero(~difficult[mine]))
        chosen = np.flatnonzero(dets.labels == label)
        det_image.extend([image] * len(chosen))
        det_index.extend(chosen.tolist())
        det_scores.extend(dets.scores[chosen].tolist())
    scores = np.asarray(det_scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    tp = np.zeros(len(order), dtype=bool)
    fp = np.zeros(len(order), dtype=bool)
    taken = [np.zeros(len(b), dtype=bool) for b in gt_boxes]
    for rank, k in enumerate(order):
        image, index = det_image[k], det_index[k]
        if len(gt_boxes[image]) == 0:
            fp[rank] = True
            continue
        ious = box_iou(detections[image].boxes[index], gt_boxes[image], pixel_offset)[0]
        best = int(np.argmax(ious))  # first maximum, like the devkit's strict ``ov > ovmax``
        if ious[best] < iou_threshold:
            fp[rank] = True
        elif gt_difficult[image][best]:
            continue
        elif taken[image][best]:
            fp[rank] = True
        else:
            tp[rank] = True
            taken[image][best] = True
    return ClassMatches(scores=scores[order], tp=tp, fp=fp, npos=npos,
                        images=np.asarray(det_image, dtype=np.int64).reshape(-1)[order])


def ap_voc07_11pt(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP of a precision/recall curve, with mmdet's thresholds
    (:data:`RECALL_POINTS_11`: a recall of exactly 0.3 does not reach the third one)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    total = 0.0
    for t in RECALL_POINTS_11:
        reached = recall >= t
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / len(RECALL_POINTS_11)


def ap_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: area under the precision envelope, with sentinels (0, 0) and (1, 0)."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))


def voc_detection_metrics(detections: Sequence[ImageDetections], targets: Sequence[DetectionTarget],
                          num_classes: int, class_names: Sequence[str] | None = None,
                          iou_threshold: float = IOU_THRESHOLD, pixel_offset: float = 0.0) -> dict[str, float]:
    """``mAP_voc07_11pt`` and ``mAP_area`` (fractions in [0, 1]) plus ``ap_voc07_11pt/<class>`` and
    ``ap_area/<class>`` for every class with a non-difficult ground truth (the ones averaged)."""
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    out: dict[str, float] = {}
    for label, name in enumerate(names):
        matches = match_class(detections, targets, label, iou_threshold, pixel_offset)
        if matches.npos == 0:
            continue
        recall, precision = matches.pr_curve()
        out[f"ap_voc07_11pt/{name}"] = ap_voc07_11pt(recall, precision)
        out[f"ap_area/{name}"] = ap_area(recall, precision)
    for variant in ("voc07_11pt", "area"):
        values = [v for k, v in out.items() if k.startswith(f"ap_{variant}/")]
        out[f"mAP_{variant}"] = float(np.mean(values)) if values else float("nan")
    return out
