"""``--adapt lgd``: the label-guided teacher's modules on hand-made tensors (descriptors, PointNet,
masks and pooling, the painting of each object's embedding into its box on each level, the
relation adapter's per-image attention, the distillation loss), the teacher kept out of the
evaluated detector, and one short end-to-end run on mini-voc-det through the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gaia_bench.api import HeadInput
from gaia_bench.cli import app
from gaia_bench.manager import get_registries
from gaia_bench.plugins.adaptations.lib.lgd_teacher import (
    LabelEncoder,
    LabelGuidedTeacher,
    box_masks,
    descriptors,
    mask_pool,
    paint,
)
from gaia_bench.plugins.adaptations.lib.lgd_training import LGDModel, distillation_loss, instance_norm
from gaia_bench.store import ResultsStore
from gaia_bench.tasks.types.lib.faster_rcnn import DetectionHead, build_detector

runner = CliRunner()
SIZE = (64, 96)  # input (h, w)


def _objects():
    """Two images: two objects, then one."""
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 24.0], [48.0, 32.0, 96.0, 64.0]]), torch.tensor([[0.0, 0.0, 16.0, 16.0]])]
    labels = [torch.tensor([1, 3]), torch.tensor([2])]
    return boxes, labels


def _maps(channels: int = 16, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, channels, SIZE[0] // s, SIZE[1] // s, generator=g) for s in (8, 16, 32)]


def test_descriptors_and_the_pointnet_label_encoder():
    boxes, labels = _objects()
    d = descriptors(boxes[0], labels[0], SIZE, num_classes=3)
    assert d.shape == (2, 7) and d.min() >= -1 and d.max() <= 1
    assert torch.allclose(d[0, :4], torch.tensor([8 / 96, 8 / 64, 40 / 96, 24 / 64]) * 2 - 1)
    assert d[0, 4:].tolist() == [1, -1, -1] and d[1, 4:].tolist() == [-1, -1, 1]

    torch.manual_seed(0)
    encoder = LabelEncoder(7, 16)
    x = torch.randn(5, 7)
    out = encoder(x, [3, 0, 2])
    assert out.shape == (5, 16)
    swapped = encoder(x[[2, 0, 1, 3, 4]], [3, 0, 2])  # the objects' order within an image does not matter
    assert torch.allclose(swapped, out[[2, 0, 1, 3, 4]], atol=1e-6)
    other = encoder(torch.cat([x[:3], torch.randn(2, 7)]), [3, 0, 2])  # nor do another image's objects
    assert torch.allclose(other[:3], out[:3], atol=1e-6)


def test_box_masks_and_mask_pooling():
    masks = box_masks(torch.tensor([[8.0, 8.0, 40.0, 24.0], [1.0, 1.0, 2.0, 2.0]]), SIZE, (8, 12))
    grid = masks.view(2, 8, 12)
    assert grid[0].nonzero().tolist() == [[r, c] for r in (1, 2) for c in (1, 2, 3, 4)]  # cell centres inside
    assert grid[1].nonzero().tolist() == [[0, 0]]  # too small for any centre: the cell of its centre
    feature = torch.arange(2 * 96, dtype=torch.float32).view(2, 8, 12)
    pooled = mask_pool(feature, masks)
    assert pooled.shape == (2, 2)
    assert torch.allclose(pooled[0], feature[:, 1:3, 1:5].mean(dim=(1, 2)))
    assert torch.allclose(pooled[1], feature[:, 0, 0])


def test_paint_writes_each_embedding_into_its_box_only():
    masks = box_masks(torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 16.0, 48.0, 48.0]]), SIZE, (8, 12))
    e = torch.tensor([[1.0, 2.0], [10.0, 20.0]])
    painted = paint(e, masks, (8, 12))
    assert painted.shape == (2, 8, 12)
    assert painted[:, 0, 0].tolist() == [1.0, 2.0]  # first box only
    assert painted[:, 2, 2].tolist() == [11.0, 22.0]  # overlap: the sum
    assert painted[:, 5, 5].tolist() == [10.0, 20.0]  # second box only
    outside = (masks.sum(0) == 0).view(8, 12)
    assert outside.any() and painted[:, outside].abs().sum() == 0


def test_each_level_gets_its_own_embedding_inside_the_box_and_zero_elsewhere():
    torch.manual_seed(0)
    teacher = LabelGuidedTeacher(num_classes=3, channels=16, heads=4)
    maps = _maps()
    boxes, labels = _objects()
    painted = teacher.paint_levels(maps, boxes, labels, SIZE)
    levels = teacher.interactions(maps, boxes, labels, SIZE)
    assert [p.shape for p in painted] == [m.shape for m in maps]
    firsts = []
    for p, (attended, masks) in zip(painted, levels):
        embeddings = teacher.object_proj(attended).split([2, 1])
        for image in range(2):  # the boxes do not overlap
            covered = masks[image].sum(0).view(p.shape[-2:]).bool()
            assert p[image][:, ~covered].abs().sum() == 0
            for mask, embedding in zip(masks[image], embeddings[image]):
                inside = mask.view(p.shape[-2:]).bool()
                assert torch.allclose(p[image][:, inside], embedding[:, None].expand(-1, int(inside.sum())), atol=1e-5)
        firsts.append(embeddings[0][0])
    # Each level paints its own embedding: the appearance (the attention's query) is pooled per level.
    assert not torch.allclose(firsts[0], firsts[1]) and not torch.allclose(firsts[1], firsts[2])
    out = teacher(maps, boxes, labels, SIZE)
    assert [o.shape for o in out] == [m.shape for m in maps]
    empty = teacher(maps, [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.long)] * 2, SIZE)
    assert [o.shape for o in empty] == [m.shape for m in maps]


def test_objects_attend_only_within_their_image():
    torch.manual_seed(0)
    teacher = LabelGuidedTeacher(num_classes=3, channels=16, heads=4)
    maps = _maps()
    boxes, labels = _objects()
    base = teacher(maps, boxes, labels, SIZE)
    changed = teacher(maps, boxes, [labels[0], torch.tensor([3])], SIZE)  # image 1's label changes
    assert all(torch.allclose(a[0], b[0], atol=1e-6) for a, b in zip(base, changed))
    assert not torch.allclose(base[0][1], changed[0][1])


def test_distillation_loss_is_normalised_and_leaves_the_teacher_alone():
    student = [f.requires_grad_() for f in _maps(batch=1)] + [torch.randn(1, 16, 1, 1, requires_grad=True)]
    teacher = [(3 * f + 5).detach().requires_grad_() for f in student]
    identity = nn.Identity()
    assert distillation_loss(student, teacher, identity) < 1e-6  # scale and shift per channel: normalised away
    assert instance_norm(student[-1]).abs().sum() == 0  # a 1x1 map normalises to zeros
    other = [torch.randn_like(f) for f in student]
    loss = distillation_loss(student, other, identity)
    loss.backward()
    assert loss > 0.5 and student[0].grad is not None
    detached = [f.detach().requires_grad_() for f in student]
    distillation_loss(detached, teacher, identity, detach_student=True)  # no graph to the student
    assert all(t.grad is None for t in teacher)


class _TinyBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.b = nn.Conv2d(8, 12, 3, stride=2, padding=1)

    def pyramid(self, x):
        a = self.a(x)
        return [a, self.b(a)]


def test_the_teacher_trains_with_the_detector_and_stays_out_of_the_evaluated_model():
    torch.manual_seed(0)
    head = DetectionHead(HeadInput((8, 12), SIZE), num_classes=3, fpn_channels=16, representation=32, seed=0)
    backbone = _TinyBackbone()
    model = LGDModel(head, backbone, levels=2, train_batchnorm=False, num_classes=3, heads=4, weight=1.0,
                     distill_from=1)
    boxes, labels = _objects()
    batch = (torch.randn(2, 3, *SIZE), [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)])
    model.train()
    for _ in range(2):
        loss, parts = model(batch)
        loss.backward()
    assert set(parts) == {"detection", "teacher_detection", "distill"} and len(model.curves["distill"]) == 2
    assert all(p.grad is not None for p in model.teacher.parameters())
    assert model.teacher.map_proj.weight.grad.abs().sum() > 0
    evaluated = {id(p) for p in [*head.module.parameters(), *backbone.parameters()]}
    assert not evaluated & {id(p) for p in model.parameter_groups()["teacher"]}
    fresh = build_detector((8, 12), 3, SIZE, 0, 16, 32)
    assert head.module.state_dict().keys() == fresh.state_dict().keys()  # the detector holds no teacher weight
    assert model.extra_params() > 0


@pytest.mark.extended  # about 45 s of job time on 2 loaded cores: over the suite's budget for one test
def test_lgd_runs_end_to_end_and_records_its_cost(tmp_path):
    store, data_root = tmp_path / "lgd.db", tmp_path / "data"
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--init", "random", "--dataset", "mini-voc-det",
                                 "--adapt", "lgd", "--shots", "10%", "--store", str(store), "--data-root",
                                 str(data_root), "--hp", "det_min_iters=2", "--hp", "det_max_iters=2",
                                 "--hp", "det_eval_every=6", "--hp", "lgd_heads=4"])
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        (rec,) = s.query()
    assert rec["status"] == "done", rec.get("error")
    details, lgd = rec["details"], rec["details"]["lgd"]
    steps = details["schedule"]["iterations_run"]
    assert steps == 6 and all(len(lgd["curves"][k]) == steps for k in ("distill", "teacher_detection", "detection"))
    assert lgd["distill_from_step"] == 1 and lgd["extra_params"] > lgd["teacher_params"] > 0
    cost = lgd["cost_vs_finetune"]
    assert cost["lgd_activation_mb"] > cost["finetune_activation_mb"] > 0 and cost["extra_memory_mb"] > 0
    assert {"lgd_teacher", "lgd_cost_probe", "head_train"} <= set(rec["timings"])
    backbone = sum(p.numel() for p in get_registries().backbones.get("test_resnet").build().parameters())
    detector = build_detector(details["head"]["in_channels"], 6, tuple(details["input_size"]), 0,
                              details["head"]["fpn_channels"], details["head"]["representation"])
    assert rec["trainable_params"] == backbone + sum(p.numel() for p in detector.parameters())  # the student only
    assert {"mAP_voc07_11pt", "mAP_area"} <= set(rec["metrics"])

    bad = runner.invoke(app, ["run", "--model", "test_resnet", "--init", "random", "--dataset", "mini-voc-det",
                              "--adapt", "lgd", "--shots", "10%", "--store", str(store), "--data-root", str(data_root),
                              "--hp", "lgd_heads=7"])
    with ResultsStore(store) as s:
        failed = [r for r in s.query() if r["status"] == "failed"]
    assert bad.exit_code != 0 or failed
    assert "lgd_heads=7 does not divide det_fpn_channels=64" in (failed[0]["error"] if failed else bad.output)
