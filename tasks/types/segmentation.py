"""The semantic segmentation task: mIoU (primary), pixel accuracy and mean class accuracy, in
percent, from ONE confusion matrix accumulated over the whole evaluation split
(:mod:`gaia_bench.tasks.types.lib.metrics_segmentation`, mmseg's definitions; 255 = void is ignored). Its
head is the FPN decoder of :mod:`gaia_bench.tasks.types.lib.dense_decoder`.

A prediction is an image's (C, C) confusion counts: they hold the ground truth too, so they are
all the prediction store keeps, and a bootstrap resample is a weighted sum of them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, MetricInfo, Sample, Samples, TaskSpec
from gaia_bench.tasks.types.lib.dense_decoder import make_segmentation_head

PLUGIN_ORDER = 720

PERCENT_METRICS = ("mIoU", "pixel_acc", "mean_class_acc")


def metrics_of_confusion(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """``mIoU``, ``pixel_acc``, ``mean_class_acc`` and ``iou/<class>`` (every class with a defined
    IoU), all in percent, from a (C, C) confusion matrix (rows ground truth, columns prediction)."""
    from gaia_bench.tasks.types.lib.metrics_segmentation import segmentation_metrics

    return {name: 100.0 * value for name, value in segmentation_metrics(confusion, class_names).items()}


def evaluate(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """The metrics of the split's ONE confusion matrix: the sum of each image's (C, C) counts."""
    if len(predictions) != len(test):
        raise ValueError(f"{len(predictions)} predictions for {len(test)} test samples")
    if not len(predictions):
        raise ValueError("no predictions to score")
    confusion = np.sum([np.asarray(p, dtype=np.int64) for p in predictions], axis=0)
    return metrics_of_confusion(confusion, list(test.classes) or None)


def _stacked(predictions: Sequence[Any]) -> np.ndarray:
    return np.stack([np.asarray(p, dtype=np.int64) for p in predictions])


def encode(predictions: Sequence[Any], test: Samples) -> dict[str, np.ndarray]:
    """The per-image confusion counts, (n, C, C)."""
    return {"confusion": _stacked(predictions)}


def decode(arrays: Mapping[str, np.ndarray], keys: Sequence[str], classes: Sequence[str]) -> tuple[list, Samples]:
    """The per-image counts; the test samples need no target (the counts hold the ground truth)."""
    predictions = list(np.asarray(arrays["confusion"], dtype=np.int64))
    return predictions, Samples([Sample(k, Path(k), None) for k in keys], list(classes))


def _rates(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class IoU and recall (NaN where undefined) of a stack of confusion matrices (..., C, C)."""
    cm = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    truth, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    union = truth + predicted - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"iou": np.where(union > 0, tp / union, np.nan), "recall": np.where(truth > 0, tp / truth, np.nan),
                "truth": truth, "tp": tp}


def _nanmean(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: the metric is undefined there
        return np.nanmean(values, axis=-1)


def resample(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``evaluate`` on every resample at once: the resample's confusion matrix is the sum of the
    drawn images' counts (exact in float64 below 2**53 pixels)."""
    stacked = _stacked(predictions)
    n, c = stacked.shape[0], stacked.shape[1]
    flat = stacked.reshape(n, c * c).astype(np.float64)
    totals = (np.asarray(counts, dtype=np.float64) @ flat).reshape(-1, c, c)
    rates = _rates(totals)
    with np.errstate(invalid="ignore", divide="ignore"):
        pixel_acc = rates["tp"].sum(axis=1) / totals.sum(axis=(1, 2))
    out = {"mIoU": 100.0 * _nanmean(rates["iou"]), "pixel_acc": 100.0 * pixel_acc,
           "mean_class_acc": 100.0 * _nanmean(rates["recall"])}
    reported = np.isfinite(_rates(flat.sum(axis=0).reshape(c, c))["iou"])  # the classes evaluate reports
    names = list(test.classes) or [str(k) for k in range(c)]
    out.update({f"iou/{name}": 100.0 * rates["iou"][:, k] for k, name in enumerate(names) if reported[k]})
    return out


def _confusion(predictions: Sequence[Any]) -> np.ndarray:
    return _stacked(predictions).sum(axis=0)


def per_class(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> list[float]:
    """Each class's IoU in percent, NaN for a class without a ground-truth pixel in the test set
    (``mIoU`` still counts a class that is only predicted, as 0)."""
    rates = _rates(_confusion(predictions))
    return [float(v) if t > 0 else float("nan") for v, t in zip(100.0 * rates["iou"], rates["truth"])]


def fw_iou(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """Frequency-weighted IoU, %: the classes' IoU weighted by their share of ground-truth pixels
    (Long et al., FCN, CVPR 2015)."""
    rates = _rates(_confusion(predictions))
    present = rates["truth"] > 0
    return {"fwIoU": float(100.0 * np.sum(rates["truth"][present] * rates["iou"][present]) / rates["truth"].sum())}


def worst_class_iou(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """The lowest IoU of a class with ground-truth pixels, %: what a long tail hides in ``mIoU``."""
    return {"worst_class_iou": float(np.nanmin(per_class(predictions, test, dataset)))}


def train_head(ctx, train_backbone: bool):
    """The decoder trainer of :mod:`gaia_bench.plugins.adaptations.lib.dense_probe` (imported when a job runs)."""
    from gaia_bench.plugins.adaptations.lib.dense_probe import run_dense

    return run_dense(ctx, train_backbone=train_backbone)


SEGMENTATION = TaskSpec(
    name="segmentation",
    description="semantic segmentation (per-pixel classes, void ignored)",
    metrics=(
        MetricInfo("mIoU", True, "mean over classes of intersection over union, from the dataset confusion matrix, %"),
        MetricInfo("pixel_acc", True, "correct pixels / counted pixels, %"),
        MetricInfo("mean_class_acc", True, "mean over ground-truth classes of per-class pixel recall, %"),
    ),
    primary_metric="mIoU",
    evaluate=evaluate,
    make_head=make_segmentation_head,
    train_head=train_head,
    encode=encode,
    decode=decode,
    resample=resample,
    per_class=per_class,
    extra_metrics={"fwIoU": fw_iou, "worst_class_iou": worst_class_iou},
)


@hookimpl
def register_tasks(register):
    register(SEGMENTATION)
