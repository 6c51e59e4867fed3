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
:mod:`gaia_bench.tasks.types.lib.faster_rcnn`; a hold-out is stratified by each image's smallest class.

The prediction store keeps every image's detections and its target with every field a metric
reads (difficult flags, WIDER FACE keep masks, CityPersons visibility and ignore flags), so a
rescore rebuilds the same target classes; bootstrap resamples reuse one matching of the test set
(:mod:`gaia_bench.tasks.types.lib.detection_resample`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, MetricInfo, Sample, Samples, TaskSpec
from gaia_bench.tasks.types.lib.faster_rcnn import make_head

PLUGIN_ORDER = 710


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


def _exact_float32(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 when that loses nothing (detector outputs, pixel boxes), else as they are."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow.astype(values.dtype), values, equal_nan=True) else values


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))).astype(np.int64)


def _pieces(arrays: Mapping[str, np.ndarray], name: str, offsets: np.ndarray) -> list[np.ndarray]:
    return [arrays[name][offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def encode(predictions: Sequence[Any], test: Samples) -> dict[str, np.ndarray]:
    """Detections (boxes, scores, labels) and targets (boxes, labels, difficult flags, image size
    and the family's own fields) of all images as flat arrays, with per-image offsets."""
    from gaia_bench.tasks.types.lib.metrics_detection import ImageDetections

    targets = [s.target for s in test.samples]
    family = _family(targets)
    dets = [ImageDetections(d.boxes, d.scores, d.labels) for d in predictions]
    gt_boxes = [np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4) for t in targets]
    arrays = {
        "family": np.asarray(family),
        "det_offsets": _offsets([len(d.scores) for d in dets]),
        "det_boxes": _exact_float32(np.concatenate([d.boxes for d in dets] + [np.zeros((0, 4))])),
        "det_scores": _exact_float32(np.concatenate([d.scores for d in dets] + [np.zeros(0)])),
        "det_labels": np.concatenate([d.labels for d in dets] + [np.zeros(0, dtype=np.int64)]),
        "gt_offsets": _offsets([len(b) for b in gt_boxes]),
        "gt_boxes": _exact_float32(np.concatenate(gt_boxes + [np.zeros((0, 4))])),
        "gt_labels": np.asarray([label for t in targets for label in t.labels], dtype=np.int64),
        "gt_difficult": np.asarray([flag for t in targets for flag in t.difficult], dtype=bool),
        "gt_size": np.asarray([(t.width, t.height) for t in targets], dtype=np.int64).reshape(-1, 2),
    }
    if family == "widerface":
        arrays.update({f"gt_{name}": np.asarray([f for t in targets for f in getattr(t, name)], dtype=bool)
                       for name in ("easy", "medium", "hard")})
    elif family == "citypersons":
        arrays["gt_visibility"] = _exact_float32(np.asarray([v for t in targets for v in t.visibility], dtype=np.float64))
        arrays["gt_ignore"] = np.asarray([f for t in targets for f in t.ignore], dtype=bool)
    return arrays


def decode(arrays: Mapping[str, np.ndarray], keys: Sequence[str], classes: Sequence[str]) -> tuple[list, Samples]:
    """:func:`encode`'s detections as :class:`ImageDetections` and its targets as the same target
    classes (:class:`DetectionTarget`, :class:`FaceTarget`, :class:`PedestrianTarget`)."""
    from gaia_bench.tasks.datasets.lib.dense_targets import DetectionTarget, FaceTarget, PedestrianTarget
    from gaia_bench.tasks.types.lib.metrics_detection import ImageDetections

    det, gt = arrays["det_offsets"], arrays["gt_offsets"]
    predictions = [ImageDetections(b, s, l) for b, s, l in zip(_pieces(arrays, "det_boxes", det),
                                                               _pieces(arrays, "det_scores", det),
                                                               _pieces(arrays, "det_labels", det))]
    family = str(arrays["family"])
    fields = {"boxes": "gt_boxes", "labels": "gt_labels", "difficult": "gt_difficult"}
    kind, extra = DetectionTarget, ()
    if family == "widerface":
        kind, extra = FaceTarget, ("easy", "medium", "hard")
    elif family == "citypersons":
        kind, extra = PedestrianTarget, ("visibility", "ignore")
    fields.update({name: f"gt_{name}" for name in extra})
    per_image = {name: _pieces(arrays, stored, gt) for name, stored in fields.items()}
    samples = []
    for i, key in enumerate(keys):
        values = {name: tuple(tuple(row) for row in pieces[i].tolist()) if name == "boxes"
                  else tuple(pieces[i].tolist()) for name, pieces in per_image.items()}
        width, height = (int(v) for v in arrays["gt_size"][i])
        samples.append(Sample(key, Path(key), kind(width=width, height=height, **values)))
    return predictions, Samples(samples, list(classes))


def resample(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``evaluate`` on every resample (rows of ``counts``), from one matching of the test set
    (:mod:`gaia_bench.tasks.types.lib.detection_resample`)."""
    from gaia_bench.tasks.types.lib import detection_resample as fast

    targets = [s.target for s in test.samples]
    family = _family(targets)
    if family == "widerface":
        return fast.widerface_resample(predictions, targets, counts)
    if family == "citypersons":
        return fast.citypersons_resample(predictions, targets, counts)
    return fast.voc_resample(predictions, targets, list(test.classes), counts)


def per_class(predictions: Sequence[Any], test: Samples, dataset: DatasetSpec) -> list[float]:
    """VOC: each class's AP in the primary form (11-point unless the dataset's primary metric is
    ``mAP_area``), NaN for a class without a non-difficult object in the test set. WIDER FACE and
    CityPersons have one class: the dataset's primary metric."""
    metrics = evaluate(predictions, test, dataset)
    names = list(test.classes)
    primary = getattr(dataset, "primary_metric", None)
    family = _family([s.target for s in test.samples])
    if family == "voc":
        form = "area" if primary == "mAP_area" else "voc07_11pt"
        return [metrics.get(f"ap_{form}/{name}", float("nan")) for name in names]
    value = metrics[primary or ("ap_easy" if family == "widerface" else "mr")]
    return [value] + [float("nan")] * (len(names) - 1)


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
    encode=encode,
    decode=decode,
    resample=resample,
    per_class=per_class,
)


@hookimpl
def register_tasks(register):
    register(DETECTION)
