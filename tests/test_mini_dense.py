"""The dense mini datasets: deterministic preparation, the official VOC and KITTI formats read back
by the project's readers and by plain parsers, and the geometry behind every annotation (tight boxes,
occlusion order, depth at object pixels, class maps agreeing with boxes, long-tailed classes)."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gaia_bench.cli import app
from gaia_bench.errors import DataError
from gaia_bench.manager import get_registries
from gaia_bench.tasks.datasets import mini_dense
from gaia_bench.tasks.datasets.lib.dense_targets import DepthTarget, DetectionTarget, SegmentationTarget
from gaia_bench.tasks.datasets.lib.kitti_depth_format import read_kitti_depth, read_nyu_depth
from gaia_bench.tasks.datasets.mini_dense import image_id, kitti_paths
from gaia_bench.tasks.datasets.lib.scene_generator import (
    CLASSES,
    DIFFICULT_VISIBLE_FRACTION,
    MIN_VISIBLE_PX,
    generate_scene,
)
from gaia_bench.tasks.datasets.lib.voc_format import read_annotation, read_image_set, read_segmentation, void_boundary, voc_colormap

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
SPECS = (mini_dense.MINI_VOC_DET, mini_dense.MINI_VOC_SEG, mini_dense.MINI_KITTI_DEPTH)
N_IMAGES = mini_dense.N_TRAIN + mini_dense.N_TEST


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dense")
    for spec in SPECS:
        spec.prepare(root / spec.directory)
    return root


@pytest.fixture(scope="module")
def scenes() -> dict:
    """Every 4th scene of the stream (both splits), regenerated as the reference geometry."""
    return {i: generate_scene(mini_dense.SEED, i) for i in range(0, N_IMAGES, 4)}


@pytest.fixture(scope="module")
def annotations(data_root) -> dict:
    det = data_root / "mini-voc-det"
    return {p.stem: read_annotation(p) for p in sorted((det / "Annotations").glob("*.xml"))}


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from the IHDR chunk."""
    data = path.read_bytes()[:26]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data[24], data[25]


# ----------------------------------------------------------------------------- preparation
def test_prepare_is_deterministic(data_root, tmp_path):
    for spec in SPECS:
        spec.prepare(tmp_path / spec.directory)
    first, second = _digests(data_root), _digests(tmp_path)
    assert first == second
    assert len(first) > 2900  # ~1000 files per dataset, so nothing was skipped


def test_splits_load_with_typed_targets(data_root):
    for spec in SPECS:
        root = data_root / spec.directory
        assert spec.verify(root) == []
        keys = {}
        for split, expected in spec.splits.items():
            samples = spec.load(root, split)
            assert len(samples) == expected
            assert all(s.path.exists() for s in samples.samples)
            keys[split] = {s.key for s in samples.samples}
        assert not keys[spec.train_split] & keys[spec.test_split]
        with pytest.raises(DataError):
            spec.load(root, "nope")
    det = mini_dense.MINI_VOC_DET.load(data_root / "mini-voc-det", "test")
    assert list(det.classes) == list(CLASSES) and mini_dense.MINI_VOC_DET.num_classes == 6
    target = det.samples[0].target
    assert isinstance(target, DetectionTarget) and (target.width, target.height) == (192, 128)
    seg = mini_dense.MINI_VOC_SEG.load(data_root / "mini-voc-seg", "val")
    assert seg.classes[0] == "background" and len(seg.classes) == mini_dense.MINI_VOC_SEG.num_classes == 7
    assert isinstance(seg.samples[0].target, SegmentationTarget) and seg.samples[0].target.mask_path.exists()
    depth = mini_dense.MINI_KITTI_DEPTH.load(data_root / "mini-kitti-depth", "test")
    assert depth.samples[0].target == DepthTarget(depth.samples[0].target.depth_path, 80.0, "kitti")
    assert depth.samples[0].key == "2011_09_26_drive_0007_sync/0000000000"
    dense = mini_dense.load_dense(data_root / "mini-kitti-depth", "test")
    assert dense.samples[0].target.kind == "nyu" and dense.samples[0].path == depth.samples[0].path


