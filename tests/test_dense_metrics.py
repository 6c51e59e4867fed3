"""The dense-task metrics against their official definitions: hand-worked small cases (the
arithmetic is in the comments), the official quirks we keep, and cross-checks against pycocotools,
torchmetrics and brute-force re-implementations written here in a different style."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from gaia_bench.tasks.datasets.lib.dense_targets import DetectionTarget
from gaia_bench.tasks.types.lib.metrics_citypersons import (
    FPPI_POINTS,
    SETUPS,
    citypersons_metrics,
    citypersons_mr,
    miss_rates_at_fppi,
)
from gaia_bench.tasks.types.lib.metrics_depth import depth_errors, depth_metrics, eigen_crop_mask, garg_crop_mask
from gaia_bench.tasks.types.lib.metrics_detection import (
    RECALL_POINTS_11,
    ImageDetections,
    ap_area,
    ap_voc07_11pt,
    box_iou,
    match_class,
    voc_detection_metrics,
)
from gaia_bench.tasks.types.lib.metrics_segmentation import (
    confusion_matrix,
    dataset_confusion,
    per_class_iou,
    segmentation_metrics,
)
from gaia_bench.tasks.types.lib.metrics_widerface import (
    keep_from_indices,
    nested_keep_masks,
    normalize_scores,
    widerface_ap,
    widerface_metrics,
)


# ============================================================================ VOC detection
def _target(boxes, labels, difficult=None) -> DetectionTarget:
    difficult = difficult if difficult is not None else [False] * len(boxes)
    return DetectionTarget(tuple(tuple(map(float, b)) for b in boxes), tuple(labels), tuple(difficult), 100, 100)


def _dets(boxes, scores, labels) -> ImageDetections:
    return ImageDetections(np.array(boxes, dtype=float).reshape(-1, 4), np.array(scores, dtype=float),
                           np.array(labels, dtype=int))


def _ten_apart(n: int) -> list[tuple[int, int, int, int]]:
    """``n`` disjoint 8 x 8 boxes on a row (x = 0, 10, 20, ...)."""
    return [(10 * i, 0, 10 * i + 8, 8) for i in range(n)]


def test_perfect_detections_give_ap_one():
    targets = [_target([(0, 0, 10, 10), (20, 20, 40, 50)], [0, 1]), _target([(5, 5, 30, 30)], [1])]
    dets = [_dets([(0, 0, 10, 10), (20, 20, 40, 50)], [0.9, 0.8], [0, 1]), _dets([(5, 5, 30, 30)], [0.7], [1])]
    out = voc_detection_metrics(dets, targets, 2)
    assert out["mAP_voc07_11pt"] == pytest.approx(1.0) and out["mAP_area"] == pytest.approx(1.0)
    assert out["ap_area/0"] == out["ap_area/1"] == pytest.approx(1.0)


def test_no_detections_give_ap_zero():
    targets = [_target([(0, 0, 10, 10)], [0]), _target([(5, 5, 30, 30)], [1])]
    out = voc_detection_metrics([ImageDetections.empty(), ImageDetections.empty()], targets, 2)
    assert out["mAP_voc07_11pt"] == 0.0 and out["mAP_area"] == 0.0


def test_second_detection_of_the_same_object_is_a_false_positive():
    targets = [_target([(0, 0, 10, 10), (20, 0, 30, 10)], [0, 0])]
    dets = [_dets([(0, 0, 10, 10), (0, 0, 10, 10), (20, 0, 30, 10)], [0.9, 0.8, 0.7], [0, 0, 0])]
    matches = match_class(dets, targets, 0)
    assert matches.tp.tolist() == [True, False, True] and matches.fp.tolist() == [False, True, False]
    # recall .5 .5 1, precision 1 .5 2/3. Area: .5*1 + .5*(2/3) = 5/6.
    # 11-point: t = 0..0.5 (6 points) reach precision 1; t = 0.6..1 (5 points) only 2/3 -> (6 + 10/3) / 11 = 28/33.
    out = voc_detection_metrics(dets, targets, 1)
    assert out["ap_area/0"] == pytest.approx(5 / 6)
    assert out["ap_voc07_11pt/0"] == pytest.approx(28 / 33)


def test_detection_goes_to_its_highest_iou_object_even_when_taken():
    # VOC assigns to the max-IoU object; if taken it is a duplicate (FP) although object B is free
    # with IoU 85/115 = 0.74 (COCO-style matching would take B).
    targets = [_target([(0, 0, 10, 10), (2, 0, 12, 10)], [0, 0])]
    dets = [_dets([(0, 0, 10, 10), (0.5, 0, 10.5, 10)], [0.9, 0.8], [0, 0])]
    ious = box_iou(dets[0].boxes[1], targets[0].boxes)[0]
    assert ious == pytest.approx([95 / 105, 85 / 115])
    matches = match_class(dets, targets, 0)
    assert matches.tp.tolist() == [True, False] and matches.fp.tolist() == [False, True]


def test_difficult_objects_are_neither_hits_nor_misses():
    plain = [_target([(0, 0, 10, 10), (50, 50, 60, 60)], [0, 0], [False, True])]
    base = [_dets([(0, 0, 10, 10)], [0.9], [0])]
    # a detection on the difficult object, ranked first: not a TP, not a FP, npos stays 1
    with_difficult_hit = [_dets([(50, 50, 60, 60), (0, 0, 10, 10)], [0.95, 0.9], [0, 0])]
    matches = match_class(with_difficult_hit, plain, 0)
    assert matches.npos == 1 and matches.tp.sum() == 1 and matches.fp.sum() == 0
    assert voc_detection_metrics(with_difficult_hit, plain, 1) == voc_detection_metrics(base, plain, 1)
    assert voc_detection_metrics(base, plain, 1)["mAP_area"] == pytest.approx(1.0)
    # without the difficult flag, missing that object halves recall
    flagless = [_target([(0, 0, 10, 10), (50, 50, 60, 60)], [0, 0])]
    assert voc_detection_metrics(base, flagless, 1)["mAP_area"] == pytest.approx(0.5)


def test_classes_with_only_difficult_objects_are_left_out_of_the_mean():
    targets = [_target([(0, 0, 10, 10), (50, 50, 60, 60)], [0, 1], [False, True])]
    dets = [_dets([(0, 0, 10, 10), (50, 50, 60, 60)], [0.9, 0.8], [0, 1])]
    out = voc_detection_metrics(dets, targets, 2, class_names=["cat", "dog"])
    assert "ap_area/dog" not in out and out["ap_area/cat"] == pytest.approx(1.0)
    assert out["mAP_area"] == pytest.approx(1.0)


def test_eleven_point_and_area_ap_differ_on_a_hand_worked_curve():
    # 3 objects; ranked detections TP, FP, TP, FP -> recall 1/3 1/3 2/3 2/3, precision 1 1/2 2/3 1/2.
    # Area under the envelope: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9.
    # 11-point: t = 0, .1, .2, .3 -> 1 (4 points); t = .4, .5, .6 -> 2/3 (3 points); t >= .7 -> 0:
    # (4 + 2) / 11 = 6/11.
    boxes = _ten_apart(3)
    targets = [_target(boxes, [0, 0, 0])]
    dets = [_dets([boxes[0], (80, 80, 90, 90), boxes[1], (60, 60, 70, 70)], [0.9, 0.8, 0.7, 0.6], [0] * 4)]
    recall, precision = match_class(dets, targets, 0).pr_curve()
    assert recall == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert precision == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2])
    assert ap_area(recall, precision) == pytest.approx(5 / 9)
    assert ap_voc07_11pt(recall, precision) == pytest.approx(6 / 11)


def test_eleven_point_thresholds_are_mmdets_and_py_faster_rcnns():
    # mmdet's eval_map: np.arange(0, 1 + 1e-3, 0.1); py-faster-rcnn's voc_eval: np.arange(0., 1.1, 0.1)
    assert np.array_equal(RECALL_POINTS_11, np.arange(0, 1 + 1e-3, 0.1))
    assert np.array_equal(RECALL_POINTS_11, np.arange(0.0, 1.1, 0.1))
    above = [k for k in range(11) if RECALL_POINTS_11[k] > k / 10]
    assert above == [3, 6, 7] and RECALL_POINTS_11[3] == 0.30000000000000004


def test_eleven_point_ap_does_not_count_a_recall_of_exactly_three_tenths():
    # 10 objects; TP TP TP FP TP -> recall .1 .2 .3 .3 .4, precision 1 1 1 .75 .8.
    # The 4th threshold is 0.30000000000000004 (mmdet's), above the double 0.3 = 3/10, so only the
    # point with recall .4 reaches it: t = 0, .1, .2 -> 1; t = .3+, .4 -> .8; t >= .5 -> 0.
    # (3 * 1 + 2 * 0.8) / 11 = 4.6 / 11; exact tenths would count precision 1 at .3: 4.8 / 11.
    boxes = _ten_apart(10)
    targets = [_target(boxes, [0] * 10)]
    dets = [_dets([boxes[0], boxes[1], boxes[2], (0, 50, 8, 58), boxes[3]], [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5)]
    recall, precision = match_class(dets, targets, 0).pr_curve()
    assert recall[2] == 0.3 and precision[2] == 1.0
    assert ap_voc07_11pt(recall, precision) == pytest.approx(4.6 / 11)
    out = voc_detection_metrics(dets, targets, 1)
    assert out["mAP_voc07_11pt"] == out["ap_voc07_11pt/0"] == pytest.approx(4.6 / 11)


def test_eleven_point_ap_does_not_count_a_recall_of_exactly_six_or_seven_tenths():
    # 5 objects; TP TP TP FP TP -> recall .2 .4 .6 .6 .8, precision 1 1 1 .75 .8.
    # t = 0 ... .5 (6 thresholds) -> 1; t = .6+ and .7+ skip recall 3/5 = 0.6 -> .8; t = .8 -> .8
    # (4/5 is the double 0.8, equal to 8 * 0.1); t = .9, 1 -> 0: (6 + 3 * 0.8) / 11 = 8.4 / 11.
    boxes = _ten_apart(5)
    targets = [_target(boxes, [0] * 5)]
    dets = [_dets([boxes[0], boxes[1], boxes[2], (0, 50, 8, 58), boxes[3]], [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5)]
    recall, precision = match_class(dets, targets, 0).pr_curve()
    assert ap_voc07_11pt(recall, precision) == pytest.approx(8.4 / 11)
    # 10 objects; 7 TPs, a FP, a TP -> recall .1 ... .7 .7 .8, precision 1 (x7), 7/8, 8/9.
    # t = 0 ... .6+ (7 thresholds) -> 1 (recall .7 reaches 0.6000000000000001); t = .7+ skips
    # recall 7/10 -> 8/9; t = .8 -> 8/9; t = .9, 1 -> 0: (7 + 2 * 8/9) / 11.
    boxes = _ten_apart(10)
    targets = [_target(boxes, [0] * 10)]
    dets = [_dets([*boxes[:7], (0, 50, 8, 58), boxes[7]], [0.9 - 0.05 * i for i in range(9)], [0] * 9)]
    recall, precision = match_class(dets, targets, 0).pr_curve()
    assert recall[6] == 0.7 and precision[6] == 1.0
    assert ap_voc07_11pt(recall, precision) == pytest.approx((7 + 16 / 9) / 11)


def test_iou_of_exactly_one_half_is_a_match():
    targets = [_target([(0, 0, 10, 10)], [0])]
    dets = [_dets([(0, 0, 10, 5)], [0.9], [0])]
    assert box_iou(dets[0].boxes, targets[0].boxes)[0, 0] == 0.5
    assert match_class(dets, targets, 0).tp.tolist() == [True]


def test_pixel_offset_reproduces_the_devkit_on_inclusive_coordinates():
    inclusive = np.array([[1, 1, 10, 10], [5, 5, 14, 14]], dtype=float)  # VOC XML: 1-based, inclusive
    continuous = inclusive - np.array([1, 1, 0, 0])  # x1 = xmin - 1, x2 = xmax
    # 6 x 6 overlap of two 10 x 10 boxes: 36 / 164
    assert box_iou(inclusive[:1], inclusive[1:], pixel_offset=1.0)[0, 0] == pytest.approx(36 / 164)
    assert box_iou(continuous[:1], continuous[1:])[0, 0] == pytest.approx(36 / 164)
    assert box_iou(inclusive[:1], inclusive[1:])[0, 0] == pytest.approx(25 / 137)  # no +1: 9 x 9 boxes


def _coco_ap(images, targets, dets, label: int, rec_thrs: np.ndarray) -> float:
    """pycocotools' AP at IoU 0.5 for one class, with the given recall sampling points."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_anns, det_anns = [], []
    for image, (target, det) in enumerate(zip(targets, dets)):
        for box, lab in zip(target.boxes, target.labels):
            x1, y1, x2, y2 = box
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image, "category_id": lab, "iscrowd": 0,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
        for box, score, lab in zip(det.boxes, det.scores, det.labels):
            x1, y1, x2, y2 = box.tolist()
            det_anns.append({"image_id": image, "category_id": int(lab), "score": float(score),
                             "bbox": [x1, y1, x2 - x1, y2 - y1]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i, "width": 100, "height": 100} for i in range(images)],
                      "annotations": gt_anns, "categories": [{"id": c} for c in range(3)]}
        gt.createIndex()
        dt = gt.loadRes(det_anns)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds = [label]
        ev.params.iouThrs = np.array([0.5])
        ev.params.recThrs = rec_thrs
        ev.params.maxDets = [100]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    return float(ev.eval["precision"][0, :, 0, 0, 0].mean())


