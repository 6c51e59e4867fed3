"""The classification task: top-1 accuracy and mean per-class accuracy (GV-B's two metrics), its
head (a linear layer on the backbone's pooled features, cross-entropy with optional label
smoothing), and its hold-out rule (per class)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, HeadInput, MetricInfo, Sample, Samples, TaskSpec

PLUGIN_ORDER = 700


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


def evaluate(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """:func:`classification_metrics` of one predicted class id per test sample."""
    if len(predictions) != len(test):
        raise ValueError(f"{len(predictions)} predictions for {len(test)} test samples")
    num_classes = len(test.classes) or int(dataset.num_classes or 0)
    return classification_metrics(test.labels(), np.asarray(predictions, dtype=np.int64), num_classes)


def holdout_strata(subset: Samples) -> list[int]:
    """Per class: the hold-out takes its share of every class that can spare a sample."""
    return subset.labels()


class LinearHead:
    """``nn.Linear(features, classes)`` on pooled features; cross-entropy with the job's
    ``label_smoothing`` (0 when it has none); predictions are class ids."""

    def __init__(self, inputs: HeadInput, num_classes: int, label_smoothing: float, seed: int) -> None:
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = nn.Linear(inputs.channels[0], num_classes)
        self.label_smoothing = label_smoothing

    def target(self, sample: Sample, mirrored: bool = False) -> int:
        return int(sample.target)

    def loss(self, inputs, targets: Sequence[int]):
        import torch
        import torch.nn.functional as F

        labels = torch.as_tensor(list(targets), dtype=torch.int64, device=inputs.device)
        return F.cross_entropy(self.module(inputs), labels, label_smoothing=self.label_smoothing)

    def predict(self, inputs, samples: Sequence[Sample]) -> list[int]:
        import torch

        self.module.eval()
        with torch.no_grad():
            return [int(c) for c in self.module(inputs).argmax(dim=1).cpu()]

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear", "in_features": self.module.in_features, "classes": self.module.out_features,
                "loss": f"cross-entropy (label smoothing {self.label_smoothing:g})"}


def make_head(inputs: HeadInput, dataset: DatasetSpec, fit: Samples, hyperparams: Mapping[str, Any],
              seed: int) -> LinearHead:
    num_classes = len(fit.classes) or int(dataset.num_classes or 0)
    return LinearHead(inputs, num_classes, float(hyperparams.get("label_smoothing", 0.0)), seed)


def train_head(ctx, train_backbone: bool):
    """Frozen backbone: the logistic-regression probe on cached features
    (:mod:`gaia_bench.plugins.adaptations.linear_probe`); trainable: the fine-tune loop
    (:mod:`gaia_bench.plugins.adaptations.lib.finetune_classification`). Imported when a job runs."""
    if train_backbone:
        from gaia_bench.plugins.adaptations.lib.finetune_classification import run_classification_finetune

        return run_classification_finetune(ctx)
    from gaia_bench.plugins.adaptations.linear_probe import run_classification

    return run_classification(ctx)


CLASSIFICATION = TaskSpec(
    name="classification",
    description="single-label image classification",
    metrics=(
        MetricInfo("top1", True, "top-1 accuracy, %"),
        MetricInfo("mean_per_class_acc", True, "mean over classes of per-class recall, %"),
    ),
    primary_metric="top1",
    evaluate=evaluate,
    holdout_strata=holdout_strata,
    make_head=make_head,
    train_head=train_head,
)


@hookimpl
def register_tasks(register):
    register(CLASSIFICATION)
