"""The semantic segmentation task: mIoU (primary), pixel accuracy and mean class accuracy, in
percent, from ONE confusion matrix accumulated over the whole evaluation split
(:mod:`gaia_bench.tasks.metrics_segmentation`, mmseg's definitions; 255 = void is ignored)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import MetricInfo, TaskSpec

PERCENT_METRICS = ("mIoU", "pixel_acc", "mean_class_acc")


def compute_segmentation_metrics(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """``mIoU``, ``pixel_acc``, ``mean_class_acc`` and ``iou/<class>`` (every class with a defined
    IoU), all in percent, from a (C, C) confusion matrix (rows ground truth, columns prediction)."""
    from gaia_bench.tasks.metrics_segmentation import segmentation_metrics

    return {name: 100.0 * value for name, value in segmentation_metrics(confusion, class_names).items()}


SEGMENTATION = TaskSpec(
    name="segmentation",
    description="semantic segmentation (per-pixel classes, void ignored)",
    metrics=(
        MetricInfo("mIoU", True, "mean over classes of intersection over union, from the dataset confusion matrix, %"),
        MetricInfo("pixel_acc", True, "correct pixels / counted pixels, %"),
        MetricInfo("mean_class_acc", True, "mean over ground-truth classes of per-class pixel recall, %"),
    ),
    primary_metric="mIoU",
    compute_metrics=compute_segmentation_metrics,
)


@hookimpl
def register_tasks(register):
    register(SEGMENTATION)