def test_both_ap_variants_match_pycocotools_sampled_at_the_right_recalls():
    # With disjoint objects no detection reaches IoU 0.5 with two of them, so VOC's and COCO's
    # matching agree. COCO's interpolated precision sampled at recall k/10 is the 11-point AP;
    # sampled at every reachable recall k/npos it is the area under the envelope.
    rng = np.random.default_rng(7)
    targets, dets = [], []
    for _ in range(12):
        cells = rng.choice(16, size=int(rng.integers(1, 6)), replace=False)
        boxes, labels = [], []
        for cell in cells:
            x0, y0 = 25 * (cell % 4), 25 * (cell // 4)
            w, h = rng.uniform(8, 20, size=2)
            boxes.append((x0 + 2.0, y0 + 2.0, x0 + 2.0 + w, y0 + 2.0 + h))
            labels.append(int(rng.integers(0, 3)))
        det_boxes, det_labels = [], []
        for box, lab in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 3))):  # misses, hits and duplicates
                det_boxes.append(np.array(box) + rng.normal(0, 2.5, size=4))
                det_labels.append(lab if rng.random() < 0.85 else int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(0, 4))):  # clutter
            x, y = rng.uniform(0, 80, size=2)
            det_boxes.append(np.array([x, y, x + rng.uniform(5, 20), y + rng.uniform(5, 20)]))
            det_labels.append(int(rng.integers(0, 3)))
        targets.append(_target(boxes, labels))
        dets.append(_dets(np.array(det_boxes).reshape(-1, 4), rng.random(len(det_boxes)), det_labels))
    checked = 0
    for label in range(3):
        matches = match_class(dets, targets, label)
        if matches.npos == 0:
            continue
        recall, precision = matches.pr_curve()
        assert ap_voc07_11pt(recall, precision) == pytest.approx(
            _coco_ap(len(targets), targets, dets, label, np.arange(0.0, 1.1, 0.1)), rel=1e-9)
        assert ap_area(recall, precision) == pytest.approx(
            _coco_ap(len(targets), targets, dets, label, np.arange(1, matches.npos + 1) / matches.npos), rel=1e-9)
        assert 0.0 < ap_area(recall, precision) < 1.0
        checked += 1
    assert checked == 3


