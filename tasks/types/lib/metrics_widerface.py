"""WIDER FACE's easy / medium / hard AP, following the official MATLAB ``eval_tools``
(``wider_eval.m`` → ``norm_score.m``, ``evaluation.m``; wondervictor/WiderFace-Evaluation's
``evaluation.py`` is a port).

The rules, including the ones that differ from VOC:

* every detection score is min-max normalised over the WHOLE test set (global min and max, as the
  MATLAB ``norm_score`` does; the Python port starts its running min/max at 1 and 0, which only
  differs for scores outside [0, 1]). **Deliberate difference:** a constant score (max = min)
  makes the official ``(s - min) / (max - min)`` 0/0 = NaN for every detection, so nothing passes
  any threshold and the official AP is 0 whatever the boxes; here all scores become 1 instead, and
  AP is that of keeping every detection (a detector without a ranking is scored on its boxes);
* each image's detections are sorted by score (stable, descending); each goes to the face with the
  highest IoU among all faces of the image (first maximum). With IoU ``>= 0.5``: a face outside
  the setting's keep list makes the detection "not a proposal" (neither TP nor FP, however often
  it happens); an unmatched kept face becomes a TP; an already matched kept face leaves the
  detection a proposal (a FP). Below 0.5 → FP;
* the PR curve has 1000 points, thresholds ``1 - k/1000`` (k = 1..1000) on the normalised score:
  detections with score ``>=`` the threshold count. Proposals and TPs are summed over images;
  precision = TPs / proposals, recall = TPs / (number of kept faces over all images);
* images without faces or without detections add nothing to the curve (their detections are not
  FPs — an official quirk kept here), but their kept faces still count in the recall denominator;
* AP is the area under the precision envelope (:func:`~gaia_bench.tasks.types.lib.metrics_detection.ap_area`).
  Thresholds where nothing counts yet have recall 0, so the NaN precision there never matters.

IoU: the official ``boxoverlap.m`` adds 1 to widths on boxes converted from ``(x, y, w, h)`` as
``x2 = x + w``. Boxes here are xyxy with ``x2 = x + w`` (what WIDER's ``x y w h`` lines give), and
``pixel_offset=1`` (the default) reproduces that; pass 0 for boxes in the continuous convention.

Keep lists. The official ``wider_{easy,medium,hard}_val.mat`` hold, per image, the 1-based indices
of the faces each setting evaluates; they are precomputed and cannot be derived from the
annotation file: the WIDER FACE paper (Yang et al., CVPR 2016) groups faces by how well EdgeBox
proposals recover them (easy ⊂ medium ⊂ hard), and faces marked invalid or too small (~10 px) are
in no list. :func:`keep_from_indices` turns official lists into masks; :func:`nested_keep_masks` is
a documented proxy for our own data, not the official definition.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from gaia_bench.tasks.types.lib.metrics_detection import ap_area, box_iou

SETTINGS = ("easy", "medium", "hard")
IOU_THRESHOLD = 0.5
NUM_THRESHOLDS = 1000


def keep_from_indices(one_based: Sequence[int], num_faces: int) -> np.ndarray:
    """A keep mask from an official ``gt_list`` entry (MATLAB's 1-based face indices)."""
    keep = np.zeros(num_faces, dtype=bool)
    keep[np.asarray(one_based, dtype=np.int64).reshape(-1) - 1] = True
    return keep


def nested_keep_masks(heights: np.ndarray, invalid: np.ndarray, heavy_blur: np.ndarray,
                      heavy_occlusion: np.ndarray, min_heights: Mapping[str, float]) -> dict[str, np.ndarray]:
    """A proxy for our own data, not WIDER's definition: hard keeps valid faces at least
    ``min_heights['hard']`` px tall; medium and easy also need their own minimum height and no
    heavy blur or heavy occlusion (WIDER's attribute level 2), so easy ⊆ medium ⊆ hard."""
    heights = np.asarray(heights, dtype=np.float64)
    valid = ~np.asarray(invalid, dtype=bool)
    clear = ~np.asarray(heavy_blur, dtype=bool) & ~np.asarray(heavy_occlusion, dtype=bool)
    if not min_heights["easy"] >= min_heights["medium"] >= min_heights["hard"]:
        raise ValueError(f"minimum heights must not grow from easy to hard: {dict(min_heights)}")
    hard = valid & (heights >= min_heights["hard"])
    medium = hard & clear & (heights >= min_heights["medium"])
    easy = medium & (heights >= min_heights["easy"])
    return {"easy": easy, "medium": medium, "hard": hard}


def normalize_scores(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Min-max normalisation over all images together (official ``norm_score``), except that a
    constant score becomes 1, where the official one becomes NaN and scores AP 0 (module docstring)."""
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    filled = [s for s in arrays if s.size]
    if not filled:
        return arrays
    low = min(float(s.min()) for s in filled)
    high = max(float(s.max()) for s in filled)
    if high == low:
        return [np.ones_like(s) for s in arrays]
    return [(s - low) / (high - low) for s in arrays]


def image_matches(boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, keep: np.ndarray,
                  iou_threshold: float = IOU_THRESHOLD,
                  pixel_offset: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections ranked by score (official ``image_evaluation``): their scores, whether
    each is a proposal, and the kept faces recalled once it is counted."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    ious = box_iou(boxes, gt_boxes, pixel_offset)
    state = np.zeros(len(gt_boxes), dtype=np.int8)  # 0 unseen, 1 matched, -1 ignored
    proposal = np.ones(len(boxes), dtype=bool)
    recalled = np.zeros(len(boxes), dtype=np.int64)
    for h in range(len(boxes)):
        best = int(np.argmax(ious[h]))
        if ious[h, best] >= iou_threshold:
            if not keep[best]:
                state[best] = -1
                proposal[h] = False
            elif state[best] == 0:
                state[best] = 1
        recalled[h] = int(np.count_nonzero(state == 1))
    return scores, proposal, recalled


def _image_counts(boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, keep: np.ndarray,
                  thresholds: np.ndarray, iou_threshold: float, pixel_offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Proposals and TPs of one image at every threshold (official ``image_evaluation`` +
    ``image_pr_info``)."""
    scores, proposal, recalled = image_matches(boxes, scores, gt_boxes, keep, iou_threshold, pixel_offset)
    counted = np.searchsorted(-scores, -thresholds, side="right")  # detections with score >= t
    proposals = np.concatenate(([0], np.cumsum(proposal)))[counted]
    tps = np.where(counted > 0, recalled[np.maximum(counted - 1, 0)], 0)
    return proposals, tps


def widerface_ap(det_boxes: Sequence[np.ndarray], det_scores: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray],
                 keep: Sequence[np.ndarray], iou_threshold: float = IOU_THRESHOLD,
                 num_thresholds: int = NUM_THRESHOLDS, pixel_offset: float = 1.0,
                 normalized: bool = False) -> float:
    """AP of one setting: per image, detection boxes (N, 4) xyxy and scores (N,), face boxes
    (M, 4) and the setting's keep mask (M,). NaN when the setting keeps no face at all.
    ``normalized=True`` says the scores already went through :func:`normalize_scores`."""
    if not len(det_boxes) == len(det_scores) == len(gt_boxes) == len(keep):
        raise ValueError("det_boxes, det_scores, gt_boxes and keep need one entry per image")
    scores_all = [np.asarray(s, dtype=np.float64).reshape(-1) for s in det_scores]
    if not normalized:
        scores_all = normalize_scores(scores_all)
    thresholds = 1.0 - np.arange(1, num_thresholds + 1) / num_thresholds
    proposals = np.zeros(num_thresholds, dtype=np.int64)
    tps = np.zeros(num_thresholds, dtype=np.int64)
    faces = 0
    for boxes, scores, gt, mask in zip(det_boxes, scores_all, gt_boxes, keep):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if len(mask) != len(gt):
            raise ValueError(f"keep mask of {len(mask)} for {len(gt)} faces")
        faces += int(np.count_nonzero(mask))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(gt) == 0 or len(boxes) == 0:
            continue
        p, t = _image_counts(boxes, scores, gt, mask, thresholds, iou_threshold, pixel_offset)
        proposals += p
        tps += t
    if faces == 0:
        return float("nan")
    precision = np.divide(tps, proposals, out=np.zeros(num_thresholds), where=proposals > 0)
    return ap_area(tps / faces, precision)


def widerface_metrics(det_boxes: Sequence[np.ndarray], det_scores: Sequence[np.ndarray],
                      gt_boxes: Sequence[np.ndarray], keep_masks: Mapping[str, Sequence[np.ndarray]],
                      iou_threshold: float = IOU_THRESHOLD, pixel_offset: float = 1.0) -> dict[str, float]:
    """``ap_easy``, ``ap_medium``, ``ap_hard`` (fractions) from each setting's per-image keep masks."""
    scores = normalize_scores(det_scores)
    return {f"ap_{name}": widerface_ap(det_boxes, scores, gt_boxes, keep_masks[name], iou_threshold,
                                       pixel_offset=pixel_offset, normalized=True)
            for name in SETTINGS}
