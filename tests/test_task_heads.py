"""Each task type owns its head, loss, prediction, hold-out rule and evaluation, through the
TaskSpec hooks the adaptations call (one evaluation signature for every task)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaia_bench.api import HeadInput, Sample, Samples
from gaia_bench.manager import get_registries
from gaia_bench.tasks.datasets import mini_dense
from gaia_bench.tasks.types.classification import CLASSIFICATION, classification_metrics
from gaia_bench.tasks.types.lib.dense_decoder import read_target, resize_nearest
from gaia_bench.tasks.datasets.lib.dense_targets import DetectionTarget
from gaia_bench.tasks.types.depth import DEPTH, depth_terms
from gaia_bench.tasks.types.detection import DETECTION
from gaia_bench.tasks.types.lib.metrics_depth import depth_metrics
from gaia_bench.tasks.types.lib.metrics_segmentation import confusion_matrix, dataset_confusion, segmentation_metrics
from gaia_bench.tasks.types.segmentation import SEGMENTATION


def _samples(targets, classes=("a", "b", "c")) -> Samples:
    return Samples([Sample(f"s{i}", Path(f"s{i}.png"), t) for i, t in enumerate(targets)], list(classes))


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads-data")
    for spec in (mini_dense.MINI_VOC_SEG, mini_dense.MINI_KITTI_DEPTH):
        spec.prepare(root / spec.directory)
    return root


def test_every_builtin_task_has_all_hooks():
    tasks = get_registries().tasks
    for name in ("classification", "detection", "segmentation", "depth"):
        spec = tasks.get(name)
        assert callable(spec.evaluate) and callable(spec.holdout_strata)
        assert spec.make_head is not None and spec.train_head is not None
        assert None not in (spec.encode, spec.decode, spec.resample)  # predictions kept, intervals vectorised


def test_classification_evaluates_class_ids_and_holds_out_per_class():
    test = _samples([0, 0, 1, 2, 2, 2])
    predictions = [0, 1, 1, 2, 0, 2]
    assert CLASSIFICATION.evaluate(predictions, test, None) == classification_metrics(test.labels(), predictions, 3)
    assert CLASSIFICATION.holdout_strata(test) == [0, 0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="5 predictions for 6 test samples"):
        CLASSIFICATION.evaluate(predictions[:5], test, None)


def test_detection_holds_out_by_each_images_smallest_class():
    def target(labels):
        return DetectionTarget(tuple((0.0, 0.0, 1.0, 1.0) for _ in labels), tuple(labels), (False,) * len(labels), 8, 8)

    assert DETECTION.holdout_strata(_samples([target((2, 1)), target(()), target((0,))])) == [1, -1, 0]
    assert SEGMENTATION.holdout_strata(_samples([0])) is None and DEPTH.holdout_strata(_samples([0])) is None


def test_linear_head_is_seeded_leaves_the_callers_rng_and_predicts_class_ids():
    import torch
    import torch.nn.functional as F

    hp = {"label_smoothing": 0.1}
    fit = _samples([0, 1, 2])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    head = CLASSIFICATION.make_head(HeadInput((5,), (32, 32)), None, fit, hp, seed=7)
    assert torch.equal(torch.rand(1), before)  # the caller's random state is untouched
    again = CLASSIFICATION.make_head(HeadInput((5,), (32, 32)), None, fit, hp, seed=7)
    assert torch.equal(head.module.weight, again.module.weight)
    x = torch.randn(4, 5)
    targets = [head.target(s) for s in _samples([0, 2, 1, 1]).samples]
    expected = F.cross_entropy(head.module(x), torch.tensor([0, 2, 1, 1]), label_smoothing=0.1)
    assert torch.allclose(head.loss(x, targets), expected)
    assert head.predict(x, fit.samples) == head.module(x).argmax(dim=1).tolist()


def test_segmentation_sums_per_image_confusions_into_one_matrix(mini_root):
    test = mini_dense.MINI_VOC_SEG.load(mini_root / "mini-voc-seg", "val")
    masks = [read_target(s.target) for s in test.samples]
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, len(test.classes), m.shape) for m in masks]
    per_image = [confusion_matrix(m, p, len(test.classes)) for m, p in zip(masks, preds)]
    expected = segmentation_metrics(dataset_confusion(zip(masks, preds), len(test.classes)), test.classes)
    got = SEGMENTATION.evaluate(per_image, test, mini_dense.MINI_VOC_SEG)
    assert got == {name: 100.0 * value for name, value in expected.items()}


def test_depth_scores_maps_and_per_image_terms_alike(mini_root):
    test = mini_dense.MINI_KITTI_DEPTH.load(mini_root / "mini-kitti-depth", "test")
    gts = [read_target(s.target) for s in test.samples]
    maps = [np.full(g.shape, 7.5) for g in gts]
    reference = depth_metrics(gts, maps, "kitti")
    from_maps = DEPTH.evaluate(maps, test, mini_dense.MINI_KITTI_DEPTH)
    from_terms = DEPTH.evaluate([depth_terms(g, m, "kitti") for g, m in zip(gts, maps)], test,
                                mini_dense.MINI_KITTI_DEPTH)
    assert from_maps == from_terms
    assert from_maps["rmse"] == reference["rmse"] and from_maps["d1"] == 100.0 * reference["d1"]


def test_dense_heads_predict_in_the_form_evaluate_takes(mini_root):
    import torch

    fit = mini_dense.MINI_VOC_SEG.load(mini_root / "mini-voc-seg", "train")
    inputs = HeadInput((8, 16), (64, 96))
    head = SEGMENTATION.make_head(inputs, mini_dense.MINI_VOC_SEG, fit, {}, seed=0)
    pyramid = [torch.randn(2, 8, 16, 24), torch.randn(2, 16, 8, 12)]
    counts = head.predict(pyramid, fit.samples[:2])
    assert [c.shape for c in counts] == [(len(fit.classes),) * 2] * 2
    masks = [read_target(s.target) for s in fit.samples[:2]]
    assert [int(c.sum()) for c in counts] == [int((m != 255).sum()) for m in masks]
    targets = [head.target(s) for s in fit.samples[:2]]
    assert targets[0].shape == (64, 96) and torch.isfinite(head.loss(pyramid, targets))

    depth_fit = mini_dense.MINI_KITTI_DEPTH.load(mini_root / "mini-kitti-depth", "train")
    depth_head = DEPTH.make_head(inputs, mini_dense.MINI_KITTI_DEPTH, depth_fit, {}, seed=0)
    at_input = [resize_nearest(read_target(s.target), inputs.size) for s in depth_fit.samples]
    valid = np.concatenate([d[d > 1e-3] for d in at_input]).astype(np.float64)
    assert float(depth_head.module.predict.bias[0].detach()) == pytest.approx(float(np.log(valid).mean()), rel=1e-5)
    terms = depth_head.predict(pyramid, depth_fit.samples[:2])
    assert all(t is None or set(t) >= {"rmse", "d1"} for t in terms)