# ============================================================================ WIDER FACE
# Faces of the hand-worked example: E easy (big), M medium, H hard (small); one clutter box.
_E, _M, _H, _CLUTTER = (0, 0, 100, 100), (200, 0, 240, 40), (300, 0, 312, 12), (500, 500, 540, 540)
_FACES = np.array([_E, _M, _H], dtype=float)
_KEEP = {"easy": np.array([True, False, False]), "medium": np.array([True, True, False]),
         "hard": np.array([True, True, True])}


def test_widerface_perfect_and_empty():
    scores = [np.array([0.9, 0.8, 0.7])]
    out = widerface_metrics([_FACES], scores, [_FACES], {k: [v] for k, v in _KEEP.items()})
    assert out == pytest.approx({"ap_easy": 1.0, "ap_medium": 1.0, "ap_hard": 1.0})
    empty = widerface_metrics([np.zeros((0, 4))], [np.zeros(0)], [_FACES], {k: [v] for k, v in _KEEP.items()})
    assert empty == {"ap_easy": 0.0, "ap_medium": 0.0, "ap_hard": 0.0}


def test_widerface_settings_differ_only_by_their_keep_masks():
    # Ranked detections: E (.9), H (.8), clutter (.7), M (.6); normalised 1, 2/3, 1/3, 0.
    # easy   (keeps E):       E TP; H, M hit ignored faces (no proposal); clutter FP -> (1, 1) first: AP 1.
    # medium (keeps E, M):    (R, P) = (.5, 1), (.5, 1), (.5, .5), (1, 2/3)  -> .5 + .5 * 2/3 = 5/6.
    # hard   (keeps all):     (1/3, 1), (2/3, 1), (2/3, 2/3), (1, 3/4)      -> 2/3 + 1/3 * 3/4 = 11/12.
    boxes = [np.array([_E, _H, _CLUTTER, _M], dtype=float)]
    scores = [np.array([0.9, 0.8, 0.7, 0.6])]
    out = widerface_metrics(boxes, scores, [_FACES], {k: [v] for k, v in _KEEP.items()})
    assert out == pytest.approx({"ap_easy": 1.0, "ap_medium": 5 / 6, "ap_hard": 11 / 12})


