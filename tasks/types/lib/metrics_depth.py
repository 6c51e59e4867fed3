"""Monocular depth metrics as BTS evaluates them (cleinc/bts ``pytorch/bts_eval.py``,
``compute_errors``; the Eigen et al. set plus BTS's SILog):

* the prediction is clipped to ``[min_depth, max_depth]`` (``inf`` → max, ``NaN`` → min);
* a pixel counts when ``min_depth < gt < max_depth`` (both strict) and it lies in the crop:
  KITTI (80 m) uses Garg's crop in BTS's published evaluation (``--garg_crop``), Eigen's is
  available; NYU (10 m) uses Eigen's crop, rows 45:471 × cols 41:601 of 480 × 640;
* errors are computed PER IMAGE over its counted pixels, then averaged over images (BTS fills one
  array entry per image and prints their means) — not pooled over all pixels. Images without a
  counted pixel are skipped. **Deliberate difference:** BTS would put a NaN in its array for such an
  image (a mean over no pixels), which makes every reported mean NaN; here the mean is over the
  images that have at least one counted pixel (and an error when none has).

Per image, with ``r = max(gt/pred, pred/gt)`` and ``e = ln pred − ln gt``: ``abs_rel`` mean
|gt−pred|/gt, ``sq_rel`` mean (gt−pred)²/gt, ``rmse`` √mean (gt−pred)², ``rmse_log`` √mean e²,
``log10`` mean |log10 pred − log10 gt|, ``silog`` 100·√(mean e² − (mean e)²) (computed as the
variance of e, the same quantity without BTS's cancellation error), ``d1``/``d2``/``d3`` share of
``r < 1.25, 1.25², 1.25³``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

Dataset = Literal["kitti", "nyu"]
Crop = Literal["garg", "eigen"]

MIN_DEPTH = 1e-3
MAX_DEPTH: dict[str, float] = {"kitti": 80.0, "nyu": 10.0}
DEFAULT_CROP: dict[str, Crop] = {"kitti": "garg", "nyu": "eigen"}
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
# (top, bottom, left, right) as fractions of height / width, bts_eval.py's exact constants.
_GARG = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
_EIGEN_KITTI = (0.3324324, 0.91351351, 0.0359477, 0.96405229)
_EIGEN_NYU = (45, 471, 41, 601)  # rows / cols on NYU's 480 x 640
_NYU_SHAPE = (480, 640)


def _fraction_box(h: int, w: int, box: tuple[float, float, float, float]) -> np.ndarray:
    top, bottom, left, right = box
    mask = np.zeros((h, w), dtype=bool)
    mask[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
    return mask


def garg_crop_mask(h: int, w: int) -> np.ndarray:
    """Garg et al. (ECCV 2016)'s KITTI crop, ``int(fraction × size)`` bounds as in bts_eval.py."""
    return _fraction_box(h, w, _GARG)


def eigen_crop_mask(h: int, w: int, dataset: Dataset) -> np.ndarray:
    """Eigen et al. (NIPS 2014)'s crop. KITTI: fractional bounds as in bts_eval.py. NYU: rows 45:471,
    cols 41:601 at 480 × 640; other sizes scale those bounds as ``bound × size // 480`` (or 640), our
    extension, exact at the native size."""
    if dataset == "kitti":
        return _fraction_box(h, w, _EIGEN_KITTI)
    if dataset != "nyu":
        raise ValueError(f"unknown dataset {dataset!r}, expected 'kitti' or 'nyu'")
    top, bottom, left, right = _EIGEN_NYU
    rows, cols = _NYU_SHAPE
    mask = np.zeros((h, w), dtype=bool)
    mask[top * h // rows:bottom * h // rows, left * w // cols:right * w // cols] = True
    return mask


def crop_mask(h: int, w: int, dataset: Dataset, crop: Crop | None) -> np.ndarray:
    if crop is None:
        return np.ones((h, w), dtype=bool)
    if crop == "garg":
        return garg_crop_mask(h, w)
    if crop == "eigen":
        return eigen_crop_mask(h, w, dataset)
    raise ValueError(f"unknown crop {crop!r}, expected 'garg', 'eigen' or None")


def depth_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The nine metrics over matching 1-D arrays of valid, positive depths."""
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean(err ** 2))),
        "log10": float(np.mean(np.abs(np.log10(pred) - np.log10(gt)))),
        "silog": float(100.0 * np.sqrt(np.var(err))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25 ** 2)),
        "d3": float(np.mean(ratio < 1.25 ** 3)),
    }


def evaluation_mask(gt: np.ndarray, dataset: Dataset, crop: Crop | None, min_depth: float, max_depth: float) -> np.ndarray:
    """Pixels one image is scored on: valid ground truth inside the crop."""
    gt = np.asarray(gt)
    valid = (gt > min_depth) & (gt < max_depth)
    return valid & crop_mask(gt.shape[0], gt.shape[1], dataset, crop)


def clip_prediction(pred: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    pred = np.array(pred, dtype=np.float64)
    pred[np.isnan(pred)] = min_depth
    return np.clip(pred, min_depth, max_depth)  # +inf lands on max_depth


def image_errors(gt: np.ndarray, pred: np.ndarray, dataset: Dataset, crop: Crop | None | Literal["default"] = "default",
                 min_depth: float = MIN_DEPTH, max_depth: float | None = None) -> dict[str, float] | None:
    """One image's :func:`depth_errors` over its counted pixels (None when it has none), with the
    conventions of :func:`depth_metrics`."""
    cap = MAX_DEPTH[dataset] if max_depth is None else max_depth
    chosen = DEFAULT_CROP[dataset] if crop == "default" else crop
    gt = np.asarray(gt, dtype=np.float64)
    if gt.shape != np.shape(pred):
        raise ValueError(f"ground truth {gt.shape} vs prediction {np.shape(pred)}")
    mask = evaluation_mask(gt, dataset, chosen, min_depth, cap)
    return depth_errors(gt[mask], clip_prediction(pred, min_depth, cap)[mask]) if mask.any() else None


def mean_errors(rows: Sequence[dict[str, float] | None]) -> dict[str, float]:
    """The mean over images of their :func:`image_errors`, images without a counted pixel skipped
    (BTS: NaN; see the module docstring)."""
    counted = [row for row in rows if row is not None]
    if not counted:
        raise ValueError("no image has a valid ground-truth pixel inside the crop")
    return {name: float(np.mean([row[name] for row in counted])) for name in METRICS}


def depth_metrics(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray], dataset: Dataset,
                  crop: Crop | None | Literal["default"] = "default", min_depth: float = MIN_DEPTH,
                  max_depth: float | None = None) -> dict[str, float]:
    """Mean over images of :func:`depth_errors`; ``gts`` in metres with 0 = no measurement,
    ``preds`` of the same shapes. Defaults: the dataset's cap (KITTI 80 m, NYU 10 m) and crop
    (KITTI Garg, NYU Eigen)."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground truths for {len(preds)} predictions")
    return mean_errors([image_errors(gt, pred, dataset, crop, min_depth, max_depth) for gt, pred in zip(gts, preds)])
