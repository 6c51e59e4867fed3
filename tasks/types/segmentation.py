"""The semantic segmentation task: mIoU (primary), pixel accuracy and mean class accuracy, in
percent, from ONE confusion matrix accumulated over the whole evaluation split
(:mod:`gaia_bench.tasks.types.lib.metrics_segmentation`, mmseg's definitions; 255 = void is ignored). Its
head is the FPN decoder of :mod:`gaia_bench.tasks.types.lib.dense_decoder`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, MetricInfo, Samples, TaskSpec
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
)


@hookimpl
def register_tasks(register):
    register(SEGMENTATION)