def test_widerface_pr_curve_has_one_thousand_score_steps():
    # Normalised scores 1.0 (TP), 0.9995 (FP), 0.0 (TP) over 2 faces. At threshold 0.999 the first two
    # enter together: (R, P) = (.5, .5), then (1, 2/3) -> envelope 2/3 everywhere: AP 2/3.
    # With finer steps the TP enters alone first: (.5, 1), (.5, .5), (1, 2/3) -> .5 + .5 * 2/3 = 5/6.
    faces = np.array([(0, 0, 50, 50), (100, 0, 150, 50)], dtype=float)
    boxes = [np.array([faces[0], _CLUTTER, faces[1]])]
    scores = [np.array([1.0, 0.9995, 0.0])]
    keep = [np.array([True, True])]
    assert widerface_ap(boxes, scores, [faces], keep) == pytest.approx(2 / 3)
    assert widerface_ap(boxes, scores, [faces], keep, num_thresholds=100_000) == pytest.approx(5 / 6)


def test_widerface_images_without_faces_add_no_false_positives():
    face = np.array([(0, 0, 50, 50)], dtype=float)
    keep = [np.array([True]), np.zeros(0, dtype=bool)]
    # the clutter detection (score .95, ranked first) sits on an image without faces: ignored (official quirk)
    boxes = [face, np.array([_CLUTTER], dtype=float)]
    assert widerface_ap(boxes, [np.array([0.9]), np.array([0.95])], [face, np.zeros((0, 4))], keep) == 1.0
    # the same detection on the image with the face is a FP ranked first: (0, 0) then (1, 1/2) -> AP 1/2
    boxes = [np.array([face[0], _CLUTTER], dtype=float)]
    assert widerface_ap(boxes, [np.array([0.9, 0.95])], [face], keep[:1]) == pytest.approx(0.5)


def test_widerface_scores_are_normalised_over_the_whole_set():
    low, high = normalize_scores([np.array([2.0, 4.0]), np.array([6.0]), np.zeros(0)])[:2]
    assert low.tolist() == [0.0, 0.5] and high.tolist() == [1.0]
    assert [s.tolist() for s in normalize_scores([np.array([3.0]), np.array([3.0])])] == [[1.0], [1.0]]


def test_widerface_keep_masks():
    assert keep_from_indices([1, 3], 4).tolist() == [True, False, True, False]
    masks = nested_keep_masks(heights=np.array([80, 40, 40, 15, 5, 80]),
                              invalid=np.array([False, False, False, False, False, True]),
                              heavy_blur=np.array([False, False, True, False, False, False]),
                              heavy_occlusion=np.zeros(6, dtype=bool),
                              min_heights={"easy": 50, "medium": 30, "hard": 10})
    assert masks["easy"].tolist() == [True, False, False, False, False, False]
    assert masks["medium"].tolist() == [True, True, False, False, False, False]
    assert masks["hard"].tolist() == [True, True, True, True, False, False]


def _brute_force_widerface_ap(det_boxes, det_scores, gt_boxes, keep) -> float:
    """Re-evaluates every threshold from scratch on the detections above it, then integrates the
    envelope point by point."""
    flat = np.concatenate(det_scores)
    lo, hi = flat.min(), flat.max()
    points = []
    for k in range(1, 1001):
        t = 1 - k / 1000
        tp = proposals = 0
        for boxes, scores, faces, kept in zip(det_boxes, det_scores, gt_boxes, keep):
            if len(boxes) == 0 or len(faces) == 0:
                continue
            norm = (scores - lo) / (hi - lo)
            chosen = sorted((i for i in range(len(boxes)) if norm[i] >= t), key=lambda i: -norm[i])
            status = {}
            for i in chosen:
                ious = [box_iou(boxes[i], f, pixel_offset=1.0)[0, 0] for f in faces]
                j = int(np.argmax(ious))
                if ious[j] >= 0.5 and not kept[j]:
                    status[j] = "ignored"
                    continue
                proposals += 1
                if ious[j] >= 0.5 and j not in status:
                    status[j] = "found"
            tp += sum(1 for v in status.values() if v == "found")
        points.append((tp / sum(int(m.sum()) for m in keep), tp / proposals if proposals else 0.0))
    ap, previous = 0.0, 0.0
    for i, (r, _) in enumerate(points):
        ap += (r - previous) * max(p for _, p in points[i:])
        previous = r
    return ap


