"""The monocular depth task: BTS's metrics (:mod:`gaia_bench.tasks.metrics_depth`), per image then
averaged. ``rmse`` (metres, lower is better) is primary; the error metrics are in their own units
(metres, ratios, SILog ×100 as BTS prints it); ``d1``/``d2``/``d3`` are reported in percent."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import MetricInfo, TaskSpec

PERCENT_METRICS = ("d1", "d2", "d3")


def compute_depth_metrics(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray], dataset: str = "kitti") -> dict[str, float]:
    """Metrics of predicted depths (metres, same shapes as ``gts``; ground truth 0 = invalid) with
    the dataset's convention: KITTI = Garg crop, 80 m cap; NYU = Eigen crop, 10 m cap."""
    from gaia_bench.tasks.metrics_depth import depth_metrics

    metrics = depth_metrics(gts, preds, dataset)  # type: ignore[arg-type]
    return {name: value * 100.0 if name in PERCENT_METRICS else value for name, value in metrics.items()}


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
    compute_metrics=compute_depth_metrics,
)


@hookimpl
def register_tasks(register):
    register(DEPTH)
