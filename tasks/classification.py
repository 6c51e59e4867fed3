"""The classification task: top-1 accuracy and mean per-class accuracy (GV-B's two metrics)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import MetricInfo, Samples, TaskSpec


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predictions."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict[str, float]:
    """``top1``: share of correct predictions; ``mean_per_class_acc``: the mean over classes present
    in the test set of their recall (GV-B's ``per_class_acc``: diag / row sums), both in percent."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    total = cm.sum()
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.diag(cm)[present] / support[present]
    return {
        "top1": float(100.0 * np.trace(cm) / total) if total else 0.0,
        "mean_per_class_acc": float(100.0 * recall.mean()) if present.any() else 0.0,
    }


def class_strata(subset: Samples) -> list[int]:
    """The held-out part is drawn per class (every class with 2+ samples gives some)."""
    return subset.labels()


CLASSIFICATION = TaskSpec(
    name="classification",
    description="single-label image classification",
    metrics=(
        MetricInfo("top1", True, "top-1 accuracy, %"),
        MetricInfo("mean_per_class_acc", True, "mean over classes of per-class recall, %"),
    ),
    primary_metric="top1",
    compute_metrics=classification_metrics,
    holdout_strata=class_strata,
)


@hookimpl
def register_tasks(register):
    register(CLASSIFICATION)