def test_widerface_matches_a_brute_force_evaluation():
    rng = np.random.default_rng(3)
    det_boxes, det_scores, gt_boxes, keep = [], [], [], []
    for _ in range(8):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 400, size=(n, 2))
        size = rng.uniform(6, 60, size=(n, 1))
        faces = np.hstack([xy, xy + size])
        dets = [f + rng.normal(0, 0.12 * (f[2] - f[0]), size=4) for f in faces if rng.random() < 0.8]
        dets += [np.r_[p, p + 20] for p in rng.uniform(0, 400, size=(int(rng.integers(0, 3)), 2))]
        det_boxes.append(np.array(dets, dtype=float).reshape(-1, 4))
        det_scores.append(rng.normal(0, 3, size=len(dets)))  # raw logits: normalisation matters
        gt_boxes.append(faces)
        keep.append(rng.random(n) < 0.6)
    expected = _brute_force_widerface_ap(det_boxes, det_scores, gt_boxes, keep)
    assert 0.0 < expected < 1.0
    assert widerface_ap(det_boxes, det_scores, gt_boxes, keep) == pytest.approx(expected, abs=1e-12)


# ============================================================================ CityPersons
def _person(x: float, height: float, top: float = 0.0) -> tuple[float, float, float, float]:
    return (x, top, x + 0.41 * height, top + height)


def _city(per_image: list[dict]) -> tuple[list, ...]:
    det_boxes = [np.array(im.get("dets", []), dtype=float).reshape(-1, 4) for im in per_image]
    det_scores = [np.array(im.get("scores", []), dtype=float) for im in per_image]
    gt_boxes = [np.array(im.get("gts", []), dtype=float).reshape(-1, 4) for im in per_image]
    vis = [np.array(im.get("vis", [1.0] * len(im.get("gts", []))), dtype=float) for im in per_image]
    ign = [np.array(im.get("ignore", [False] * len(im.get("gts", []))), dtype=bool) for im in per_image]
    return det_boxes, det_scores, gt_boxes, vis, ign


def test_citypersons_perfect_and_empty():
    people = [_person(0, 100), _person(100, 80)]
    perfect = _city([{"gts": people, "dets": people, "scores": [0.9, 0.8]}])
    assert citypersons_mr(*perfect) == pytest.approx(1e-10)  # every miss rate 0, floored at 1e-10
    empty = _city([{"gts": people}])
    assert citypersons_mr(*empty) == 1.0


def test_citypersons_hand_worked_log_average_miss_rate():
    # 100 images, 4 pedestrians (images 0-3). Ranked: TP, FP, FP, TP, FP, FP, FP, FP, TP:
    # FPPI 0 .01 .02 .02 .03 .04 .05 .06 .06, recall .25 .25 .25 .5 .5 .5 .5 .5 .75.
    # Reference FPPI .01, .0178 -> recall .25; .0316, .0562 -> .5; .1 ... 1 -> .75.
    images = [{"gts": [_person(0, 100)]} for _ in range(4)] + [{} for _ in range(96)]
    ranked = [(0, True), (10, False), (11, False), (1, True), (12, False), (13, False), (14, False), (15, False), (2, True)]
    for rank, (image, hit) in enumerate(ranked):
        images[image]["dets"] = [_person(0, 100) if hit else _person(300, 100)]
        images[image]["scores"] = [0.9 - 0.1 * rank]
    misses = [0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25]
    scores = np.array([0.9 - 0.1 * r for r in range(9)])
    hits = np.array([hit for _, hit in ranked])
    assert miss_rates_at_fppi(scores, hits, 100, 4) == pytest.approx(misses)
    expected = math.exp((2 * math.log(0.75) + 2 * math.log(0.5) + 5 * math.log(0.25)) / 9)  # exp(-8.89313 / 9) = 0.37227
    assert citypersons_mr(*_city(images)) == pytest.approx(expected)
    assert expected == pytest.approx(0.37227, abs=1e-5)
    assert FPPI_POINTS[0] == 0.01 and FPPI_POINTS[-1] == 1.0 and len(FPPI_POINTS) == 9


def test_citypersons_detection_in_an_ignore_region_is_not_a_false_positive():
    region = (200.0, 0.0, 400.0, 200.0)
    inside = _person(250, 100)  # IoU with the region 0.1, but it lies entirely inside it
    pedestrian = _person(0, 100)
    with_region = _city([{"gts": [pedestrian, region], "ignore": [False, True],
                          "dets": [inside, pedestrian], "scores": [0.9, 0.5]}])
    without_region = _city([{"gts": [pedestrian], "dets": [inside, pedestrian], "scores": [0.9, 0.5]}])
    assert citypersons_mr(*with_region) == pytest.approx(1e-10)
    # a FP ranked first on the single image: FPPI 1 at once -> miss 1 at 8 points, 0 (floored) at FPPI 1
    assert citypersons_mr(*without_region) == pytest.approx(1e-10 ** (1 / 9))