def test_registered_through_the_plugin_manager(register_plugin, host):
    if "gaia_bench.tasks.datasets.mini_dense" not in host.records:
        assert register_plugin(mini_dense, "mini-dense").ok
    datasets = get_registries().datasets
    tasks = {name: datasets.get(name).task for name in ("mini-voc-det", "mini-voc-seg", "mini-kitti-depth")}
    assert tasks == {"mini-voc-det": "detection", "mini-voc-seg": "segmentation", "mini-kitti-depth": "depth"}


# ----------------------------------------------------------------------------- VOC format
def test_voc_xml_has_the_devkit_tags_and_reads_back(data_root):
    det = data_root / "mini-voc-det"
    for xml in sorted((det / "Annotations").glob("*.xml"))[:60]:
        root = ET.parse(xml).getroot()
        assert root.tag == "annotation"
        for tag in ("folder", "filename", "size/width", "size/height", "size/depth", "segmented"):
            assert (root.findtext(tag) or "").strip(), f"{xml.name}: <{tag}>"
        assert root.findtext("folder") == "VOC2007" and root.findtext("filename") == f"{xml.stem}.jpg"
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        with Image.open(det / "JPEGImages" / f"{xml.stem}.jpg") as jpg:
            assert jpg.size == (width, height) and jpg.format == "JPEG"
        assert root.findtext("size/depth") == "3"
        objects = root.findall("object")
        assert objects
        plain = []
        for obj in objects:
            for tag in ("name", "pose", "truncated", "difficult"):
                assert (obj.findtext(tag) or "").strip(), f"{xml.name}: object <{tag}>"
            assert obj.findtext("truncated") in ("0", "1") and obj.findtext("difficult") in ("0", "1")
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin <= xmax <= width and 1 <= ymin <= ymax <= height  # 1-based, inclusive
            plain.append((obj.findtext("name"), (xmin - 1.0, ymin - 1.0, float(xmax), float(ymax)),
                          obj.findtext("difficult") == "1"))
        ann = read_annotation(xml)
        assert (ann.width, ann.height) == (width, height)
        assert [(o.name, o.box, o.difficult) for o in ann.objects] == plain


def test_image_sets_agree_with_files_and_annotations(data_root, annotations):
    det = data_root / "mini-voc-det"
    main = {split: read_image_set(det, split) for split in ("train", "val", "trainval", "test")}
    assert sorted(main["train"] + main["val"]) == sorted(main["trainval"]) and not set(main["train"]) & set(main["val"])
    assert len(main["trainval"]) == 240 and len(main["test"]) == 80 and not set(main["trainval"]) & set(main["test"])
    everything = set(main["trainval"]) | set(main["test"])
    for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml"), ("SegmentationClass", ".png")):
        assert {p.stem for p in (det / folder).glob(f"*{suffix}")} == everything
    for split, ids in main.items():
        for name in CLASSES:
            lines = (det / "ImageSets" / "Main" / f"{name}_{split}.txt").read_text().splitlines()
            assert [line.split()[0] for line in lines] == ids
            for line in lines:
                iid, flag = line.split()
                mine = [o for o in annotations[iid].objects if o.name == name]
                expected = -1 if not mine else (0 if all(o.difficult for o in mine) else 1)
                assert int(flag) == expected, line
    seg = data_root / "mini-voc-seg"
    sets = {split: read_image_set(seg, split, "Segmentation") for split in ("train", "val", "trainval")}
    assert len(sets["train"]) == 240 and len(sets["val"]) == 80 and sets["trainval"] == sets["train"] + sets["val"]
    assert {p.stem for p in (seg / "SegmentationClass").glob("*.png")} == set(sets["trainval"])


