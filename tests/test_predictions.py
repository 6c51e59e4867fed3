"""The prediction store and intervals, through the CLI and the public task specs: every done job
keeps its test predictions (sha256 in the record), `results rescore` reproduces the stored metrics
exactly and adds metrics, a damaged file is refused, and intervals match a plain bootstrap."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from gaia_bench.api import Sample, Samples
from gaia_bench.manager import get_registries
from gaia_bench.predictions import bootstrap_interval, load_predictions, predictions_dir, resample_counts
from gaia_bench.store import ResultsStore
from tests.helpers import cli

FAST = ["--model", "test_resnet", "--image-size", "32", "--dataset", "digits-lt", "--shots", "10%"]


@pytest.fixture(scope="module")
def run_store(tmp_path_factory, shared_home):
    store = tmp_path_factory.mktemp("predictions") / "results.db"
    done = cli(["run", *FAST, "--store", str(store)], env={"GAIA_BENCH_HOME": shared_home})
    assert done.returncode == 0, done.stderr
    return store, {"GAIA_BENCH_HOME": shared_home}


def test_a_job_keeps_its_predictions_interval_and_per_class_accuracy(run_store):
    store, _ = run_store
    with ResultsStore(store) as s:
        (record,) = s.query()
    ref = record["predictions"]
    body = (predictions_dir(store) / ref["file"]).read_bytes()
    assert hashlib.sha256(body).hexdigest() == ref["sha256"] and ref["items"] == record["n_test"]
    task = get_registries().tasks.get("classification")
    predictions, test = load_predictions(store, record, task)
    assert len(predictions) == record["n_test"] and np.ndim(predictions[0]) == 1  # every score (10 classes)
    low, high = record["interval"]["metrics"]["top1"]
    assert low < record["metrics"]["top1"] < high and record["interval"]["resamples"] == 1000
    per_class = record["per_class"]
    assert len(per_class["values"]) == len(per_class["train_count"]) == 10
    assert per_class["train_count"][0] > per_class["train_count"][-1]  # digits-lt's long tail, full training split
    hits = sum(v / 100 * n for v, n in zip(per_class["values"], per_class["test_count"]))
    assert hits / record["n_test"] * 100 == pytest.approx(record["metrics"]["top1"])


def test_rescore_reproduces_and_adds_metrics(run_store):
    store, env = run_store
    checked = cli(["results", "rescore", "--store", str(store), "--metric", "top5,worst_class_acc", "--metric", "ece"],
                  env=env)
    assert checked.returncode == 0, checked.stderr
    # top-1, mean per-class accuracy and the six calibration metrics the record carries (its temperature stored)
    assert "8 stored metric(s) rescored, 0 differ; 1 record(s) updated" in " ".join(checked.stderr.split())
    with ResultsStore(store) as s:
        (record,) = s.query()
    metrics = record["metrics"]
    assert metrics["top1"] <= metrics["top5"] <= 100 and metrics["worst_class_acc"] <= metrics["mean_per_class_acc"]
    assert 0 <= metrics["ece"] <= 100
    unknown = cli(["results", "rescore", "--store", str(store), "--metric", "mAP"], env=env)
    assert unknown.returncode == 2 and "has no metric mAP" in unknown.stderr and "top5" in unknown.stderr


def test_a_changed_prediction_file_is_refused(run_store, tmp_path):
    store, env = run_store
    with ResultsStore(store) as s:
        (record,) = s.query()
    path = predictions_dir(store) / record["predictions"]["file"]
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10] + b"0123456789")
        refused = cli(["results", "rescore", "--store", str(store)], env=env)
        assert refused.returncode == 1 and "does not match the sha256" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        path.write_bytes(original)


def _toy_test(labels: list[int], classes: int = 3) -> Samples:
    return Samples([Sample(f"img{i}.png", None, c) for i, c in enumerate(labels)], [f"c{i}" for i in range(classes)])


def test_classification_resample_equals_evaluate_on_each_resample():
    task = get_registries().tasks.get("classification")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 40).tolist()
    predictions = [rng.normal(size=3) for _ in labels]
    test = _toy_test(labels)
    counts = next(resample_counts(len(labels), 50, seed=1))
    fast = task.resample(predictions, test, None, counts)
    for row, top1, mpc in zip(counts, fast["top1"], fast["mean_per_class_acc"]):
        drawn = np.repeat(np.arange(len(row)), row)
        slow = task.evaluate([predictions[i] for i in drawn], test.subset(drawn.tolist()), None)
        assert top1 == pytest.approx(slow["top1"]) and mpc == pytest.approx(slow["mean_per_class_acc"])


def test_interval_is_the_percentile_bootstrap_of_evaluate():
    """Against a plain bootstrap written here: the same resamples, ``evaluate`` per resample."""
    task = replace(get_registries().tasks.get("classification"), resample=None)  # the generic path
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    predictions = [0, 1, 2, 0, 0, 0, 1, 1]  # 5 of 8 right
    test = _toy_test(labels)
    got = bootstrap_interval(task, predictions, test, None, resamples=400, seed=7)
    counts = np.random.default_rng([7, len(labels)]).multinomial(8, np.full(8, 1 / 8), size=400)
    right = np.asarray(predictions) == np.asarray(labels)
    draws = 100 * (counts @ right) / 8
    assert got["metrics"]["top1"] == pytest.approx(list(np.percentile(draws, [2.5, 97.5])))
    assert got["method"] == "percentile bootstrap over test items" and got["level"] == 0.95
    # two items, one right: a resample has 0, 1 or 2 right (1/4, 1/2, 1/4), so the 95% interval is [0, 100]
    two = bootstrap_interval(task, [0, 0], _toy_test([0, 1]), None, resamples=2000, seed=0)
    assert two["metrics"]["top1"] == [0.0, 100.0]
