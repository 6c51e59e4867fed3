"""The object detection task: PASCAL VOC box AP at IoU 0.5 with difficult objects ignored
(:mod:`gaia_bench.tasks.metrics_detection`, the devkit's rules), in percent.

Both AP forms are reported under explicit names because papers mix them up: ``mAP_voc07_11pt``
(VOC2007's 11-point interpolation; GV-B's VOC07 number, hence primary) and ``mAP_area`` (VOC2010+:
area under the precision envelope). Per-class APs are kept as ``ap_voc07_11pt/<class>`` and
``ap_area/<class>``."""

from __future__ import annotations

from typing import Sequence

from gaia_bench import hookimpl
from gaia_bench.api import MetricInfo, TaskSpec


def compute_detection_metrics(detections: Sequence, targets: Sequence, class_names: Sequence[str]) -> dict[str, float]:
    """VOC metrics in percent from one :class:`ImageDetections` per test image and its
    :class:`DetectionTarget` (same order); labels index ``class_names``."""
    from gaia_bench.tasks.metrics_detection import voc_detection_metrics

    metrics = voc_detection_metrics(detections, targets, len(class_names), class_names)
    return {name: 100.0 * value for name, value in metrics.items()}


DETECTION = TaskSpec(
    name="detection",
    description="object detection (boxes and classes; VOC AP at IoU 0.5, difficult objects ignored)",
    metrics=(
        MetricInfo("mAP_voc07_11pt", True, "mean over classes of VOC2007 11-point interpolated AP @ IoU 0.5, %"),
        MetricInfo("mAP_area", True, "mean over classes of VOC2010+ AP (area under the precision envelope) @ IoU 0.5, %"),
    ),
    primary_metric="mAP_voc07_11pt",
    compute_metrics=compute_detection_metrics,
)


@hookimpl
def register_tasks(register):
    register(DETECTION)
