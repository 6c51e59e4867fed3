"""Semantic segmentation metrics from ONE confusion matrix accumulated over the whole dataset
(mmseg's ``total_intersect_and_union`` → ``total_area_to_metrics``), not averaged per image:
per-image means would weight a small image like a large one and leave classes undefined in most
images.

* pixels whose ground truth is ``ignore_index`` (255, VOC's void band) are dropped, whatever the
  prediction there;
* IoU_c = TP / (TP + FP + FN); a class absent from both ground truth and prediction has no IoU
  (NaN) and is left out of ``mIoU`` (mmseg's ``nanmean``); a class only predicted has IoU 0 and
  counts;
* class accuracy_c = TP / ground-truth pixels of c; ``mean_class_acc`` averages the classes present
  in the ground truth (the others are NaN, as in mmseg's ``mAcc``);
* ``pixel_acc`` = correct pixels / counted pixels (mmseg's ``aAcc``).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(C, C) pixel counts, rows ground truth, columns prediction, ``ignore_index`` pixels dropped."""
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth has {gt.size} pixels, prediction {pred.size}")
    counted = gt != ignore_index
    gt, pred = gt[counted], pred[counted]
    for name, values in (("ground truth", gt), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1} (other than {ignore_index})")
    return np.bincount(gt * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def dataset_confusion(pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int,
                      ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Sum of :func:`confusion_matrix` over ``(gt, pred)`` pairs, one per image."""
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    for gt, pred in pairs:
        total += confusion_matrix(gt, pred, num_classes, ignore_index)
    return total


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for classes absent from both ground truth and prediction."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    return np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall per class; NaN for classes absent from the ground truth."""
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(axis=1)
    return np.divide(np.diag(cm), support, out=np.full(len(cm), np.nan), where=support > 0)


def segmentation_metrics(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """``mIoU``, ``pixel_acc``, ``mean_class_acc`` (fractions) and ``iou/<class>`` for every class
    with a defined IoU."""
    cm = np.asarray(confusion)
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(cm))]
    if len(names) != len(cm):
        raise ValueError(f"{len(names)} class names for a {len(cm)}-class confusion matrix")
    iou = per_class_iou(cm)
    acc = per_class_accuracy(cm)
    total = cm.sum()
    out = {
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_acc": float(np.trace(cm) / total) if total else float("nan"),
        "mean_class_acc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
    }
    out.update({f"iou/{name}": float(value) for name, value in zip(names, iou) if np.isfinite(value)})
    return out
