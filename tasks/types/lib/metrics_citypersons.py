"""CityPersons' log-average miss rate MR⁻² as the official ``eval_MR_multisetup.py`` computes it
(cvgroup-njust/CityPersons ``evaluation/eval_script``; GV-B runs the same file from
``gvbenchmark/det/datasets/eval_cityperson``). Lower is better.

Per setup (:data:`SETUPS`, bounds inclusive as in the official ``<``/``>`` tests):

* ground truths outside the setup's height (full-body box height) or visibility range, and the
  ones the annotation already marks ignore (ignore regions, label 0), become *ignore* boxes;
* per image, detections are ranked by score (stable), the top 1000 kept, then those whose height
  is outside ``[h_min / 1.25, h_max · 1.25)`` dropped (the "expanded filter");
* overlap is IoU for regular ground truths and, for ignore boxes, intersection over the
  DETECTION's area (the official ``iscrowd`` branch); boxes are continuous, no ``+1``;
* each detection takes the unmatched regular ground truth of highest overlap ``>= 0.5`` (on ties
  the later one, as the official ``>=`` scan does) → TP; failing that, any ignore box with
  overlap ``>= 0.5`` swallows it (neither TP nor FP; ignore boxes can swallow many); else FP;
* over the dataset (stable sort by score): FPPI = FPs / number of images (all images, empty ones
  included), recall = TPs / non-ignored ground truths. At each of the nine reference FPPIs (the
  official rounded constants of ``logspace(-2, 0, 9)``) the recall is the one reached with FPPI
  ``<=`` the reference, 0 where no ranked prefix qualifies (Dollár's ``dbEval``; the official
  Python indexes ``recall[-1]`` there, which is reachable only with fewer than 100 images);
* MR⁻² = exp(mean(log(max(1e-10, miss rate)))) over the nine points (``dbEval``'s floor; the
  official Python takes the log unfloored, so a single zero miss rate sends its MR to 0).

Ground truth per image: full-body boxes (M, 4) xyxy, ``visibility`` (M,) = visible-box area /
full-box area, ``ignore`` (M,) for boxes the annotation marks ignore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IOU_THRESHOLD = 0.5
EXPANDED_FILTER = 1.25
MAX_DETECTIONS = 1000
MISS_RATE_FLOOR = 1e-10
FPPI_POINTS = np.array([0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000])
_UNBOUNDED = 1e5 ** 2  # the official "no upper limit"


@dataclass(frozen=True)
class Setup:
    height: tuple[float, float]
    visibility: tuple[float, float]


SETUPS: dict[str, Setup] = {
    "Reasonable": Setup((50, _UNBOUNDED), (0.65, _UNBOUNDED)),
    "Reasonable_small": Setup((50, 75), (0.65, _UNBOUNDED)),
    "Reasonable_occ=heavy": Setup((50, _UNBOUNDED), (0.2, 0.65)),
    "All": Setup((20, _UNBOUNDED), (0.2, _UNBOUNDED)),
}
# GV-B's result keys (gvbenchmark/det/datasets/cityperson.py names the heavy setup "Reasonable_occ").
METRIC_KEYS = {"Reasonable": "mr_Reasonable", "Reasonable_small": "mr_Reasonable_small",
               "Reasonable_occ=heavy": "mr_Reasonable_occ", "All": "mr_All"}


def setup_ignore(gt_boxes: np.ndarray, visibility: np.ndarray, ignore: np.ndarray, setup: Setup) -> np.ndarray:
    """Which ground truths a setup treats as ignore boxes."""
    boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    heights = boxes[:, 3] - boxes[:, 1]
    vis = np.asarray(visibility, dtype=np.float64).reshape(-1)
    (h_lo, h_hi), (v_lo, v_hi) = setup.height, setup.visibility
    outside = (heights < h_lo) | (heights > h_hi) | (vis < v_lo) | (vis > v_hi)
    return np.asarray(ignore, dtype=bool).reshape(-1) | outside


def overlaps(det_boxes: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray) -> np.ndarray:
    """(D, G): IoU against regular ground truths, intersection / detection area against ignore boxes."""
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    ih = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    touching = (iw > 0) & (ih > 0)
    inter = np.where(touching, iw * ih, 0.0)
    det_area = ((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]))[:, None]
    gt_area = ((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]))[None, :]
    denominator = np.where(np.asarray(gt_ignore, dtype=bool)[None, :], det_area, det_area + gt_area - inter)
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=touching & (denominator > 0))


def match_image(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray,
                setup: Setup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's kept detections: scores in rank order, TP flags, swallowed-by-ignore flags."""
    boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
    boxes, scores = boxes[order], scores[order]
    heights = boxes[:, 3] - boxes[:, 1]
    h_lo, h_hi = setup.height
    kept = (heights >= h_lo / EXPANDED_FILTER) & (heights < h_hi * EXPANDED_FILTER)
    boxes, scores = boxes[kept], scores[kept]
    ignore = np.asarray(gt_ignore, dtype=bool).reshape(-1)
    ov = overlaps(boxes, gt_boxes, ignore)
    taken = np.zeros(len(ignore), dtype=bool)
    tp = np.zeros(len(boxes), dtype=bool)
    swallowed = np.zeros(len(boxes), dtype=bool)
    regular = ~ignore
    for k in range(len(boxes)):
        candidates = regular & ~taken & (ov[k] >= IOU_THRESHOLD)
        if candidates.any():
            values = np.where(candidates, ov[k], -np.inf)
            best = len(values) - 1 - int(np.argmax(values[::-1]))  # last of the maxima
            taken[best] = True
            tp[k] = True
        elif (ignore & (ov[k] >= IOU_THRESHOLD)).any():
            swallowed[k] = True
    return scores, tp, swallowed