def test_citypersons_setups_select_by_height_and_visibility():
    visible, occluded, small = _person(0, 100), _person(100, 100), _person(200, 60)
    data = _city([{"gts": [visible, occluded, small], "vis": [1.0, 0.4, 0.9],
                   "dets": [visible, small], "scores": [0.9, 0.8]}])
    out = citypersons_metrics(*data)
    assert out["mr_Reasonable"] == pytest.approx(1e-10)  # occluded one is ignore, the rest found
    assert out["mr_Reasonable_small"] == pytest.approx(1e-10)  # only the 60 px one counts; the other detection hits an ignore box
    assert out["mr_Reasonable_occ"] == 1.0  # only the occluded one counts, and it is missed
    assert out["mr_All"] == pytest.approx(1 / 3)  # 2 of 3 found, no FP: miss 1/3 at every point
    assert set(out) == {"mr_Reasonable", "mr_Reasonable_small", "mr_Reasonable_occ", "mr_All"}


def test_citypersons_expanded_height_filter_on_detections():
    pedestrian = _person(0, 100)
    for clutter_height, reasonable_fp in ((39.9, False), (40.0, True)):  # 50 / 1.25 = 40
        data = _city([{"gts": [pedestrian], "dets": [_person(300, clutter_height), pedestrian], "scores": [0.9, 0.5]}])
        out = citypersons_metrics(*data)
        assert out["mr_Reasonable"] == pytest.approx(1e-10 ** (1 / 9) if reasonable_fp else 1e-10)
        assert out["mr_All"] == pytest.approx(1e-10 ** (1 / 9))  # 20 / 1.25 = 16: kept, a FP


def test_citypersons_duplicate_is_a_false_positive():
    pedestrian = _person(0, 100)
    data = _city([{"gts": [pedestrian], "dets": [pedestrian, pedestrian], "scores": [0.9, 0.5]}])
    misses = miss_rates_at_fppi(np.array([0.9, 0.5]), np.array([True, False]), 1, 1)
    assert misses.tolist() == [0.0] * 9
    assert citypersons_mr(*data) == pytest.approx(1e-10)
    data = _city([{"gts": [pedestrian], "dets": [pedestrian, pedestrian], "scores": [0.5, 0.9]}] + [{}] * 99)
    assert citypersons_mr(*data) == pytest.approx(1e-10)  # the FP duplicate ranks after the TP either way


def test_citypersons_overlap_ties_go_to_the_later_pedestrian():
    # The first detection overlaps A and B equally (IoU 3075/5125 = 0.6); the official ">=" scan keeps
    # the later one, B, so the second detection (exactly A; IoU with B 1/3) is a second TP.
    a, b = (0.0, 0.0, 41.0, 100.0), (20.5, 0.0, 61.5, 100.0)
    data = _city([{"gts": [a, b], "dets": [(10.25, 0.0, 51.25, 100.0), a], "scores": [0.9, 0.8]}])
    assert citypersons_mr(*data) == pytest.approx(1e-10)  # taking A first would leave a FP and recall 1/2


def _official_style_mr(det_boxes, det_scores, gt_boxes, vis, ignore, setup) -> float:
    """The official per-image scan (gts regular-first, ``bstOa`` running best, break on ignore boxes
    once matched) and accumulation, written out loop by loop."""
    (h_lo, h_hi), (v_lo, v_hi) = SETUPS[setup].height, SETUPS[setup].visibility
    records, positives = [], 0
    for boxes, scores, gts, v, ign in zip(det_boxes, det_scores, gt_boxes, vis, ignore):
        heights = gts[:, 3] - gts[:, 1]
        g_ign = [bool(ign[j] or heights[j] < h_lo or heights[j] > h_hi or v[j] < v_lo or v[j] > v_hi)
                 for j in range(len(gts))]
        positives += g_ign.count(False)
        g_order = sorted(range(len(gts)), key=lambda j: g_ign[j])
        d_order = [i for i in sorted(range(len(boxes)), key=lambda i: -scores[i])
                   if h_lo / 1.25 <= boxes[i, 3] - boxes[i, 1] < h_hi * 1.25]
        taken = set()
        for i in d_order:
            dx1, dy1, dx2, dy2 = boxes[i]
            best_ov, best, best_regular = 0.5, None, None
            for j in g_order:
                if j in taken:
                    continue
                if best_regular is not None and g_ign[j]:
                    break
                gx1, gy1, gx2, gy2 = gts[j]
                w, h = min(dx2, gx2) - max(dx1, gx1), min(dy2, gy2) - max(dy1, gy1)
                inter = w * h if w > 0 and h > 0 else 0.0
                d_area = (dx2 - dx1) * (dy2 - dy1)
                union = d_area if g_ign[j] else d_area + (gx2 - gx1) * (gy2 - gy1) - inter
                ov = inter / union if inter > 0 else 0.0
                if ov < best_ov:
                    continue
                best_ov, best, best_regular = ov, j, not g_ign[j]
            if best is None:
                records.append((scores[i], "fp"))
            elif best_regular:
                taken.add(best)
                records.append((scores[i], "tp"))
        # detections swallowed by ignore boxes are dropped
    records.sort(key=lambda r: -r[0])
    tp = fp = 0
    curve = []
    for _, kind in records:
        tp += kind == "tp"
        fp += kind == "fp"
        curve.append((fp / len(det_boxes), tp / positives))
    logs = []
    for ref in FPPI_POINTS:
        recall = 0.0
        for fppi, r in curve:
            if fppi <= ref:
                recall = r
        logs.append(math.log(max(1e-10, 1 - recall)))
    return math.exp(sum(logs) / len(logs))