def test_segmentation_pngs_use_the_voc_palette_and_void(data_root):
    cmap = voc_colormap()
    assert [tuple(cmap[i]) for i in (0, 1, 2, 3, 15, 255)] == [
        (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (192, 128, 128), (224, 224, 192)]
    seg = data_root / "mini-voc-seg"
    for png in sorted((seg / "SegmentationClass").glob("*.png"))[:80]:
        assert _png_header(png) == (8, 3)  # 8-bit, indexed colour
        with Image.open(png) as image:
            assert image.mode == "P"
            assert image.getpalette()[:768] == cmap.flatten().tolist()
        values = set(np.unique(read_segmentation(png)).tolist())
        assert 255 in values and values <= set(range(len(CLASSES) + 1)) | {255}


# ----------------------------------------------------------------------------- KITTI / NYU format
def test_depth_pngs_are_16_bit_metres_times_256(data_root, scenes):
    root = data_root / "mini-kitti-depth"
    fractions = []
    for index, scene in scenes.items():
        rgb, sparse, dense = kitti_paths(index)
        with Image.open(root / rgb) as image:
            assert np.array_equal(np.array(image), scene.image)  # lossless raw frame
        assert _png_header(root / sparse) == (16, 0)
        with Image.open(root / sparse) as image:
            raw = np.array(image).astype(np.int64)
        valid = raw > 0
        assert (raw == 0).any() and raw.max() <= 80 * 256
        assert valid.any(axis=1).sum() <= scene.depth.shape[0] // 4 + 1  # lidar scan lines
        np.testing.assert_allclose(raw[valid] / 256.0, scene.depth[valid], atol=0.5 / 256 + 1e-6)
        metres = read_kitti_depth(root / sparse)
        assert metres.dtype == np.float32 and np.array_equal(metres, (raw / 256.0).astype(np.float32))
        fractions.append(valid.mean())

        assert _png_header(root / dense) == (16, 0)
        nyu = read_nyu_depth(root / dense)
        assert np.array_equal(nyu > 0, (scene.depth > 0) & (scene.depth <= 65.535))
        np.testing.assert_allclose(nyu[nyu > 0], scene.depth[nyu > 0], atol=0.0005 + 1e-6)
    assert 0.05 <= float(np.mean(fractions)) <= 0.10


# ----------------------------------------------------------------------------- geometry
def test_boxes_are_the_tight_boxes_of_visible_masks(scenes, annotations):
    for index, scene in scenes.items():
        objects = annotations[image_id(index)].objects
        assert 1 <= len(objects) == len(scene.instances) <= 5
        for obj, inst in zip(objects, scene.instances):
            ys, xs = np.nonzero(inst.mask)
            x1, y1, x2, y2 = obj.box
            assert x1 <= xs.min() and xs.max() + 1 <= x2 and y1 <= ys.min() and ys.max() + 1 <= y2
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert obj.name == inst.name and inst.mask.sum() >= MIN_VISIBLE_PX
            assert obj.difficult == (inst.mask.sum() / inst.amodal.sum() < DIFFICULT_VISIBLE_FRACTION) == inst.difficult


def test_the_nearer_object_occludes_the_farther():
    overlaps = 0
    for index in range(150):
        scene = generate_scene(1, index)
        for a, b in itertools.combinations(scene.instances, 2):
            both = a.amodal & b.amodal
            if not both.any():
                continue
            overlaps += 1
            near, far = (a, b) if a.depth_m < b.depth_m else (b, a)
            assert not far.mask[both].any()  # hidden there: by `near`, or by something nearer still
            assert (scene.depth[both] <= np.float32(near.depth_m)).all()
        for inst in scene.instances:  # visible = the shape minus every nearer shape
            nearer = [o.amodal for o in scene.instances if o.depth_m < inst.depth_m]
            hidden = np.logical_or.reduce(nearer) if nearer else np.zeros_like(inst.mask)
            assert np.array_equal(inst.mask, inst.amodal & ~hidden)
    assert overlaps >= 10


def test_depth_is_the_object_depth_on_objects_and_the_ground_elsewhere(data_root, scenes):
    root = data_root / "mini-kitti-depth"
    for index, scene in scenes.items():
        sparse = read_kitti_depth(root / kitti_paths(index)[1])
        for inst in scene.instances:
            assert (scene.depth[inst.mask] == np.float32(inst.depth_m)).all()
            hits = inst.mask & (sparse > 0)
            np.testing.assert_allclose(sparse[hits], inst.depth_m, atol=0.5 / 256 + 1e-5)
        cam = scene.camera
        rows = np.arange(cam.rows) + 0.5
        off_objects = scene.instance_map == 0
        ground = off_objects & (rows > cam.horizon)[:, None]
        expected = np.broadcast_to(cam.focal * cam.height_m / (rows - cam.horizon), ground.shape[::-1]).T
        np.testing.assert_allclose(scene.depth[ground], expected[ground], rtol=1e-5)
        assert (scene.depth[off_objects & ~ground] == 0).all()  # the wall: no depth


def test_class_maps_agree_with_boxes(data_root, scenes, annotations):
    seg = data_root / "mini-voc-seg"
    for index, scene in scenes.items():
        labels = read_segmentation(seg / "SegmentationClass" / f"{image_id(index)}.png")
        names = {o.name for o in annotations[image_id(index)].objects}
        assert {CLASSES[v - 1] for v in np.unique(labels) if v not in (0, 255)} <= names
        assert set(np.unique(labels[scene.instance_map == 0]).tolist()) <= {0, 255}
        assert np.array_equal(labels == 255, void_boundary(scene.instance_map))
        labelled = (labels != 0) & (labels != 255)
        owner = scene.instance_map[labelled]  # each labelled pixel lies on a visible object of its class
        assert (owner > 0).all()
        owner_class = np.array([0] + [inst.label + 1 for inst in scene.instances])[owner]
        assert np.array_equal(labels[labelled], owner_class)
        for inst in scene.instances:
            if inst.mask.sum() >= 100:
                assert (labels[inst.mask] == inst.label + 1).any(), f"{image_id(index)}: {inst.name} is all void"


def test_classes_are_long_tailed(annotations):
    counts = Counter(o.name for ann in annotations.values() for o in ann.objects)
    freq = [counts[name] for name in CLASSES]
    assert all(a > b for a, b in zip(freq, freq[1:])), freq
    assert freq[0] >= 8 * freq[-1] and freq[-1] >= 15, freq
    test_ids = [image_id(i) for i in range(mini_dense.N_TRAIN, N_IMAGES)]
    in_test = Counter(o.name for iid in test_ids for o in annotations[iid].objects)
    assert all(in_test[name] >= 3 for name in CLASSES), in_test


# ----------------------------------------------------------------------------- verify
def test_verify_names_deleted_and_modified_files(data_root, tmp_path, register_plugin, host):
    if "gaia_bench.tasks.datasets.mini_dense" not in host.records:
        register_plugin(mini_dense, "mini-dense")
    for name in ("mini-voc-det", "mini-kitti-depth"):
        shutil.copytree(data_root / name, tmp_path / name)
    ok = runner.invoke(app, ["datasets", "verify", "mini-voc-det", "--data-root", str(tmp_path)], env=WIDE)
    assert ok.exit_code == 0 and "mini-voc-det: ok" in ok.output, ok.output

    det = tmp_path / "mini-voc-det"
    (det / "JPEGImages" / "000007.jpg").unlink()
    xml = det / "Annotations" / "000008.xml"
    xml.write_text(xml.read_text().replace("<pose>Unspecified</pose>", "<pose>Left</pose>", 1))
    test_list = det / "ImageSets" / "Main" / "test.txt"
    test_list.write_text("".join(line + "\n" for line in test_list.read_text().splitlines()[:-1]))
    problems = mini_dense.MINI_VOC_DET.verify(det)
    assert any("missing file" in p and "000007.jpg" in p for p in problems), problems
    assert any("altered file" in p and "000008.xml" in p for p in problems), problems
    assert any("lists 79 images, expected 80" in p for p in problems), problems
    assert all("gaia-bench datasets prepare mini-voc-det --force" in p for p in problems)

    depth = tmp_path / "mini-kitti-depth"
    (depth / kitti_paths(250)[1]).unlink()
    result = runner.invoke(app, ["datasets", "verify", "mini-kitti-depth", "--data-root", str(tmp_path)], env=WIDE)
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "missing file" in out and "groundtruth/image_02/0000000010.png" in out
    assert "gaia-bench datasets prepare mini-kitti-depth --force" in out
    missing = mini_dense.MINI_VOC_SEG.verify(tmp_path / "mini-voc-seg")
    assert len(missing) == 1 and "does not exist" in missing[0] and "prepare mini-voc-seg" in missing[0]
