"""GV-B's six dense datasets (voc_det, voc_seg, widerface, citypersons, kitti, nyuv2) on tiny replicas
in their official formats (tests/gvb_dense_replicas.py): what the readers return (counts, boxes,
flags, masks, depth units, splits), verify's lines on clean and broken replicas, the metric family
each dataset's targets select, and short end-to-end runs through the CLI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

import gvb_dense_replicas as R  # noqa: E402

from gaia_bench.cli import app  # noqa: E402
from gaia_bench.errors import DataError  # noqa: E402
from gaia_bench.manager import get_registries  # noqa: E402
from gaia_bench.store import ResultsStore  # noqa: E402
from gaia_bench.tasks.datasets import gvb_citypersons, gvb_depth, gvb_voc, gvb_widerface  # noqa: E402
from gaia_bench.tasks.datasets.lib.dense_targets import DepthTarget, FaceTarget, PedestrianTarget, SegmentationTarget  # noqa: E402
from gaia_bench.api import Samples  # noqa: E402
from gaia_bench.tasks.types.detection import DETECTION  # noqa: E402
from gaia_bench.tasks.datasets.lib.gvb_dense_common import MAX_LINES_PER_KIND, Problems  # noqa: E402
from gaia_bench.tasks.datasets.lib.kitti_depth_format import read_kitti_depth, read_nyu_depth  # noqa: E402
from gaia_bench.tasks.types.lib.metrics_detection import ImageDetections  # noqa: E402
from gaia_bench.tasks.datasets.lib.voc_format import read_segmentation  # noqa: E402

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    """voc, widerface, citypersons and kitti replicas (NYU gets a fresh one per test: loading its test
    split extracts files)."""
    root = tmp_path_factory.mktemp("gvb-dense")
    R.write_voc(root)
    R.write_widerface(root)
    R.write_citypersons(root)
    R.write_kitti(root)
    return root


def _spec(name: str):
    return get_registries().datasets.get(name)


# ----------------------------------------------------------------------------- registration
def test_the_six_are_registered_with_official_splits_and_metrics():
    expected = {  # name: (task, classes, train split, test split, sizes, primary, directory)
        "voc_det": ("detection", 20, "trainval", "test", {"trainval": 16551, "test": 4952}, "mAP", "VOCdevkit"),
        "voc_seg": ("segmentation", 21, "trainaug", "val", {"trainaug": 10582, "val": 1449}, "mIoU", "VOCdevkit"),
        "widerface": ("detection", 1, "train", "val", {"train": 12880, "val": 3226}, "ap_easy", "widerface"),
        "citypersons": ("detection", 1, "train", "val", {"train": 2975, "val": 500}, "mr", "citypersons"),
        "kitti": ("depth", None, "train", "test", {"train": 23158, "test": 652}, "rmse", "kitti"),
        "nyuv2": ("depth", None, "train", "test", {"train": 24231, "test": 654}, "rmse", "nyu_depth_v2"),
    }
    registries = get_registries()
    for name, (task, classes, train, test, sizes, primary, directory) in expected.items():
        spec = registries.datasets.get(name)
        assert (spec.task, spec.num_classes, spec.train_split, spec.test_split) == (task, classes, train, test), name
        assert dict(spec.splits) == sizes and spec.primary_metric == primary and spec.directory == directory, name
        assert spec.prepare_hint and spec.prepare is None, name
        lower_is_better = primary in ("mr", "rmse")
        assert registries.tasks.get(task).metric(primary).higher_is_better is not lower_is_better, name
    assert _spec("voc_det").download is not None and _spec("widerface").download is None


# ----------------------------------------------------------------------------- readers
def test_voc_det_reads_07_plus_12_trainval_and_07_test(replica):
    root = replica / "VOCdevkit"
    train, test = gvb_voc.load_detection(root, "trainval"), gvb_voc.load_detection(root, "test")
    assert len(train) == 7 and len(test) == 3 and len(train.classes) == 20
    assert [s.key for s in train.samples][:5] == [f"VOC2007/{i}" for i in R.VOC07_TRAINVAL] + ["VOC2012/2008_000002"]
    assert [s.key for s in test.samples] == [f"VOC2007/{i}" for i in R.VOC07_TEST]
    first = train.samples[0]
    assert first.path == root / "VOC2007" / "JPEGImages" / "000005.jpg" and first.path.exists()
    # XML holds 1-based inclusive pixels; targets are 0-based continuous, as written
    assert first.target.boxes == ((6.0, 8.0, 30.0, 56.0), (50.0, 20.0, 90.0, 44.0))
    assert first.target.labels == (R.PERSON, R.CAR) and (first.target.width, first.target.height) == (96, 64)
    difficult = {s.key: s.target.difficult for s in train.samples}
    assert difficult["VOC2007/000007"] == (False, True) and difficult["VOC2007/000005"] == (False, False)
    with pytest.raises(DataError, match="has no split 'val'"):
        gvb_voc.load_detection(root, "val")


def test_voc_seg_trainaug_joins_voc_masks_and_sbd_masks(replica, tmp_path):
    root = replica / "VOCdevkit"
    splits = {s: gvb_voc.load_segmentation(root, s) for s in ("train", "val", "aug", "trainaug")}
    assert {s: len(v) for s, v in splits.items()} == R.VOC_SIZES["seg"]
    assert len(splits["val"].classes) == 21 and splits["val"].classes[0] == "background"
    # aug = SegmentationClassAug minus train and val (2008_000002 has an SBD mask too, but is in train)
    assert [s.key for s in splits["aug"].samples] == [f"VOC2012/{i}" for i in R.VOC12_AUG]
    folders = {s.key: s.target.mask_path.parent.name for s in splits["trainaug"].samples}
    assert folders == {"VOC2012/2008_000002": "SegmentationClass", "VOC2012/2008_000003": "SegmentationClass",
                       "VOC2012/2008_000010": "SegmentationClassAug", "VOC2012/2008_000011": "SegmentationClassAug"}
    for sample in splits["trainaug"].samples:
        assert isinstance(sample.target, SegmentationTarget) and sample.target.ignore_index == 255
        values = set(np.unique(read_segmentation(sample.target.mask_path)).tolist())  # palette and 'L' PNGs
        assert values == {0, R.PERSON + 1, R.CAR + 1, 255}
    # mmseg's aug.txt, when present, is the list
    copy = tmp_path / "VOCdevkit"
    shutil.copytree(root, copy)
    (copy / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt").write_text("2008_000011\n")
    assert [s.key for s in gvb_voc.load_segmentation(copy, "aug").samples] == ["VOC2012/2008_000011"]


def test_widerface_reads_boxes_and_the_official_setting_lists(replica):
    root = replica / "widerface"
    train, val = gvb_widerface.load(root, "train"), gvb_widerface.load(root, "val")
    assert len(train) == 4 and len(val) == 3 and train.classes == ["face"]
    assert all(isinstance(s.target, FaceTarget) for s in train.samples + val.samples)
    first = train.samples[0]
    assert first.key == "0--Parade/0_Parade_marchingband_1_5.jpg"
    assert first.path == root / "WIDER_train" / "images" / "0--Parade" / "0_Parade_marchingband_1_5.jpg"
    assert first.target.boxes == ((10.0, 8.0, 30.0, 32.0), (50.0, 10.0, 68.0, 32.0))  # x y w h -> x y x+w y+h
    # the zero-width face and the invalid face are never trained on, nor kept by train's proxy settings
    assert train.samples[1].target.difficult == (False, True) and train.samples[2].target.difficult == (True, False)
    assert train.samples[2].target.easy == (False, True)
    # val: the keep masks come from wider_{easy,medium,hard}_val.mat
    faces = val.samples[0].target
    assert (faces.easy, faces.medium, faces.hard) == ((True, False, False), (True, True, False), (True, True, False))
    assert val.samples[1].target.boxes == () and val.samples[2].target.hard == (True,)
    with pytest.raises(DataError, match="no split 'test'"):
        gvb_widerface.load(root, "test")


def test_citypersons_reads_pedestrians_visibility_and_ignore_boxes(replica):
    root = replica / "citypersons"
    train, val = gvb_citypersons.load(root, "train"), gvb_citypersons.load(root, "val")
    assert len(train) == 3 and len(val) == 2 and train.classes == ["pedestrian"]
    keys = [s.key for s in train.samples]
    assert keys == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019", "bochum/bochum_000000_000313"]
    assert train.samples[0].path.name == "aachen_000000_000019_leftImg8bit.png" and train.samples[0].path.exists()
    rider = train.samples[0].target
    assert isinstance(rider, PedestrianTarget) and rider.ignore == (False, True) and rider.difficult == (False, True)
    assert rider.boxes[0] == (10.0, 8.0, 24.0, 48.0) and (rider.width, rider.height) == R.CP_SIZE
    assert train.samples[1].target.visibility == pytest.approx((0.5,))  # 16 x 22 visible of 16 x 44
    assert train.samples[2].target.ignore == (False, True)  # an ignore region
    assert val.samples[1].target.boxes == ()  # an image without persons still counts (FPPI)


def test_citypersons_reads_the_repository_mat_files_the_same_way(replica, tmp_path):
    root = R.write_citypersons(tmp_path, annotations="mat")
    assert not (root / "gtBboxCityPersons").exists() and (root / "annotations" / "anno_val.mat").exists()
    for split in ("train", "val"):
        from_mat = gvb_citypersons.load(root, split)
        from_json = gvb_citypersons.load(replica / "citypersons", split)
        assert [s.key for s in from_mat.samples] == [s.key for s in from_json.samples]
        assert [s.target for s in from_mat.samples] == [s.target for s in from_json.samples]
    assert gvb_citypersons.verify(root, R.CP_SIZES) == []
    (root / "annotations" / "anno_train.mat").write_bytes(b"MATLAB 5.0 garbage")
    (problem,) = gvb_citypersons.verify(root, R.CP_SIZES)
    assert "anno_train.mat: not CityPersons' anno_train.mat" in problem and "cvgroup-njust/CityPersons" in problem


def test_kitti_eigen_lists_skip_frames_without_ground_truth(replica):
    root = replica / "kitti"
    train, test = gvb_depth.load_kitti(root, "train"), gvb_depth.load_kitti(root, "test")
    assert len(train) == 4 and len(test) == 2  # the 'None' line is not evaluated
    assert [s.key for s in test.samples] == ["2011_09_26_drive_0002_sync/0000000005", "2011_09_26_drive_0002_sync/0000000007"]
    sample = test.samples[0]
    assert isinstance(sample.target, DepthTarget) and sample.target.kind == "kitti" and sample.target.max_depth == 80.0
    assert sample.target.depth_path.parts[-6] == "val"  # found under data_depth_annotated/val
    assert train.samples[0].target.depth_path.parts[-6] == "train"
    depth = read_kitti_depth(sample.target.depth_path)  # metres from value / 256
    truth = R._kitti_depth(4 + 0)
    assert depth.shape == R.KITTI_SHAPE and np.count_nonzero(depth) == depth[::2, ::3].size
    assert np.allclose(depth[::2, ::3], truth[::2, ::3], atol=1 / 256)


def test_nyu_extracts_the_official_test_set_from_the_labeled_mat(tmp_path):
    root = R.write_nyu(tmp_path)
    test = gvb_depth.load_nyu(root, "test")
    assert [s.key for s in test.samples] == ["bathroom/rgb_00002", "kitchen/rgb_00000"]  # sceneTypes, 0-based index
    assert sorted(p.name for p in (root / "official_splits").iterdir()) == ["test"]  # no partial copy left
    sample = test.samples[1]
    assert sample.target.kind == "nyu" and sample.target.max_depth == 10.0
    depth = read_nyu_depth(sample.target.depth_path)  # millimetres -> metres
    assert depth.shape == R.NYU_SHAPE
    assert np.allclose(depth, R._nyu_depth(100), atol=1e-3)
    with Image.open(sample.path) as img:
        rgb = np.asarray(img)
    assert rgb.shape == (*R.NYU_SHAPE, 3) and rgb[:5].max() < 32 and rgb[240, 320].max() > 100  # white frame blacked out (JPEG noise aside)
    train = gvb_depth.load_nyu(root, "train")
    assert [s.key for s in train.samples] == ["kitchen_0028a/rgb_00000", "kitchen_0028a/rgb_00007", "office_0004/rgb_00003"]
    (root / gvb_depth.NYU_TRAIN_LIST).write_text("/office_0004/rgb_00003.jpg /office_0004/sync_depth_00003.png 518.8579\n")
    (listed,) = gvb_depth.load_nyu(root, "train").samples
    assert listed.target.depth_path == root / "sync" / "office_0004" / "sync_depth_00003.png"


def test_percentage_shot_subsets_take_whole_images_deterministically(replica):
    from gaia_bench.shots import parse_shot, sample_subset

    loads = {"voc_det": (gvb_voc.load_detection, replica / "VOCdevkit", "trainval"),
             "widerface": (gvb_widerface.load, replica / "widerface", "train"),
             "citypersons": (gvb_citypersons.load, replica / "citypersons", "train"),
             "kitti": (gvb_depth.load_kitti, replica / "kitti", "train")}
    for name, (load, root, split) in loads.items():
        train = load(root, split)
        keys = [s.key for s in train.samples]
        subset = sample_subset(train.label_sets(), keys, parse_shot("50%"), 0, train.single_label)
        assert len(subset) == (len(train) + 1) // 2, name  # half, rounded half up
        assert subset == sample_subset(train.label_sets(), keys, parse_shot("50%"), 0, train.single_label), name
        covered = {c for i in subset for c in train.label_sets()[i]}
        assert covered == {c for labels in train.label_sets() for c in labels}, name  # every class kept


# ----------------------------------------------------------------------------- verify
def test_clean_replicas_verify_clean(replica, tmp_path):
    assert gvb_voc.verify_detection(replica / "VOCdevkit", R.VOC_PARTS) == []
    assert gvb_voc.verify_segmentation(replica / "VOCdevkit", R.VOC_SIZES["seg"]) == []
    assert gvb_widerface.verify(replica / "widerface", R.WIDER_SIZES) == []
    assert gvb_citypersons.verify(replica / "citypersons", R.CP_SIZES) == []
    assert gvb_depth.verify_kitti(replica / "kitti", R.KITTI_LINES, R.KITTI_SIZES) == []
    nyu = R.write_nyu(tmp_path)
    assert gvb_depth.verify_nyu(nyu, R.NYU_SIZES) == []  # test split still inside the .mat
    gvb_depth.load_nyu(nyu, "test")
    assert gvb_depth.verify_nyu(nyu, R.NYU_SIZES) == []  # and once extracted
    # against the official sizes, only the counts differ
    result = runner.invoke(app, ["datasets", "verify", "voc_det", "--data-root", str(replica)], env=WIDE)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 3 and all("found, expected" in line for line in lines), result.output
    assert "VOC2007 ImageSets/Main/trainval.txt: 4 found, expected 5011" in result.output


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_broken_replicas_get_one_line_per_problem_with_the_fix(replica, tmp_path):
    data = tmp_path / "broken"
    shutil.copytree(replica, data)
    voc = data / "VOCdevkit" / "VOC2007"
    (voc / "JPEGImages" / "000009.jpg").unlink()
    _truncate(voc / "JPEGImages" / "000012.jpg")
    (voc / "Annotations" / "000001.xml").unlink()
    xml = voc / "Annotations" / "000002.xml"
    xml.write_text(xml.read_text().replace("<name>car</name>", "<name>spaceship</name>"))
    problems = gvb_voc.verify_detection(data / "VOCdevkit", R.VOC_PARTS)
    assert len(problems) == 4, problems
    assert any("000009.jpg" in p and "missing" in p for p in problems)
    assert any("000012.jpg is truncated" in p for p in problems)
    assert any("missing" in p and "000001.xml" in p for p in problems)
    assert any("unknown class 'spaceship'" in p for p in problems)
    assert all("gaia-bench datasets prepare voc_det" in p or "tar" in p for p in problems)

    wider = data / "widerface"
    _truncate(wider / "WIDER_val" / "images" / "0--Parade" / "0_Parade_marchingband_1_20.jpg")
    shutil.copy(wider / "WIDER_val" / "images" / "1--Handshaking" / "1_Handshaking_x_3.jpg",
                wider / "WIDER_val" / "images" / "1--Handshaking" / "stray.jpg")
    (wider / "eval_tools" / "ground_truth" / "wider_hard_val.mat").unlink()
    problems = gvb_widerface.verify(wider, R.WIDER_SIZES)
    assert len(problems) == 3, problems
    assert any("0_Parade_marchingband_1_20.jpg is truncated" in p for p in problems)
    assert any("unexpected file" in p and "stray.jpg" in p for p in problems)
    assert any("wider_hard_val.mat" in p and "eval_tools.zip" in p for p in problems)
    with pytest.raises(DataError, match="wider_hard_val.mat"):
        gvb_widerface.load(wider, "val")

    city = data / "citypersons"
    (city / "leftImg8bit" / "train" / "aachen" / "aachen_000001_000019_leftImg8bit.png").unlink()
    (city / "gtBboxCityPersons" / "val" / "munster" / "munster_000000_000019_gtBboxCityPersons.json").write_text("{")
    problems = gvb_citypersons.verify(city, R.CP_SIZES)
    assert len(problems) == 2, problems
    assert any("aachen_000001_000019_leftImg8bit.png" in p and "leftImg8bit_trainvaltest.zip" in p for p in problems)
    assert any("munster_000000_000019_gtBboxCityPersons.json: not a gtBboxCityPersons annotation" in p for p in problems)
    shutil.rmtree(city / "gtBboxCityPersons" / "val")
    assert any("missing" in p and "gtBboxCityPersons/val" in p and "gtBbox_cityPersons_trainval.zip" in p
               for p in gvb_citypersons.verify(city, R.CP_SIZES))

    kitti = data / "kitti"
    (kitti / "data_depth_annotated" / "train" / "2011_09_26_drive_0001_sync" / "proj_depth" / "groundtruth"
     / "image_02" / "0000000002.png").unlink()
    (kitti / "eigen_test_files_with_gt.txt").unlink()
    problems = gvb_depth.verify_kitti(kitti, R.KITTI_LINES, R.KITTI_SIZES)
    assert len(problems) == 2, problems
    assert any("0000000002.png" in p and "data_depth_annotated.zip" in p for p in problems)
    assert any("eigen_test_files_with_gt.txt" in p and "cleinc/bts" in p for p in problems)

    nyu = R.write_nyu(tmp_path / "nyu")
    (nyu / "splits.mat").unlink()
    (nyu / "sync" / "office_0004" / "sync_depth_00003.png").write_bytes(b"not a png")
    problems = gvb_depth.verify_nyu(nyu, R.NYU_SIZES)
    assert len(problems) == 2, problems
    assert any("sync_depth_00003.png is unreadable" in p for p in problems)
    assert any("missing" in p and "splits.mat" in p for p in problems)
    with pytest.raises(DataError, match="splits.mat"):
        gvb_depth.load_nyu(nyu, "test")


def test_verify_caps_each_kind_of_problem_and_names_absent_datasets(tmp_path):
    problems = Problems()
    for i in range(MAX_LINES_PER_KIND + 5):
        problems.add("missing files", f"missing f{i}", "fix it")
    lines = problems.done()
    assert len(lines) == MAX_LINES_PER_KIND + 1 and lines[-1] == "... and 5 more missing files: fix it"
    result = runner.invoke(app, ["datasets", "verify", "citypersons", "--data-root", str(tmp_path)], env=WIDE)
    assert result.exit_code == 1 and "citypersons does not exist" in result.output
    assert "Cityscapes account" in result.output and "gaia-bench datasets prepare citypersons" in result.output


# ----------------------------------------------------------------------------- metrics
def _perfect(samples) -> list[ImageDetections]:
    return [ImageDetections(np.asarray(s.target.boxes).reshape(-1, 4), np.linspace(1, 0.5, len(s.target.boxes)),
                            np.zeros(len(s.target.boxes), dtype=int)) for s in samples]


def test_each_dataset_family_gets_its_official_metric(replica):
    evaluate = DETECTION.evaluate
    faces = gvb_widerface.load(replica / "widerface", "val").samples
    metrics = evaluate(_perfect(faces), Samples(faces, ["face"]), gvb_widerface.WIDERFACE)
    assert set(metrics) == {"ap_easy", "ap_medium", "ap_hard"}
    assert metrics["ap_easy"] == pytest.approx(100.0) and metrics["ap_medium"] == pytest.approx(100.0)
    people = gvb_citypersons.load(replica / "citypersons", "val").samples
    metrics = evaluate(_perfect(people), Samples(people, ["pedestrian"]), gvb_citypersons.CITYPERSONS)
    assert {"mr", "mr_Reasonable", "mr_Reasonable_small", "mr_Reasonable_occ", "mr_All"} <= set(metrics)
    assert metrics["mr"] == metrics["mr_Reasonable"] < 1e-6
    missed = evaluate([ImageDetections(np.zeros((0, 4)), [], []) for _ in people], Samples(people, ["pedestrian"]),
                      gvb_citypersons.CITYPERSONS)
    assert missed["mr"] == pytest.approx(100.0)
    voc = gvb_voc.load_detection(replica / "VOCdevkit", "test")
    dets = [ImageDetections(np.asarray(s.target.boxes), np.ones(len(s.target.boxes)), np.asarray(s.target.labels))
            for s in voc.samples]
    metrics = evaluate(dets, voc, gvb_voc.VOC_DET)
    assert metrics["mAP"] == metrics["mAP_voc07_11pt"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="mix metric families"):
        evaluate(_perfect(faces[:1] + people[:1]), Samples(faces[:1] + people[:1], ["x"]), gvb_widerface.WIDERFACE)
    with pytest.raises(ValueError, match="1 predictions for 2 test samples"):
        evaluate(_perfect(faces[:1]), Samples(faces[:2], ["face"]), gvb_widerface.WIDERFACE)


# ----------------------------------------------------------------------------- end to end
TINY = {"detection": ["--hp", "det_min_iters=2", "--hp", "det_max_iters=2", "--hp", "det_batch=2"],
        "depth": ["--hp", "dense_min_iters=2", "--hp", "dense_max_iters=2"]}
TINY["segmentation"] = TINY["depth"]


@pytest.mark.parametrize("name, task, n_train, n_test, primary", [
    ("voc_det", "detection", 7, 3, "mAP"),
    ("widerface", "detection", 4, 3, "ap_easy"),
    ("citypersons", "detection", 3, 2, "mr"),
    ("voc_seg", "segmentation", 4, 2, "mIoU"),
    ("nyuv2", "depth", 3, 2, "rmse"),
])
def test_run_end_to_end_on_a_replica(replica, tmp_path, name, task, n_train, n_test, primary):
    store = tmp_path / "r.db"
    if name == "nyuv2":
        R.write_nyu(replica)  # its test split is extracted from the .mat by the run
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--dataset", name, "--data-root", str(replica),
                                 "--shots", "100%", "--store", str(store), *TINY[task]])
    assert result.exit_code == 0, result.output
    with ResultsStore(store) as s:
        (record,) = s.query()
    assert record["status"] == "done", record.get("error")
    assert record["primary_metric"] == primary and record["n_train"] == n_train and record["n_test"] == n_test
    assert np.isfinite(record["metrics"][primary])
    assert record["higher_is_better"] is (primary not in ("mr", "rmse"))


def test_run_names_the_steps_when_a_dataset_is_absent(tmp_path):
    result = runner.invoke(app, ["run", "--model", "test_resnet", "--dataset", "kitti", "--data-root", str(tmp_path),
                                 "--store", str(tmp_path / "r.db")], env=WIDE)
    assert result.exit_code != 0
    assert "kitti" in result.output and "data_depth_annotated.zip" in result.output