def miss_rates_at_fppi(scores: np.ndarray, tp: np.ndarray, num_images: int, num_positives: int,
                       fppi_points: np.ndarray = FPPI_POINTS) -> np.ndarray:
    """Miss rate at each reference FPPI from the counted (not swallowed) detections of the set."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return ranked_miss_rates(np.asarray(tp, dtype=bool)[order], num_images, num_positives, fppi_points)


def ranked_miss_rates(hits: np.ndarray, num_images: int, num_positives: int,
                      fppi_points: np.ndarray = FPPI_POINTS) -> np.ndarray:
    """:func:`miss_rates_at_fppi` of detections already ranked: ``hits`` says which are TPs."""
    recall = np.cumsum(hits) / num_positives
    fppi = np.cumsum(~hits) / num_images
    last = np.searchsorted(fppi, fppi_points, side="right") - 1
    reached = np.zeros(len(fppi_points))
    qualified = last >= 0
    reached[qualified] = recall[last[qualified]]
    return 1.0 - reached


def log_average_miss_rate(miss_rates: np.ndarray, floor: float = MISS_RATE_FLOOR) -> float:
    """exp(mean(log(max(floor, miss rate))))."""
    return float(np.exp(np.mean(np.log(np.maximum(floor, np.asarray(miss_rates, dtype=np.float64))))))


def citypersons_mr(det_boxes: Sequence[np.ndarray], det_scores: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray],
                   gt_visibility: Sequence[np.ndarray], gt_ignore: Sequence[np.ndarray],
                   setup: str = "Reasonable") -> float:
    """MR⁻² of one setup (a fraction; NaN when the setup keeps no ground truth)."""
    if not len(det_boxes) == len(det_scores) == len(gt_boxes) == len(gt_visibility) == len(gt_ignore):
        raise ValueError("every per-image argument needs one entry per image")
    spec = SETUPS[setup]
    all_scores, all_tp, positives = [], [], 0
    for boxes, scores, gts, vis, ign in zip(det_boxes, det_scores, gt_boxes, gt_visibility, gt_ignore):
        gts = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
        ignore = setup_ignore(gts, vis, ign, spec)
        positives += int(np.count_nonzero(~ignore))
        ranked, tp, swallowed = match_image(boxes, scores, gts, ignore, spec)
        all_scores.append(ranked[~swallowed])
        all_tp.append(tp[~swallowed])
    if positives == 0:
        return float("nan")
    misses = miss_rates_at_fppi(np.concatenate(all_scores), np.concatenate(all_tp), len(det_boxes), positives)
    return log_average_miss_rate(misses)


def citypersons_metrics(det_boxes: Sequence[np.ndarray], det_scores: Sequence[np.ndarray],
                        gt_boxes: Sequence[np.ndarray], gt_visibility: Sequence[np.ndarray],
                        gt_ignore: Sequence[np.ndarray]) -> dict[str, float]:
    """``mr_Reasonable``, ``mr_Reasonable_small``, ``mr_Reasonable_occ``, ``mr_All`` (fractions)."""
    return {key: citypersons_mr(det_boxes, det_scores, gt_boxes, gt_visibility, gt_ignore, setup)
            for setup, key in METRIC_KEYS.items()}
