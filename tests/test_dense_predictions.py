"""The prediction store for detection, segmentation and depth, through the task specs and the CLI:
stored predictions (with the targets they are scored against) give back exactly the stored metrics,
the vectorised bootstrap equals ``evaluate`` on the explicitly resampled test set, and a dense job
run from the CLI is rescored with no difference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaia_bench.api import Sample, Samples
from gaia_bench.manager import get_registries
from gaia_bench.predictions import load_predictions, resample_counts, save_predictions
from gaia_bench.store import ResultsStore
from gaia_bench.tasks.datasets.lib.dense_targets import DepthTarget, DetectionTarget, FaceTarget, PedestrianTarget
from gaia_bench.tasks.types.lib.metrics_detection import ImageDetections
from tests.helpers import cli


def _task(name: str):
    return get_registries().tasks.get(name)


def _stored(task, predictions, test: Samples, tmp_path: Path) -> tuple[list, Samples]:
    """``predictions`` written to and read back from the prediction store (npz, no pickles)."""
    store = tmp_path / "results.db"
    ref = save_predictions(tmp_path / "results.predictions", "job", task, predictions, test)
    return load_predictions(store, {"job_id": "job", "predictions": ref}, task)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _check_resample(task, predictions, test: Samples, draws: int = 25, seed: int = 1) -> None:
    """Every metric of ``resample`` equals ``evaluate`` on the resampled test set built by hand
    (copies of a drawn image adjacent, in test order); a metric ``evaluate`` leaves out is NaN."""
    counts = next(resample_counts(len(test), draws, seed))
    fast = task.resample(predictions, test, None, counts)
    for b, row in enumerate(counts):
        drawn = np.repeat(np.arange(len(row)), row)
        slow = task.evaluate([predictions[i] for i in drawn], test.subset(drawn.tolist()), None)
        assert set(slow) <= set(fast)
        for name, values in fast.items():
            if name in slow:
                assert values[b] == pytest.approx(slow[name], abs=1e-9, nan_ok=True), (b, name)
            else:
                assert math.isnan(values[b]), (b, name)


# ----------------------------------------------------------------------------- detection
def _detection_set(family: str, seed: int, n: int = 24, classes: int = 3) -> tuple[list, Samples]:
    """Random scenes of ``family``'s targets, detections near the objects plus false positives and
    duplicates, scores on a coarse grid so that many tie (within and across images)."""
    rng = np.random.default_rng(seed)
    labels_of = classes if family == "voc" else 1
    samples, predictions = [], []
    for i in range(n):
        m = int(rng.integers(0, 5))
        corner = rng.uniform(0, 300, (m, 2))
        boxes = np.c_[corner, corner + rng.uniform(10, 140, (m, 2))].round(1)
        labels = rng.integers(0, labels_of, m)
        common = dict(boxes=tuple(map(tuple, boxes.tolist())), labels=tuple(labels.tolist()),
                      difficult=tuple((rng.random(m) < 0.15).tolist()), width=480, height=360)
        if family == "voc":
            target = DetectionTarget(**common)
        elif family == "widerface":
            hard = rng.random(m) < 0.9
            medium = hard & (rng.random(m) < 0.7)
            easy = medium & (rng.random(m) < 0.6)
            target = FaceTarget(**common, easy=tuple(easy.tolist()), medium=tuple(medium.tolist()),
                                hard=tuple(hard.tolist()))
        else:
            target = PedestrianTarget(**common, visibility=tuple(rng.uniform(0.1, 1.0, m).round(3).tolist()),
                                      ignore=tuple((rng.random(m) < 0.15).tolist()))
        k = int(rng.integers(0, 6))
        spurious = rng.uniform(0, 300, (k, 2))
        det_boxes = np.r_[boxes + rng.normal(0, 4, boxes.shape), np.c_[spurious, spurious + 70]]
        det_labels = np.r_[labels, rng.integers(0, labels_of, k)]
        again = rng.random(len(det_boxes)) < 0.3  # duplicates of a detection
        det_boxes, det_labels = np.r_[det_boxes, det_boxes[again] + 1], np.r_[det_labels, det_labels[again]]
        scores = np.round(rng.random(len(det_boxes)) * 5) / 5
        predictions.append(ImageDetections(det_boxes.astype(np.float32), scores, det_labels))
        samples.append(Sample(f"images/{i:03d}.jpg", Path(f"/data/images/{i:03d}.jpg"), target))
    names = [f"class{c}" for c in range(classes)] if family == "voc" else ["face" if family == "widerface" else "person"]
    return predictions, Samples(samples, names)


@pytest.mark.parametrize("family", ["voc", "widerface", "citypersons"])
def test_detection_predictions_and_targets_survive_the_store(family, tmp_path):
    task = _task("detection")
    predictions, test = _detection_set(family, seed=0)
    decoded, decoded_test = _stored(task, predictions, test, tmp_path)
    assert [s.target for s in decoded_test.samples] == [s.target for s in test.samples]
    assert [type(s.target) for s in decoded_test.samples] == [type(s.target) for s in test.samples]
    assert [s.key for s in decoded_test.samples] == [s.key for s in test.samples]
    expected = task.evaluate(predictions, test, None)
    got = task.evaluate(decoded, decoded_test, None)
    assert got.keys() == expected.keys() and all(_same(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("family", ["voc", "widerface", "citypersons"])
def test_detection_resample_equals_evaluate_on_duplicated_images(family):
    predictions, test = _detection_set(family, seed=1)
    _check_resample(_task("detection"), predictions, test)


def test_voc_resample_repeats_tied_detections_of_an_image_as_its_copies_do():
    """One image drawn twice whose TP and its duplicate share a score: the copies rank TP FP TP FP
    (then TP TP at 0.5), not TP TP FP FP. Recall .25 .25 .5 .5 .75 1 with precision 1 .5 2/3 .5 .6
    2/3: 11-point AP (3 + 8 * 2/3) / 11 = 25/33 (TP TP FP FP would give 28/33)."""
    task = _task("detection")
    target = DetectionTarget(((0.0, 0.0, 10.0, 10.0), (50.0, 50.0, 60.0, 60.0)), (0, 0), (False, False), 100, 100)
    dets = ImageDetections(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=float),
                           np.array([0.9, 0.9, 0.5]), np.array([0, 0, 0]))
    other = DetectionTarget(((0.0, 0.0, 5.0, 5.0),), (1,), (False,), 100, 100)
    test = Samples([Sample("a", Path("a"), target), Sample("b", Path("b"), other)], ["x", "y"])
    predictions = [dets, ImageDetections.empty()]
    counts = np.array([[2, 0], [1, 1], [0, 2]])
    fast = task.resample(predictions, test, None, counts)
    twice = task.evaluate([dets, dets], Samples([test.samples[0]] * 2, ["x", "y"]), None)
    assert fast["ap_voc07_11pt/x"][0] == pytest.approx(twice["ap_voc07_11pt/x"]) == pytest.approx(100 * 25 / 33)
    assert fast["ap_area/x"][0] == pytest.approx(twice["ap_area/x"])
    assert math.isnan(fast["ap_voc07_11pt/y"][0]) and fast["ap_voc07_11pt/y"][1] == 0.0
    assert math.isnan(fast["ap_voc07_11pt/x"][2]) and fast["mAP"][2] == 0.0


def test_detection_per_class_is_the_primary_ap_of_each_class():
    task = _task("detection")
    predictions, test = _detection_set("voc", seed=2, classes=4)
    metrics = task.evaluate(predictions, test, None)
    values = task.per_class(predictions, test, None)
    for name, value in zip(test.classes, values):
        key = f"ap_voc07_11pt/{name}"
        assert value == metrics[key] if key in metrics else math.isnan(value)
    assert np.nanmean(values) == pytest.approx(metrics["mAP_voc07_11pt"])
    faces, face_test = _detection_set("widerface", seed=2)
    assert task.per_class(faces, face_test, None) == [task.evaluate(faces, face_test, None)["ap_easy"]]


# ----------------------------------------------------------------------------- segmentation
def _segmentation_set(seed: int, n: int = 30, classes: int = 5) -> tuple[list, Samples]:
    """Per-image confusion counts; class 4 never occurs in the ground truth but is predicted."""
    rng = np.random.default_rng(seed)
    predictions = []
    for _ in range(n):
        counts = rng.integers(0, 60, (classes, classes)) * (rng.random((classes, classes)) < 0.5)
        counts[4] = 0
        counts[rng.integers(0, 4)] = 0  # a class absent from this image
        predictions.append(counts.astype(np.int64))
    return predictions, Samples([Sample(f"m{i}", Path(f"m{i}.png"), None) for i in range(n)],
                                [f"class{c}" for c in range(classes)])


def test_segmentation_store_resample_per_class_and_extra_metrics(tmp_path):
    task = _task("segmentation")
    predictions, test = _segmentation_set(seed=0)
    decoded, decoded_test = _stored(task, predictions, test, tmp_path)
    assert task.evaluate(decoded, decoded_test, None) == task.evaluate(predictions, test, None)
    _check_resample(task, predictions, test)

    confusion = np.sum(predictions, axis=0).astype(float)
    tp = np.diag(confusion)
    iou = tp / (confusion.sum(0) + confusion.sum(1) - tp)
    values = task.per_class(predictions, test, None)
    assert values[:4] == pytest.approx(100 * iou[:4]) and math.isnan(values[4])  # only predicted: no test presence
    assert task.evaluate(predictions, test, None)["iou/class4"] == 0.0  # which mIoU counts
    share = confusion.sum(1) / confusion.sum()
    assert task.extra_metrics["fwIoU"](predictions, test, None)["fwIoU"] == pytest.approx(100 * np.sum(share[:4] * iou[:4]))
    assert task.extra_metrics["worst_class_iou"](predictions, test, None) == {"worst_class_iou": min(values[:4])}


# ----------------------------------------------------------------------------- depth
def _depth_terms(seed: int, n: int = 30) -> tuple[list, Samples]:
    from gaia_bench.tasks.types.lib.metrics_depth import METRICS

    rng = np.random.default_rng(seed)
    rows = [None if i % 7 == 3 else {name: float(rng.uniform(0.01, 5.0)) for name in METRICS} for i in range(n)]
    return rows, Samples([Sample(f"d{i}", Path(f"d{i}.png"), None) for i in range(n)], [])


def test_depth_terms_survive_the_store_and_resample(tmp_path):
    task = _task("depth")
    predictions, test = _depth_terms(seed=0)
    decoded, decoded_test = _stored(task, predictions, test, tmp_path)
    assert decoded == predictions  # float64 terms, None for an image without a counted pixel
    assert task.evaluate(decoded, decoded_test, None) == task.evaluate(predictions, test, None)
    _check_resample(task, predictions, test)


def test_depth_maps_are_stored_as_the_terms_evaluate_scores(tmp_path):
    from gaia_bench.tasks.types.depth import depth_terms
    from gaia_bench.tasks.types.lib.dense_decoder import read_target

    task = _task("depth")
    rng = np.random.default_rng(4)
    samples, maps = [], []
    for i in range(3):
        truth = np.where(rng.random((40, 60)) < 0.3, rng.uniform(2, 70, (40, 60)), 0.0)
        path = tmp_path / f"gt{i}.png"
        Image.fromarray(np.round(truth * 256).astype(np.uint16)).save(path)  # KITTI: metres x 256
        samples.append(Sample(f"gt{i}", path, DepthTarget(path, 80.0, "kitti")))
        maps.append(rng.uniform(1, 90, (40, 60)))
    test = Samples(samples, [])
    decoded, decoded_test = _stored(task, maps, test, tmp_path)
    assert decoded == [depth_terms(read_target(s.target), m, "kitti") for s, m in zip(samples, maps)]
    assert task.evaluate(decoded, decoded_test, None) == task.evaluate(maps, test, None)


# ----------------------------------------------------------------------------- end to end
def test_dense_jobs_run_from_the_cli_are_rescored_without_difference(tmp_path, shared_home):
    """Short schedules (the numbers do not matter here, only that the stored ones come back)."""
    store = tmp_path / "results.db"
    env = {"GAIA_BENCH_HOME": shared_home}
    short = [f"--hp={name}={value}" for name, value in (("dense_min_iters", 4), ("dense_max_iters", 4),
                                                        ("det_min_iters", 4), ("det_max_iters", 4))]
    run = cli(["run", "--model", "test_resnet", "--init", "random", "--shots", "10%", "--store", str(store),
               "--dataset", "mini-voc-seg,mini-kitti-depth,mini-voc-det", "--resamples", "200", *short], env=env)
    assert run.returncode == 0, run.stderr
    with ResultsStore(store) as s:
        records = {r["config"]["dataset"]: r for r in s.query()}
    assert set(records) == {"mini-voc-seg", "mini-kitti-depth", "mini-voc-det"}
    for record in records.values():
        assert record["status"] == "done" and record["predictions"]["items"] == record["n_test"] == 80
        low, high = record["interval"]["metrics"][record["primary_metric"]]
        assert low <= record["primary_value"] <= high and record["interval"]["resamples"] == 200
    assert len(records["mini-voc-det"]["per_class"]["values"]) == 6
    assert len(records["mini-voc-seg"]["per_class"]["values"]) == 7

    rescored = cli(["results", "rescore", "--store", str(store)], env=env)
    assert rescored.returncode == 0, rescored.stderr
    checked = sum(len(r["metrics"]) for r in records.values())  # every metric, per-class APs and IoUs too
    assert f"{checked} stored metric(s) rescored, 0 differ" in " ".join(rescored.stderr.split())
    added = cli(["results", "rescore", "--store", str(store), "--dataset", "mini-voc-seg", "--metric", "fwIoU"], env=env)
    assert added.returncode == 0 and "1 record(s) updated" in " ".join(added.stderr.split()), added.stderr
    with ResultsStore(store) as s:
        (seg,) = s.query(dataset="mini-voc-seg")
    assert 0 <= seg["metrics"]["fwIoU"] <= 100
