"""Tiny replicas of GV-B's six dense datasets, each in its OFFICIAL on-disk format (file names, folder
tree, annotation syntax, MATLAB / HDF5 containers), so that the real readers in ``gaia_bench.tasks.gvb_*``
are exercised end to end. Images are small and drawn deterministically: a noisy background with a flat
rectangle per object, so a detector has something to find.

Each ``write_*`` takes DATA_ROOT, writes the dataset's folder under it and returns what a reader must
find (counts per split, plus facts the tests check)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from gaia_bench.tasks.datasets.gvb_voc import CLASSES
from gaia_bench.tasks.datasets.lib.kitti_depth_format import write_kitti_depth
from gaia_bench.tasks.datasets.lib.voc_format import VocObject, write_image, write_image_sets


def _canvas(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)


def _paint(rgb: np.ndarray, box, colour) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    rgb[y1:y2, x1:x2] = colour


# ----------------------------------------------------------------------------- VOC
VOC07_TRAINVAL = ["000005", "000007", "000009", "000012"]
VOC07_TEST = ["000001", "000002", "000004"]
VOC12_TRAINVAL = ["2008_000002", "2008_000003", "2008_000007"]
VOC12_SEG_TRAIN = ["2008_000002", "2008_000003"]
VOC12_SEG_VAL = ["2008_000007", "2008_000009"]
VOC12_AUG = ["2008_000010", "2008_000011"]  # SBD-only masks (SegmentationClassAug also holds 2008_000002)
VOC_SIZES = {"det": {"trainval": 7, "test": 3}, "seg": {"train": 2, "val": 2, "aug": 2, "trainaug": 4}}
VOC_PARTS = {"trainval": (("VOC2007", "trainval", 4), ("VOC2012", "trainval", 3)), "test": (("VOC2007", "test", 3),)}
DIFFICULT_ID = "000007"  # its second object is difficult
PERSON, CAR = CLASSES.index("person"), CLASSES.index("car")


def _voc_objects(index: int, difficult: bool) -> list[VocObject]:
    """Two objects per image: a person (tall) on the left and a car (wide) on the right."""
    dx = 4 * (index % 3)
    return [VocObject("person", (6.0 + dx, 8.0, 30.0 + dx, 56.0)),
            VocObject("car", (50.0, 20.0 + dx, 90.0, 44.0 + dx), difficult=difficult)]


def _voc_image(seed: int, objects: list[VocObject], height: int = 64, width: int = 96):
    rgb = _canvas(seed, height, width)
    labels = np.zeros((height, width), dtype=np.uint8)
    for obj in objects:
        value = CLASSES.index(obj.name) + 1
        _paint(rgb, obj.box, (230, 40, 40) if obj.name == "person" else (40, 40, 230))
        x1, y1, x2, y2 = (int(v) for v in obj.box)
        labels[y1:y2, x1:x2] = value
        labels[y1, x1:x2] = 255  # a void band on the top edge, as VOC's outlines have
    return rgb, labels


def write_voc(data_root: Path) -> Path:
    root = data_root / "VOCdevkit"
    for year, ids, seg in (("VOC2007", VOC07_TRAINVAL + VOC07_TEST, False),
                           ("VOC2012", sorted(set(VOC12_TRAINVAL + VOC12_SEG_VAL + VOC12_AUG)), True)):
        folder = root / year
        objects = {}
        for n, image_id in enumerate(ids):
            objs = _voc_objects(n, difficult=image_id == DIFFICULT_ID)
            rgb, labels = _voc_image(sum(map(ord, image_id)) + n, objs)
            objects[image_id] = objs
            write_image(folder, year, image_id, rgb, objs, labels if seg and image_id not in VOC12_AUG else None)
            if seg and image_id in VOC12_AUG + VOC12_SEG_TRAIN[:1]:
                aug = folder / "SegmentationClassAug"
                aug.mkdir(parents=True, exist_ok=True)
                Image.fromarray(labels, mode="L").save(aug / f"{image_id}.png")
        main = {"trainval": VOC07_TRAINVAL, "test": VOC07_TEST} if year == "VOC2007" else {"trainval": VOC12_TRAINVAL}
        segmentation = {"train": VOC12_SEG_TRAIN, "val": VOC12_SEG_VAL} if seg else {}
        write_image_sets(folder, CLASSES, main, segmentation, objects)
        if not seg:
            (folder / "SegmentationClass").rmdir()
    return root


# ----------------------------------------------------------------------------- WIDER FACE
# (event, file stem, faces as (x, y, w, h, invalid)); the val image "1_Handshaking_x_3" has no face.
WIDER_TRAIN = [
    ("0--Parade", "0_Parade_marchingband_1_5", [(10, 8, 20, 24, 0), (50, 10, 18, 22, 0)]),
    ("0--Parade", "0_Parade_Parade_0_12", [(12, 12, 22, 26, 0), (70, 30, 0, 10, 0)]),  # a zero-width face
    ("1--Handshaking", "1_Handshaking_x_1", [(30, 14, 24, 28, 1), (64, 16, 20, 24, 0)]),  # an invalid face
    ("1--Handshaking", "1_Handshaking_x_2", [(20, 10, 26, 30, 0)]),
]
WIDER_VAL = [
    ("0--Parade", "0_Parade_marchingband_1_20", [(14, 10, 20, 24, 0), (56, 12, 16, 20, 0), (80, 40, 4, 5, 0)]),
    ("1--Handshaking", "1_Handshaking_x_3", []),
    ("1--Handshaking", "1_Handshaking_x_4", [(24, 16, 22, 26, 0)]),
]
# Official keep lists (1-based) per val image, easy ⊆ medium ⊆ hard; the 4 x 5 face is in none.
WIDER_KEEP = {"easy": [[1], [], [1]], "medium": [[1, 2], [], [1]], "hard": [[1, 2], [], [1]]}
WIDER_SIZES = {"train": 4, "val": 3}


def _cell(items: list) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_widerface(data_root: Path) -> Path:
    import scipy.io

    root = data_root / "widerface"
    for split, entries in (("train", WIDER_TRAIN), ("val", WIDER_VAL)):
        lines = []
        for n, (event, stem, faces) in enumerate(entries):
            rgb = _canvas(100 + n + 10 * (split == "val"), 64, 96)
            for x, y, w, h, _ in faces:
                _paint(rgb, (x, y, x + w, y + h), (220, 180, 150))
            path = root / f"WIDER_{split}" / "images" / event / f"{stem}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(path, quality=95)
            lines += [f"{event}/{stem}.jpg", str(len(faces))]
            lines += [f"{x} {y} {w} {h} 0 0 0 {invalid} 0 0 " for x, y, w, h, invalid in faces] or ["0 0 0 0 0 0 0 0 0 0 "]
        split_dir = root / "wider_face_split"
        split_dir.mkdir(parents=True, exist_ok=True)
        (split_dir / f"wider_face_{split}_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    events = sorted({event for event, _, _ in WIDER_VAL})
    by_event = [[(stem, faces, i) for i, (e, stem, faces) in enumerate(WIDER_VAL) if e == event] for event in events]
    gt_dir = root / "eval_tools" / "ground_truth"
    gt_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "event_list": _cell(events),
        "file_list": _cell([_cell([stem for stem, _, _ in group]) for group in by_event]),
        "face_bbx_list": _cell([_cell([np.asarray([f[:4] for f in faces], dtype=np.float64).reshape(-1, 4)
                                       for _, faces, _ in group]) for group in by_event]),
    }
    scipy.io.savemat(gt_dir / "wider_face_val.mat", common)
    for setting, keep in WIDER_KEEP.items():
        gt_list = _cell([_cell([np.asarray(keep[i], dtype=np.float64).reshape(-1, 1) for _, _, i in group])
                         for group in by_event])
        scipy.io.savemat(gt_dir / f"wider_{setting}_val.mat", {**common, "gt_list": gt_list})
    return root


# ----------------------------------------------------------------------------- CityPersons
# (split, city, seq_frame, objects as (label, bbox xywh, bboxVis xywh))
CP_IMAGES = [
    ("train", "aachen", "000000_000019", [("pedestrian", (10, 8, 14, 40), (10, 8, 14, 40)),
                                         ("rider", (60, 10, 14, 36), (60, 10, 14, 30))]),
    ("train", "aachen", "000001_000019", [("pedestrian", (30, 10, 16, 44), (30, 10, 16, 22))]),
    ("train", "bochum", "000000_000313", [("pedestrian", (70, 6, 14, 42), (70, 6, 14, 42)),
                                         ("ignore", (100, 10, 20, 20), (100, 10, 20, 20))]),
    ("val", "frankfurt", "000000_000294", [("pedestrian", (12, 6, 18, 52), (12, 6, 18, 52)),
                                          ("person group", (80, 10, 30, 40), (80, 10, 30, 40))]),
    ("val", "munster", "000000_000019", []),
]
CP_SIZES = {"train": 3, "val": 2}
CP_SIZE = (128, 64)  # width, height


CP_CLASS_NUMBERS = {"ignore": 0, "pedestrian": 1, "rider": 2, "sitting person": 3, "person (other)": 4, "person group": 5}


def write_citypersons(data_root: Path, annotations: str = "json") -> Path:
    """``annotations``: ``json`` (Cityscapes' gtBboxCityPersons) or ``mat`` (the CityPersons
    repository's annotations/anno_{train,val}.mat)."""
    import scipy.io

    root = data_root / "citypersons"
    cells: dict[str, list] = {"train": [], "val": []}
    for n, (split, city, frame, objects) in enumerate(CP_IMAGES):
        stem = f"{city}_{frame}"
        rgb = _canvas(200 + n, CP_SIZE[1], CP_SIZE[0])
        for label, (x, y, w, h), _ in objects:
            _paint(rgb, (x, y, x + w, y + h), (200, 60, 60) if label == "pedestrian" else (60, 200, 60))
        image = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(image)
        doc = {"imgHeight": CP_SIZE[1], "imgWidth": CP_SIZE[0], "objects": [
            {"instanceId": 24000 + i if label != "ignore" else 0, "label": label, "bbox": list(box), "bboxVis": list(vis)}
            for i, (label, box, vis) in enumerate(objects)]}
        bbs = [[CP_CLASS_NUMBERS[label], *box, 24000 + i, *vis] for i, (label, box, vis) in enumerate(objects)]
        cells[split].append({"cityname": city, "im_name": f"{stem}_leftImg8bit.png",
                             "bbs": np.asarray(bbs, dtype=np.float64).reshape(-1, 10)})
        if annotations == "json":
            annotation = root / "gtBboxCityPersons" / split / city / f"{stem}_gtBboxCityPersons.json"
            annotation.parent.mkdir(parents=True, exist_ok=True)
            annotation.write_text(json.dumps(doc, indent=2))
    if annotations == "mat":
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        for split, structs in cells.items():
            cell = np.empty((1, len(structs)), dtype=object)
            for i, struct in enumerate(structs):
                cell[0, i] = struct
            scipy.io.savemat(root / "annotations" / f"anno_{split}.mat", {f"anno_{split}_aligned": cell})
    return root


# ----------------------------------------------------------------------------- KITTI
KITTI_DATE = "2011_09_26"
KITTI_TRAIN = [("0001", f"{i:010d}") for i in range(4)]
KITTI_TEST = [("0002", "0000000005", True), ("0002", "0000000006", False), ("0002", "0000000007", True)]
KITTI_LINES, KITTI_SIZES = {"train": 4, "test": 3}, {"train": 4, "test": 2}
KITTI_SHAPE = (32, 96)
FOCAL = 721.5377


def _kitti_depth(seed: int) -> np.ndarray:
    rows, cols = KITTI_SHAPE
    ramp = np.linspace(70.0, 4.0, rows)[:, None] * np.ones((1, cols))  # far at the top, near at the bottom
    return ramp + np.random.default_rng(seed).uniform(0, 1, size=KITTI_SHAPE)


def write_kitti(data_root: Path) -> Path:
    root = data_root / "kitti"
    lines: dict[str, list[str]] = {"train": [], "test": []}
    frames = [("train", d, f, True) for d, f in KITTI_TRAIN] + [("test", d, f, g) for d, f, g in KITTI_TEST]
    for n, (split, drive_no, frame, has_gt) in enumerate(frames):
        drive = f"{KITTI_DATE}_drive_{drive_no}_sync"
        rgb_rel = f"{KITTI_DATE}/{drive}/image_02/data/{frame}.png"
        depth = _kitti_depth(n)
        rgb = (255 * (depth / depth.max()))[..., None].repeat(3, axis=2).astype(np.uint8)
        (root / rgb_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / rgb_rel)
        gt_rel = f"{drive}/proj_depth/groundtruth/image_02/{frame}.png"
        if has_gt:
            part = "train" if split == "train" else "val"
            keep = np.zeros(KITTI_SHAPE, dtype=bool)
            keep[::2, ::3] = True  # sparse, like projected lidar
            write_kitti_depth(root / "data_depth_annotated" / part / gt_rel, depth, keep)
        lines[split].append(f"{rgb_rel} {gt_rel if has_gt else 'None'} {FOCAL}")
    for split, name in (("train", "eigen_train_files_with_gt.txt"), ("test", "eigen_test_files_with_gt.txt")):
        (root / name).write_text("\n".join(lines[split]) + "\n")
    return root


# ----------------------------------------------------------------------------- NYU Depth v2
NYU_SYNC = [("kitchen_0028a", 0), ("kitchen_0028a", 7), ("office_0004", 3)]
NYU_LABELED = ["kitchen", "office", "bathroom"]  # sceneTypes of the 3 labeled images
NYU_TEST_INDICES = [1, 3]  # splits.mat testNdxs (1-based); trainNdxs = [2]
NYU_SIZES = {"train": 3, "test": 2}
NYU_SHAPE = (480, 640)


def _nyu_depth(seed: int) -> np.ndarray:
    rows, cols = NYU_SHAPE
    base = np.linspace(1.0, 6.0, cols)[None, :] * np.ones((rows, 1))
    return (base + np.random.default_rng(seed).uniform(0, 0.2, size=NYU_SHAPE)).astype(np.float32)


def write_nyu(data_root: Path) -> Path:
    import h5py
    import scipy.io

    from gaia_bench.tasks.datasets.lib.kitti_depth_format import write_nyu_depth

    root = data_root / "nyu_depth_v2"
    small = (48, 64)
    for n, (scene, index) in enumerate(NYU_SYNC):
        folder = root / "sync" / scene
        folder.mkdir(parents=True, exist_ok=True)
        depth = _nyu_depth(n)[::10, ::10][:small[0], :small[1]]
        Image.fromarray((depth * 40).astype(np.uint8)).convert("RGB").save(folder / f"rgb_{index:05d}.jpg", quality=95)
        write_nyu_depth(folder / f"sync_depth_{index:05d}.png", depth)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as handle:
        n = len(NYU_LABELED)
        images = handle.create_dataset("images", (n, 3, NYU_SHAPE[1], NYU_SHAPE[0]), dtype=np.uint8)
        depths = handle.create_dataset("rawDepths", (n, NYU_SHAPE[1], NYU_SHAPE[0]), dtype=np.float32)
        scenes = handle.create_dataset("sceneTypes", (1, n), dtype=h5py.ref_dtype)
        refs = handle.create_group("#refs#")
        for i, scene in enumerate(NYU_LABELED):
            depth = _nyu_depth(100 + i)
            rgb = np.full((*NYU_SHAPE, 3), 255, dtype=np.uint8)  # the labeled set's white frame
            rgb[7:474, 7:632] = (depth[7:474, 7:632, None] * 40).astype(np.uint8)
            images[i] = rgb.T
            depths[i] = depth.T
            chars = refs.create_dataset(f"scene{i}", data=np.asarray([[ord(c)] for c in scene], dtype=np.uint16))
            scenes[0, i] = chars.ref
    scipy.io.savemat(root / "splits.mat", {"testNdxs": np.asarray(NYU_TEST_INDICES, dtype=np.float64).reshape(-1, 1),
                                           "trainNdxs": np.asarray([[2.0]])})
    return root


def write_all(data_root: Path) -> dict[str, Path]:
    return {"voc": write_voc(data_root), "widerface": write_widerface(data_root),
            "citypersons": write_citypersons(data_root), "kitti": write_kitti(data_root), "nyuv2": write_nyu(data_root)}