def test_citypersons_matches_the_official_scan_on_random_scenes():
    rng = np.random.default_rng(11)
    det_boxes, det_scores, gt_boxes, vis, ignore = [], [], [], [], []
    for _ in range(120):  # >= 100 images: FPPI 1/N <= 0.01
        n = int(rng.integers(0, 4))
        gts = [_person(x, h, y) for x, h, y in zip(rng.uniform(0, 1500, n), rng.uniform(25, 160, n), rng.uniform(0, 300, n))]
        dets = [np.array(g) + rng.normal(0, 0.08 * (g[3] - g[1]), 4) for g in gts if rng.random() < 0.8]
        dets += [np.array(_person(x, h, 0)) for x, h in zip(rng.uniform(0, 1500, 2), rng.uniform(20, 150, 2))
                 if rng.random() < 0.3]
        region = [(float(x), 50.0, float(x) + 120.0, 250.0) for x in rng.uniform(0, 1500, int(rng.random() < 0.3))]
        gt_boxes.append(np.array(gts + region, dtype=float).reshape(-1, 4))
        vis.append(np.r_[rng.uniform(0.1, 1.0, n), np.ones(len(region))])
        ignore.append(np.r_[np.zeros(n, dtype=bool), np.ones(len(region), dtype=bool)])
        det_boxes.append(np.array(dets, dtype=float).reshape(-1, 4))
        det_scores.append(rng.random(len(dets)))
    out = citypersons_metrics(det_boxes, det_scores, gt_boxes, vis, ignore)
    keys = {"Reasonable": "mr_Reasonable", "Reasonable_small": "mr_Reasonable_small",
            "Reasonable_occ=heavy": "mr_Reasonable_occ", "All": "mr_All"}
    for setup, key in keys.items():
        expected = _official_style_mr(det_boxes, det_scores, gt_boxes, vis, ignore, setup)
        assert 0.0 < expected < 1.0
        assert out[key] == pytest.approx(expected, rel=1e-12)


# ============================================================================ segmentation
def test_segmentation_perfect_prediction():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, size=(20, 20))
    gt[:, :2] = 255
    pred = np.where(gt == 255, 1, gt)
    out = segmentation_metrics(confusion_matrix(gt, pred, 3))
    assert out["mIoU"] == out["pixel_acc"] == out["mean_class_acc"] == 1.0


