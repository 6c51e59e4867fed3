"""The classification task: top-1 accuracy and mean per-class accuracy (GV-B's two metrics), its
head (a linear layer on the backbone's pooled features, cross-entropy with optional label
smoothing), and its hold-out rule (per class)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, HeadInput, MetricInfo, Sample, Samples, TaskSpec
from gaia_bench.errors import DataError
from gaia_bench.tasks.types.lib import calibration

PLUGIN_ORDER = 700


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predictions."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict[str, float]:
    """``top1``: share of correct predictions; ``mean_per_class_acc``: the mean over classes present
    in the test set of their recall (GV-B's ``per_class_acc``: diag / row sums), both in percent.

    Deliberate difference: GV-B divides by every row sum, so a class absent from the test set
    gives 0/0 = NaN and its mean is NaN; here such a class is left out of the mean (a test set
    without some class still has a mean per-class accuracy, over the classes it has)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    total = cm.sum()
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.diag(cm)[present] / support[present]
    return {
        "top1": float(100.0 * np.trace(cm) / total) if total else 0.0,
        "mean_per_class_acc": float(100.0 * recall.mean()) if present.any() else 0.0,
    }


def predicted_classes(predictions: Sequence[Any]) -> np.ndarray:
    """The class of each prediction: a class id, or the argmax of a score vector (logits or
    probabilities; what the prediction store keeps for top-5 and calibration)."""
    if len(predictions) and np.ndim(predictions[0]) == 1:
        return np.asarray([int(np.argmax(p)) for p in predictions], dtype=np.int64)
    return np.asarray(predictions, dtype=np.int64).reshape(-1)


def evaluate(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """:func:`classification_metrics` of one prediction (class id or score vector) per test sample."""
    if len(predictions) != len(test):
        raise ValueError(f"{len(predictions)} predictions for {len(test)} test samples")
    num_classes = len(test.classes) or int(dataset.num_classes or 0)
    return classification_metrics(test.labels(), predicted_classes(predictions), num_classes)


FULL_SCORES_UP_TO = 100  # classes: up to this many every score is kept, beyond it the top 5


def encode(predictions: Sequence[Any], test: Samples) -> dict[str, np.ndarray]:
    """Predicted class, target and (when the adaptation gave scores) every score for at most 100
    classes, else the top-5 classes and their softmax probabilities. Scores keep their dtype, so the
    stored argmax is the scored one."""
    arrays = {"labels": predicted_classes(predictions), "targets": np.asarray(test.labels(), dtype=np.int64)}
    if len(predictions) and np.ndim(predictions[0]) == 1:
        scores = np.stack([np.asarray(p) for p in predictions])
        if scores.shape[1] <= FULL_SCORES_UP_TO:
            arrays["scores"] = scores
        else:
            top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            arrays["top5_labels"] = top
            arrays["top5_probs"] = np.take_along_axis(shifted / shifted.sum(axis=1, keepdims=True), top, 1).astype(np.float32)
    return arrays


def decode(arrays: Mapping[str, np.ndarray], keys: Sequence[str], classes: Sequence[str]) -> tuple[list, Samples]:
    """Score vectors when every score was kept, else class ids; the test split's keys and labels."""
    predictions = list(arrays["scores"]) if "scores" in arrays else [int(c) for c in arrays["labels"]]
    test = Samples([Sample(k, Path(k), int(t)) for k, t in zip(keys, arrays["targets"])], list(classes))
    return predictions, test


def _class_sums(counts: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per resample and class, the sum of ``weights`` over the drawn items of that class (B × classes
    present), without a dense one-hot matrix (ImageNet: 50,000 items × 1,000 classes)."""
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    return np.add.reduceat(counts[:, order] * weights[order], starts, axis=1)


def resample(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``evaluate`` on every resample at once: top-1 from weighted hits, mean per-class accuracy
    from weighted per-class hits over the classes drawn (as ``evaluate`` of the resampled test set)."""
    labels = np.asarray(test.labels(), dtype=np.int64)
    correct = (predicted_classes(predictions) == labels).astype(np.float64)
    drawn = counts.sum(axis=1)
    support = _class_sums(counts, labels, np.ones(len(labels)))
    hits = _class_sums(counts, labels, correct)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        return {"top1": 100.0 * (counts @ correct) / drawn, "mean_per_class_acc": 100.0 * np.nanmean(recall, axis=1)}


def per_class(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> list[float]:
    """Each class's recall in percent (NaN for a class without test items)."""
    num_classes = len(test.classes) or int(dataset.num_classes or 0)
    cm = confusion_matrix(test.labels(), predicted_classes(predictions), num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (100.0 * np.diag(cm) / cm.sum(axis=1)).tolist()


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


def _scores(predictions: Sequence[Any], metric: str) -> np.ndarray:
    if not len(predictions) or np.ndim(predictions[0]) != 1:
        raise DataError(f"{metric} needs every class's score, and these predictions keep only the class",
                        "rerun the job (adaptations that give scores keep all of them for up to 100 classes)")
    return np.stack([np.asarray(p, dtype=np.float64) for p in predictions])


def top5(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """Share of test items whose class is among the 5 highest scores, %."""
    ranked = np.argsort(-_scores(predictions, "top5"), axis=1, kind="stable")[:, :5]
    return {"top5": float(100.0 * (ranked == np.asarray(test.labels())[:, None]).any(axis=1).mean())}


def worst_class_acc(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """The lowest recall of a class with test items, %: what a long tail hides in an average."""
    return {"worst_class_acc": float(np.nanmin(per_class(predictions, test, dataset)))}


def _calibration_scores(predictions: Sequence[Any], metric: str, details: Mapping[str, Any] | None) -> np.ndarray:
    """The logits of a record whose scores are a softmax model's; a record that says its scores
    are something else (k-NN votes, ridge outputs: ``details.calibration``) is refused with why."""
    block = (details or {}).get("calibration") or {}
    if block.get("scores", "softmax logits") != "softmax logits":
        raise DataError(f"{metric}: {block['scores']}", "calibration needs a probe with softmax scores "
                        "(linear-probe, finetune)")
    return _scores(predictions, metric)


def ece(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
        details: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Expected calibration error, %: 15 equal-width confidence bins of the softmax maximum, the
    mean over items of |accuracy - confidence| of their bin (Guo et al. 2017; :mod:`.lib.calibration`)."""
    return {"ece": calibration.ece(_calibration_scores(predictions, "ece", details), np.asarray(test.labels()))}


def nll(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
        details: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Mean negative log-likelihood of the true class under the softmax, nats."""
    return {"nll": calibration.nll(_calibration_scores(predictions, "nll", details), np.asarray(test.labels()))}


def brier(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
          details: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Multi-class Brier score of the softmax probabilities, 0..2."""
    return {"brier": calibration.brier(_calibration_scores(predictions, "brier", details), np.asarray(test.labels()))}


def _scaled(metric: str):
    def scaled(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
               details: Mapping[str, Any] | None = None) -> dict[str, float]:
        logits = _calibration_scores(predictions, f"{metric}_ts", details)
        values = calibration.scores(logits, np.asarray(test.labels()), calibration.temperature_of(details), "_ts")
        return {f"{metric}_ts": values[f"{metric}_ts"]}

    scaled.__doc__ = (f"``{metric}`` after temperature scaling with the temperature the job fitted on its held-out "
                      "part (the record's ``details.calibration``)")
    return scaled


CLASSIFICATION = TaskSpec(
    name="classification",
    description="single-label image classification",
    metrics=(
        MetricInfo("top1", True, "top-1 accuracy, %"),
        MetricInfo("mean_per_class_acc", True, "mean over classes present in the test set of per-class recall, %"),
    ),
    primary_metric="top1",
    evaluate=evaluate,
    holdout_strata=holdout_strata,
    make_head=make_head,
    train_head=train_head,
    encode=encode,
    decode=decode,
    resample=resample,
    per_class=per_class,
    # Calibration (:mod:`.lib.calibration`): jobs with softmax scores store all six by default; these
    # add them to older results (``*_ts`` needs the temperature a job fitted on its held-out part).
    extra_metrics={"top5": top5, "worst_class_acc": worst_class_acc, "ece": ece, "nll": nll, "brier": brier,
                   **{f"{m}_ts": _scaled(m) for m in calibration.METRICS}},
)


@hookimpl
def register_tasks(register):
    register(CLASSIFICATION)
