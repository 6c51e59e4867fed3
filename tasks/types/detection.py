"""The object detection task. Which official metric applies follows from the ground truth the
dataset's reader fills in (:mod:`gaia_bench.tasks.datasets.lib.dense_targets`), so a dataset declares its metric
family by its target type and the adaptations stay format-agnostic:

* :class:`DetectionTarget` — PASCAL VOC box AP at IoU 0.5 with difficult objects ignored
  (:mod:`gaia_bench.tasks.types.lib.metrics_detection`, the devkit's rules). Both AP forms are reported under
  explicit names because papers mix them up: ``mAP_voc07_11pt`` (VOC2007's 11-point interpolation;
  GV-B's VOC07 number, hence primary) and ``mAP_area`` (VOC2010+: area under the precision
  envelope); ``mAP`` repeats the 11-point value under the name mmdet and GV-B print for VOC2007
  test (the 11 recall thresholds are mmdet's floating-point ``k * 0.1``, so the values match). Per-class APs are kept as ``ap_voc07_11pt/<class>`` and ``ap_area/<class>``.
* :class:`FaceTarget` — WIDER FACE's ``ap_easy`` / ``ap_medium`` / ``ap_hard``
  (:mod:`gaia_bench.tasks.types.lib.metrics_widerface`, the official ``eval_tools`` rules).
* :class:`PedestrianTarget` — CityPersons' log-average miss rate MR⁻² per setup
  (:mod:`gaia_bench.tasks.types.lib.metrics_citypersons`); ``mr`` is the Reasonable setup, GV-B's first number.

All values are in percent. The task's head is the Faster R-CNN + FPN of
:mod:`gaia_bench.tasks.types.lib.faster_rcnn`; a hold-out is stratified by each image's smallest class."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, MetricInfo, Samples, TaskSpec
from gaia_bench.tasks.types.lib.faster_rcnn import make_head


def _family(targets: Sequence) -> str:
    from gaia_bench.tasks.datasets.lib.dense_targets import FaceTarget, PedestrianTarget

    kinds = {"widerface" if isinstance(t, FaceTarget) else "citypersons" if isinstance(t, PedestrianTarget)
             else "voc" for t in targets}
    if len(kinds) > 1:
        raise ValueError(f"targets mix metric families {sorted(kinds)}: one dataset's split has one kind")
    return kinds.pop() if kinds else "voc"


def _single_class(detections: Sequence) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes and scores of class 0 (the one class of WIDER FACE and CityPersons)."""
    boxes = [d.boxes[d.labels == 0] for d in detections]
    scores = [d.scores[d.labels == 0] for d in detections]
    return boxes, scores


def widerface_metrics(detections: Sequence, targets: Sequence) -> dict[str, float]:
    from gaia_bench.tasks.types.lib.metrics_widerface import widerface_metrics as official

    boxes, scores = _single_class(detections)
    gts = [np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4) for t in targets]
    keep = {name: [np.asarray(getattr(t, name), dtype=bool) for t in targets] for name in ("easy", "medium", "hard")}
    return official(boxes, scores, gts, keep)


def citypersons_metrics(detections: Sequence, targets: Sequence) -> dict[str, float]:
    from gaia_bench.tasks.types.lib.metrics_citypersons import citypersons_metrics as official

    boxes, scores = _single_class(detections)
    gts = [np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4) for t in targets]
    metrics = official(boxes, scores, gts, [np.asarray(t.visibility) for t in targets],
                       [np.asarray(t.ignore, dtype=bool) for t in targets])
    return {"mr": metrics["mr_Reasonable"], **metrics}


def detection_metrics(detections: Sequence, targets: Sequence, class_names: Sequence[str]) -> dict[str, float]:
    """The targets' metric family in percent, from one :class:`ImageDetections` per test image and
    its target (same order); labels index ``class_names``."""
    family = _family(targets)
    if family == "widerface":
        metrics = widerface_metrics(detections, targets)
    elif family == "citypersons":
        metrics = citypersons_metrics(detections, targets)
    else:
        from gaia_bench.tasks.types.lib.metrics_detection import voc_detection_metrics

        metrics = voc_detection_metrics(detections, targets, len(class_names), class_names)
        metrics["mAP"] = metrics["mAP_voc07_11pt"]
    return {name: 100.0 * value for name, value in metrics.items()}


def evaluate(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> dict[str, float]:
    """:func:`detection_metrics` of one :class:`ImageDetections` per test image."""
    if len(predictions) != len(test):
        raise ValueError(f"{len(predictions)} predictions for {len(test)} test samples")
    return detection_metrics(predictions, [s.target for s in test.samples], list(test.classes))


def holdout_strata(subset: Samples) -> list[int]:
    """Each image's smallest class (-1 for an image without objects): any stable key works, and
    this one keeps every class that can spare an image in the fit part."""
    return [min(s.target.labels) if s.target.labels else -1 for s in subset.samples]


def train_head(ctx, train_backbone: bool):
    """The detector trainer of :mod:`gaia_bench.plugins.adaptations.lib.detection_head` (imported when a job runs)."""
    from gaia_bench.plugins.adaptations.lib.detection_head import run_detection

    return run_detection(ctx, train_backbone=train_backbone)


DETECTION = TaskSpec(
    name="detection",
    description="object detection (boxes and classes; VOC AP at IoU 0.5, WIDER FACE AP, CityPersons MR^-2)",
    metrics=(
        MetricInfo("mAP_voc07_11pt", True, "mean over classes of VOC2007 11-point interpolated AP @ IoU 0.5 (mmdet's thresholds), %"),
        MetricInfo("mAP_area", True, "mean over classes of VOC2010+ AP (area under the precision envelope) @ IoU 0.5, %"),
        MetricInfo("mAP", True, "VOC mAP as mmdet and GV-B report it for VOC2007 test (= mAP_voc07_11pt), %"),
        MetricInfo("ap_easy", True, "WIDER FACE AP on the official easy setting (eval_tools rules), %"),
        MetricInfo("ap_medium", True, "WIDER FACE AP on the official medium setting, %"),
        MetricInfo("ap_hard", True, "WIDER FACE AP on the official hard setting, %"),
        MetricInfo("mr", False, "CityPersons log-average miss rate MR^-2, Reasonable setup (GV-B's first number), %"),
        MetricInfo("mr_Reasonable", False, "CityPersons MR^-2, height >= 50 px, visibility >= 0.65, %"),
        MetricInfo("mr_Reasonable_small", False, "CityPersons MR^-2, height 50-75 px, visibility >= 0.65, %"),
        MetricInfo("mr_Reasonable_occ", False, "CityPersons MR^-2, heavy occlusion: height >= 50 px, visibility 0.2-0.65, %"),
        MetricInfo("mr_All", False, "CityPersons MR^-2, height >= 20 px, visibility >= 0.2, %"),
    ),
    primary_metric="mAP_voc07_11pt",
    evaluate=evaluate,
    holdout_strata=holdout_strata,
    make_head=make_head,
    train_head=train_head,
)


@hookimpl
def register_tasks(register):
    register(DETECTION)
