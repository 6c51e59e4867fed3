"""Detection on any backbone with a pyramid: torchvision's Faster R-CNN + FPN trained on
mini-voc-det through the CLI, scored with VOC AP; a trained head must beat the untrained one (a
short schedule on the whole training split, to keep the test fast), the run must be deterministic,
and a backbone without a pyramid gets a clear error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.store import ResultsStore
from gaia_bench.tasks.datasets.lib.dense_targets import DetectionTarget
from gaia_bench.tasks.types.lib.faster_rcnn import anchor_sizes, to_image_detections, training_target

runner = CliRunner()
SHORT = ["--hp", "det_min_iters=150", "--hp", "det_max_iters=150"]
TINY = ["--hp", "det_min_iters=8", "--hp", "det_max_iters=8"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("det-data")


def _run(store, data_root, *extra: str, model: str = "test_resnet", shots: str = "10%") -> tuple:
    result = runner.invoke(app, ["run", "--model", model, "--dataset", "mini-voc-det", "--shots", shots,
                                 "--store", str(store), "--data-root", str(data_root), *extra])
    with ResultsStore(store) as s:
        records = s.query()
    return result, records


def test_trained_head_beats_untrained(tmp_path, data_root):
    store = tmp_path / "r.db"
    result, records = _run(store, data_root, *SHORT, shots="100%")
    assert result.exit_code == 0, result.output
    (rec,) = records
    assert rec["status"] == "done", rec.get("error")
    assert rec["primary_metric"] == "mAP_voc07_11pt" and rec["higher_is_better"]
    assert {"mAP_voc07_11pt", "mAP_area"} <= set(rec["metrics"])
    assert any(k.startswith("ap_voc07_11pt/") for k in rec["metrics"])
    assert rec["n_train"] == 240 and rec["n_test"] == 80
    details = rec["details"]
    assert details["schedule"]["iterations_run"] == 150 and details["frozen_backbone"] is True
    assert details["backbone"]["pyramids_cached"] is True
    assert details["loss_end"] < 0.5 * details["loss_start"]
    assert details["head"]["anchor_sizes"] == [8, 16, 32, 64, 128]  # 128-pixel short side

    untrained_store = tmp_path / "untrained.db"
    result, (untrained,) = _run(untrained_store, data_root, "--hp", "det_min_iters=0", "--hp", "det_max_iters=0",
                                shots="100%")
    assert result.exit_code == 0, result.output
    trained_map, untrained_map = rec["metrics"]["mAP_voc07_11pt"], untrained["metrics"]["mAP_voc07_11pt"]
    # measured: 6.3 after 150 iterations (31.2 after the full 1440), 0.0 untrained
    assert trained_map > untrained_map + 3.0, (trained_map, untrained_map)


@pytest.mark.extended  # `make test-all`: the suite's 10-minute budget (README)
def test_same_seed_same_detections(tmp_path, data_root):
    store = tmp_path / "r.db"
    result, (first,) = _run(store, data_root, *TINY)
    assert result.exit_code == 0, result.output
    result, (again,) = _run(store, data_root, *TINY, "--force")
    assert again["metrics"] == first["metrics"] and again["details"]["loss_end"] == first["details"]["loss_end"]


def test_backbone_without_pyramid_fails_with_the_reason(tmp_path, data_root):
    result, (rec,) = _run(tmp_path / "r.db", data_root, *TINY, model="torchvision:mobilenet_v3_small")
    assert result.exit_code != 0
    assert rec["status"] == "failed"
    assert "gives no feature pyramid" in rec["error"] and "traceback" not in rec
    assert "1 job(s) failed" in result.output


def test_targets_are_scaled_mirrored_and_mapped_back():
    target = DetectionTarget(boxes=((10.0, 20.0, 50.0, 60.0), (0.0, 0.0, 5.0, 5.0)), labels=(2, 0),
                             difficult=(False, True), width=100, height=80)
    plain = training_target(target, (160, 200), flip=False)
    assert plain["labels"].tolist() == [3]  # difficult dropped, 0 is background
    assert plain["boxes"].tolist() == [[20.0, 40.0, 100.0, 120.0]]
    mirrored = training_target(target, (160, 200), flip=True)
    assert mirrored["boxes"].tolist() == [[100.0, 40.0, 180.0, 120.0]]

    import torch

    back = to_image_detections({"boxes": torch.tensor([[20.0, 40.0, 100.0, 120.0], [190.0, 150.0, 260.0, 200.0]]),
                                "scores": torch.tensor([0.9, 0.2]), "labels": torch.tensor([3, 1])}, target, (160, 200))
    np.testing.assert_allclose(back.boxes, [[10, 20, 50, 60], [95, 75, 100, 80]])  # clipped to the image
    assert back.labels.tolist() == [2, 0]


def test_anchor_sizes_follow_the_input():
    assert [s[0] for s in anchor_sizes((600, 1000), 4)] == [38, 75, 150, 300, 600]
    assert len(anchor_sizes((128, 192), 3)) == 4 and all(math.isfinite(s[0]) for s in anchor_sizes((64, 64), 6))