def test_segmentation_hand_worked_with_void_and_an_absent_class():
    gt = np.array([[0, 0, 1, 1], [0, 255, 1, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 3, 2, 2]])  # class 3 only predicted on the void pixel
    cm = confusion_matrix(gt, pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 2, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # IoU: 0 -> 2/(3+2-2) = 2/3, 1 -> 2/(3+3-2) = 1/2, 2 -> 1/(1+2-1) = 1/2, 3 -> absent everywhere (NaN).
    iou = per_class_iou(cm)
    assert iou[:3] == pytest.approx([2 / 3, 1 / 2, 1 / 2]) and np.isnan(iou[3])
    out = segmentation_metrics(cm, ["bg", "a", "b", "c"])
    assert out["mIoU"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)  # 5/9
    assert out["pixel_acc"] == pytest.approx(5 / 7)
    assert out["mean_class_acc"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)  # 7/9
    assert "iou/c" not in out and out["iou/bg"] == pytest.approx(2 / 3)


def test_segmentation_class_predicted_but_absent_counts_as_zero_iou():
    gt = np.array([[0, 0, 0, 0]])
    pred = np.array([[0, 0, 0, 1]])
    out = segmentation_metrics(confusion_matrix(gt, pred, 2))
    assert out["iou/1"] == 0.0
    assert out["mIoU"] == pytest.approx((3 / 4 + 0) / 2)
    assert out["mean_class_acc"] == pytest.approx(3 / 4)  # class 1 has no ground truth: no accuracy


def test_segmentation_accumulates_over_the_dataset_not_per_image():
    # A: 8 pixels of class 0, all right. B: two class-1 pixels, one called 0.
    # Dataset: IoU0 = 8/(8+9-8) = 8/9, IoU1 = 1/(2+1-1) = 1/2 -> mIoU 25/36.
    # (Mean of per-image mIoUs would be (1 + (0 + 1/2)/2) / 2 = 5/8.)
    pairs = [(np.zeros((2, 4), dtype=int), np.zeros((2, 4), dtype=int)), (np.array([[1, 1]]), np.array([[1, 0]]))]
    out = segmentation_metrics(dataset_confusion(pairs, 2))
    assert out["mIoU"] == pytest.approx(25 / 36)


def test_segmentation_matches_torchmetrics_per_class_iou():
    import torch
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    rng = np.random.default_rng(5)
    jaccard = MulticlassJaccardIndex(num_classes=5, ignore_index=255, average=None)
    pixel_acc = MulticlassAccuracy(num_classes=5, ignore_index=255, average="micro")
    pairs = []
    for _ in range(4):
        gt = rng.choice([0, 1, 2, 255], size=(16, 16), p=[0.4, 0.3, 0.2, 0.1])
        pred = np.where(rng.random((16, 16)) < 0.7, np.where(gt == 255, 0, gt), rng.integers(0, 4, (16, 16)))
        pairs.append((gt, pred))
        jaccard.update(torch.from_numpy(pred), torch.from_numpy(gt))
        pixel_acc.update(torch.from_numpy(pred), torch.from_numpy(gt))
    cm = dataset_confusion(pairs, 5)
    ours = per_class_iou(cm)
    theirs = jaccard.compute().numpy()
    defined = np.isfinite(ours)
    assert defined.tolist() == [True, True, True, True, False]  # 3 only predicted, 4 nowhere
    assert ours[defined] == pytest.approx(theirs[defined], abs=1e-6)
    assert segmentation_metrics(cm)["pixel_acc"] == pytest.approx(float(pixel_acc.compute()), abs=1e-6)


# ============================================================================ depth
def test_depth_perfect_prediction():
    rng = np.random.default_rng(1)
    gt = rng.uniform(1, 70, size=(60, 200))
    out = depth_metrics([gt], [gt.copy()], "kitti")
    assert out["d1"] == out["d2"] == out["d3"] == 1.0
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert out[name] == pytest.approx(0.0, abs=1e-12)


def test_depth_errors_hand_worked():
    gt = np.array([1.0, 2.0, 4.0, 3.0, 3.8])
    pred = np.full(5, 2.0)
    # ratios max(gt/pred, pred/gt): 2, 1, 2, 1.5, 1.9 -> d1 (<1.25) 1/5, d2 (<1.5625) 2/5, d3 (<1.953125) 3/5
    e = np.log(pred) - np.log(gt)
    out = depth_errors(gt, pred)
    assert out["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4 + 1 / 3 + 1.8 / 3.8) / 5)
    assert out["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4 + 1 / 3 + 1.8 ** 2 / 3.8) / 5)
    assert out["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4 + 1 + 1.8 ** 2) / 5))
    assert out["rmse_log"] == pytest.approx(math.sqrt(np.mean(e ** 2)))
    assert out["log10"] == pytest.approx(np.mean(np.abs(np.log10(2) - np.log10(gt))))
    assert out["silog"] == pytest.approx(100 * math.sqrt(np.mean(e ** 2) - np.mean(e) ** 2))
    assert (out["d1"], out["d2"], out["d3"]) == pytest.approx((0.2, 0.4, 0.6))
    # SILog ignores a global scale: twice the depth everywhere -> 0, while rmse_log = ln 2
    doubled = depth_errors(gt, 2 * gt)
    assert doubled["silog"] == pytest.approx(0.0, abs=1e-6) and doubled["rmse_log"] == pytest.approx(math.log(2))


def test_depth_crop_boxes_match_bts_eval():
    expected = np.zeros((375, 1242), dtype=bool)
    expected[153:371, 44:1197] = True  # int(0.40810811*375), int(0.99189189*375), int(0.03594771*1242), int(0.96405229*1242)
    assert np.array_equal(garg_crop_mask(375, 1242), expected)
    expected = np.zeros((375, 1242), dtype=bool)
    expected[124:342, 44:1197] = True  # int(0.3324324*375) = 124, int(0.91351351*375) = 342
    assert np.array_equal(eigen_crop_mask(375, 1242, "kitti"), expected)
    expected = np.zeros((480, 640), dtype=bool)
    expected[45:471, 41:601] = True
    assert np.array_equal(eigen_crop_mask(480, 640, "nyu"), expected)


def test_depth_pixels_outside_the_crop_do_not_count():
    gt = np.full((375, 1242), 10.0)
    pred = np.full_like(gt, 50.0)
    pred[garg_crop_mask(375, 1242)] = 10.0
    assert depth_metrics([gt], [pred], "kitti")["rmse"] == 0.0  # default KITTI crop: Garg
    assert depth_metrics([gt], [pred], "kitti", crop=None)["rmse"] > 0.0
    nyu_gt = np.full((480, 640), 3.0)
    nyu_pred = np.full_like(nyu_gt, 9.0)
    nyu_pred[45:471, 41:601] = 3.0
    assert depth_metrics([nyu_gt], [nyu_pred], "nyu")["abs_rel"] == 0.0  # default NYU crop: Eigen


def test_depth_cap_and_clipping():
    # KITTI: gt 85 and exactly 80 are out (gt < 80 strictly), 0 is no measurement; pred 100 -> 80.
    gt = np.array([[79.0, 85.0, 80.0, 0.0]])
    pred = np.array([[100.0, 3.0, 3.0, 3.0]])
    out = depth_metrics([gt], [pred], "kitti", crop=None)
    assert out["abs_rel"] == pytest.approx(1 / 79) and out["rmse"] == pytest.approx(1.0)
    # NYU caps at 10 m; inf -> 10, NaN -> 1e-3
    out = depth_metrics([np.array([[5.0, 5.0, 10.5]])], [np.array([[np.inf, np.nan, 1.0]])], "nyu", crop=None)
    assert out["abs_rel"] == pytest.approx((5 / 5 + (5 - 1e-3) / 5) / 2)


def test_depth_metrics_average_per_image():
    # A: one valid pixel, abs_rel |2-4|/2 = 1. B: three exact pixels, abs_rel 0. Per-image mean 1/2
    # (pooling the 4 pixels would give 1/4).
    a_gt, a_pred = np.array([[2.0, 0.0, 0.0]]), np.array([[4.0, 1.0, 1.0]])
    b_gt = np.array([[1.0, 2.0, 3.0]])
    out = depth_metrics([a_gt, b_gt], [a_pred, b_gt.copy()], "kitti", crop=None)
    assert out["abs_rel"] == pytest.approx(0.5)
