"""The monocular depth task: BTS's metrics (:mod:`gaia_bench.tasks.types.lib.metrics_depth`), per image then
averaged. ``rmse`` (metres, lower is better) is primary; the error metrics are in their own units
(metres, ratios, SILog ×100 as BTS prints it); ``d1``/``d2``/``d3`` are reported in percent.
Its head is the log-depth FPN decoder of :mod:`gaia_bench.tasks.types.lib.dense_decoder`.

The prediction store keeps every image's terms (a predicted map is reduced to them first, as
``evaluate`` does), so a bootstrap resample is a weighted mean of them. BTS reports nine terms and
all nine are metrics here, so the task has no extra metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, MetricInfo, Sample, Samples, TaskSpec
from gaia_bench.tasks.types.lib.dense_decoder import make_depth_head

PLUGIN_ORDER = 730

PERCENT_METRICS = ("d1", "d2", "d3")


def depth_terms(gt: np.ndarray, pred: np.ndarray, kind: str = "kitti") -> dict[str, float] | None:
    """One image's metric terms: its errors over its counted pixels (None when it has none), with
    the dataset's convention: KITTI = Garg crop, 80 m cap; NYU = Eigen crop, 10 m cap."""
    from gaia_bench.tasks.types.lib.metrics_depth import image_errors

    return image_errors(gt, pred, kind)  # type: ignore[arg-type]


def evaluate(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """The mean over images of their metric terms. A prediction is an image's terms
    (:func:`depth_terms`) or its predicted depths (metres, the ground truth's shape, scored here)."""
    from gaia_bench.tasks.types.lib.metrics_depth import mean_errors

    metrics = mean_errors(image_terms(predictions, test))
    return {name: value * 100.0 if name in PERCENT_METRICS else value for name, value in metrics.items()}


def image_terms(predictions: Sequence[Any], test: Samples) -> list[dict[str, float] | None]:
    """Each image's terms: a prediction that is a map is scored against its ground truth."""
    from gaia_bench.tasks.types.lib.dense_decoder import read_target

    if len(predictions) != len(test):
        raise ValueError(f"{len(predictions)} predictions for {len(test)} test samples")
    return [depth_terms(read_target(s.target), p, getattr(s.target, "kind", "kitti")) if isinstance(p, np.ndarray)
            else p for p, s in zip(predictions, test.samples)]


def encode(predictions: Sequence[Any], test: Samples) -> dict[str, np.ndarray]:
    """The terms of every image (n, terms) in float64, which images have any (``counted``; an
    image without a counted pixel has none), and the terms' names."""
    from gaia_bench.tasks.types.lib.metrics_depth import METRICS

    rows = image_terms(predictions, test)
    return {"terms": np.asarray([[row[name] for name in METRICS] if row is not None else [np.nan] * len(METRICS)
                                 for row in rows], dtype=np.float64).reshape(-1, len(METRICS)),
            "counted": np.asarray([row is not None for row in rows], dtype=bool),
            "term_names": np.asarray(METRICS)}


def decode(arrays: Mapping[str, np.ndarray], keys: Sequence[str], classes: Sequence[str]) -> tuple[list, Samples]:
    """The per-image terms (None for an image without a counted pixel); the test samples need no target."""
    names = [str(n) for n in arrays["term_names"]]
    predictions = [dict(zip(names, (float(v) for v in row))) if counted else None
                   for row, counted in zip(arrays["terms"], arrays["counted"])]
    return predictions, Samples([Sample(k, Path(k), None) for k in keys], list(classes))


def resample(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``evaluate`` on every resample at once: per term, the mean over the drawn counted images,
    weighted by how often each is drawn (NaN for a resample without a counted image)."""
    arrays = encode(predictions, test)
    counted = arrays["counted"].astype(np.float64)
    terms = np.where(arrays["counted"][:, None], arrays["terms"], 0.0)
    weights = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ terms) / (weights @ counted)[:, None]
    return {str(name): means[:, k] * (100.0 if name in PERCENT_METRICS else 1.0)
            for k, name in enumerate(arrays["term_names"])}


def train_head(ctx, train_backbone: bool):
    """The decoder trainer of :mod:`gaia_bench.plugins.adaptations.lib.dense_probe` (imported when a job runs)."""
    from gaia_bench.plugins.adaptations.lib.dense_probe import run_dense

    return run_dense(ctx, train_backbone=train_backbone)


DEPTH = TaskSpec(
    name="depth",
    description="monocular depth estimation (metres; sparse or dense ground truth, 0 = invalid)",
    metrics=(
        MetricInfo("rmse", False, "root mean squared error, metres (per image, averaged)"),
        MetricInfo("abs_rel", False, "mean |gt - pred| / gt"),
        MetricInfo("sq_rel", False, "mean (gt - pred)^2 / gt"),
        MetricInfo("rmse_log", False, "root mean squared log error"),
        MetricInfo("log10", False, "mean |log10 pred - log10 gt|"),
        MetricInfo("silog", False, "scale-invariant log error x100 (BTS)"),
        MetricInfo("d1", True, "share of pixels with max(gt/pred, pred/gt) < 1.25, %"),
        MetricInfo("d2", True, "share of pixels with ratio < 1.25^2, %"),
        MetricInfo("d3", True, "share of pixels with ratio < 1.25^3, %"),
    ),
    primary_metric="rmse",
    evaluate=evaluate,
    make_head=make_depth_head,
    train_head=train_head,
    encode=encode,
    decode=decode,
    resample=resample,
)


@hookimpl
def register_tasks(register):
    register(DEPTH)
