"""The dense part of the offline ``mini`` suite: ``mini-voc-det``, ``mini-voc-seg`` and
``mini-kitti-depth``, three views of ONE deterministic stream of synthetic scenes
(:mod:`gaia_bench.tasks.datasets.lib.scene_generator`: real texture photos, exact geometry), written in the
official formats of the datasets they stand in for so that the real readers are exercised.

Scene ``i`` (0-based, ``SEED`` fixed) is the same image in all three: VOC id ``{i+1:06d}``, KITTI
drive ``i // 40 + 1``, frame ``i % 40``. The first ``N_TRAIN`` scenes train, the last ``N_TEST``
evaluate:

* ``mini-voc-det`` — a ``VOC2007``-like directory: ``trainval`` = the first 240 (``train`` / ``val``
  = its even / odd positions), ``test`` = the last 80; 6 classes, box AP ignores ``difficult``.
* ``mini-voc-seg`` — a ``VOC2012``-like directory: ``train`` 240 / ``val`` 80 (``trainval`` all);
  ``SegmentationClass`` PNGs with background as class 0 and 255 on the void band.
* ``mini-kitti-depth`` — KITTI raw + ``data_depth_annotated`` layout with Eigen-style lists
  (``train`` = drives 1–6, ``test`` = drives 7–8); sparse lidar-like ground truth ≤ 80 m. Dense
  NYU-style millimetre PNGs of the same scenes lie beside it (:func:`load_dense`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.data_source import embedded
from gaia_bench.tasks.datasets.lib.dense_targets import DepthTarget, SegmentationTarget
from gaia_bench.tasks.datasets.lib.kitti_depth_format import (
    KITTI_MAX_DEPTH_M,
    NYU_MAX_DEPTH_M,
    lidar_pattern,
    write_kitti_depth,
    write_nyu_depth,
)
from gaia_bench.tasks.datasets.lib.manifest import verify_manifest, write_manifest
from gaia_bench.tasks.datasets.lib.scene_generator import CLASSES, FOCAL, Scene, generate_scene
from gaia_bench.tasks.datasets.lib.voc_format import (
    VOID,
    VocObject,
    read_detection,
    read_image_set,
    void_boundary,
    write_image,
    write_image_sets,
)

PLUGIN_ORDER = 825

SEED = 0
N_TRAIN, N_TEST = 240, 80
FRAMES_PER_DRIVE = 40
DATE = "2011_09_26"
DET, SEG, DEPTH = "mini-voc-det", "mini-voc-seg", "mini-kitti-depth"
SEG_CLASSES: tuple[str, ...] = ("background", *CLASSES)
SCENES = ("generated scenes, shapes cut from skimage.data texture photos", "scikit-image")  # a record's data_source


def image_id(index: int) -> str:
    return f"{index + 1:06d}"


def scenes() -> Iterator[tuple[int, Scene]]:
    """The shared scene stream, train scenes first."""
    for index in range(N_TRAIN + N_TEST):
        yield index, generate_scene(SEED, index)


T = TypeVar("T")


def write_stream(write: Callable[[int, Scene], T], max_pending: int = 4) -> list[T]:
    """``write(index, scene)`` for every scene, results in order. Image encoding (PIL, zlib) releases
    the GIL, so one writer thread overlaps it with generating the next scenes (2 cores)."""
    results: list[T] = []
    pending: deque[Future[T]] = deque()
    with ThreadPoolExecutor(max_workers=1) as pool:
        for index, scene in scenes():
            pending.append(pool.submit(write, index, scene))
            if len(pending) > max_pending:  # bounded: scenes are ~0.4 MB each
                results.append(pending.popleft().result())
        results.extend(future.result() for future in pending)
    return results


def _fix(name: str) -> str:
    return f"run `gaia-bench datasets prepare {name} --force`"


def _missing_root(root: Path, name: str) -> list[str]:
    return [] if root.exists() else [f"{root} does not exist: run `gaia-bench datasets prepare {name}`"]


def _unknown_split(name: str, split: str, splits: Sequence[str]) -> DataError:
    return DataError(f"{name} has no split {split!r}", f"use one of: {', '.join(splits)}")


# ----------------------------------------------------------------------------- VOC
_TRAIN_IDS = [image_id(i) for i in range(N_TRAIN)]
_TEST_IDS = [image_id(i) for i in range(N_TRAIN, N_TRAIN + N_TEST)]
# VOC2007: trainval halves into train / val, test is separate. VOC2012: val is the held-out part.
DET_SETS = {"train": _TRAIN_IDS[0::2], "val": _TRAIN_IDS[1::2], "trainval": _TRAIN_IDS, "test": _TEST_IDS}
SEG_SETS = {"train": _TRAIN_IDS, "val": _TEST_IDS, "trainval": _TRAIN_IDS + _TEST_IDS}


def voc_objects(scene: Scene) -> list[VocObject]:
    return [VocObject(inst.name, tuple(float(v) for v in inst.box), inst.difficult, inst.truncated)
            for inst in scene.instances]


def voc_label_map(scene: Scene) -> np.ndarray:
    """The class map with VOC's void band (255) along every object outline."""
    labels = scene.semantic.copy()
    labels[void_boundary(scene.instance_map)] = VOID
    return labels


def _prepare_voc(root: Path, folder: str, sets: Mapping[str, Sequence[str]]) -> None:
    def write(index: int, scene: Scene) -> tuple[str, list[VocObject]]:
        objects = voc_objects(scene)
        write_image(root, folder, image_id(index), scene.image, objects, voc_label_map(scene))
        return image_id(index), objects

    root.mkdir(parents=True, exist_ok=True)
    write_image_sets(root, CLASSES, sets, sets, dict(write_stream(write)))
    write_manifest(root)


def _verify_voc(root: Path, name: str, kind: str, splits: Mapping[str, int]) -> list[str]:
    if not root.exists():
        return _missing_root(root, name)
    problems = []
    for split, expected in splits.items():
        path = root / "ImageSets" / kind / f"{split}.txt"
        if not path.exists():
            problems.append(f"{path} is missing: {_fix(name)}")
            continue
        n = len([line for line in path.read_text().splitlines() if line.strip()])
        if n != expected:
            problems.append(f"ImageSets/{kind}/{split}.txt lists {n} images, expected {expected}: {_fix(name)}")
    return problems + verify_manifest(root, _fix(name))


DET_SPLITS = {"trainval": N_TRAIN, "test": N_TEST}
SEG_SPLITS = {"train": N_TRAIN, "val": N_TEST}


def load_detection(root: Path, split: str) -> Samples:
    if split not in DET_SETS:
        raise _unknown_split(DET, split, list(DET_SETS))
    samples = [Sample(key=iid, path=root / "JPEGImages" / f"{iid}.jpg",
                      target=read_detection(root / "Annotations" / f"{iid}.xml", CLASSES))
               for iid in read_image_set(root, split, "Main")]
    return Samples(samples, list(CLASSES))


def load_segmentation(root: Path, split: str) -> Samples:
    if split not in SEG_SETS:
        raise _unknown_split(SEG, split, list(SEG_SETS))
    samples = [Sample(key=iid, path=root / "JPEGImages" / f"{iid}.jpg",
                      target=SegmentationTarget(root / "SegmentationClass" / f"{iid}.png", VOID))
               for iid in read_image_set(root, split, "Segmentation")]
    return Samples(samples, list(SEG_CLASSES))


# ----------------------------------------------------------------------------- KITTI
DEPTH_SPLITS = {"train": N_TRAIN, "test": N_TEST}


def kitti_paths(index: int) -> tuple[str, str, str]:
    """(raw RGB, sparse KITTI ground truth, dense NYU-style depth), relative to the dataset root."""
    drive = f"{DATE}_drive_{index // FRAMES_PER_DRIVE + 1:04d}_sync"
    frame = f"{index % FRAMES_PER_DRIVE:010d}"
    part = "train" if index < N_TRAIN else "val"
    return (f"kitti_raw/{DATE}/{drive}/image_02/data/{frame}.png",
            f"data_depth_annotated/{part}/{drive}/proj_depth/groundtruth/image_02/{frame}.png",
            f"nyu_dense/{drive}/sync_depth_{frame}.png")


def _list_name(split: str, dense: bool) -> str:
    return f"nyu_dense_{split}_files.txt" if dense else f"eigen_{split}_files.txt"


def _prepare_kitti(root: Path) -> None:
    from PIL import Image

    def write(index: int, scene: Scene) -> tuple[str, str, str]:
        rgb, sparse, dense = kitti_paths(index)
        (root / rgb).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(root / rgb, compress_level=1)
        scan = lidar_pattern(scene.depth.shape, np.random.default_rng([SEED, index, 1]))
        write_kitti_depth(root / sparse, scene.depth, scan)
        write_nyu_depth(root / dense, scene.depth)
        return rgb, sparse, dense

    root.mkdir(parents=True, exist_ok=True)
    lines: dict[tuple[str, bool], list[str]] = {(s, d): [] for s in DEPTH_SPLITS for d in (False, True)}
    for index, (rgb, sparse, dense) in enumerate(write_stream(write)):
        split = "train" if index < N_TRAIN else "test"
        lines[split, False].append(f"{rgb} {sparse} {FOCAL:.4f}\n")
        lines[split, True].append(f"{rgb} {dense} {FOCAL:.4f}\n")
    for (split, dense), entries in lines.items():
        (root / _list_name(split, dense)).write_text("".join(entries))
    write_manifest(root)


def _verify_kitti(root: Path) -> list[str]:
    if not root.exists():
        return _missing_root(root, DEPTH)
    problems = []
    for split, expected in DEPTH_SPLITS.items():
        for dense in (False, True):
            path = root / _list_name(split, dense)
            if not path.exists():
                problems.append(f"{path} is missing: {_fix(DEPTH)}")
                continue
            n = len([line for line in path.read_text().splitlines() if line.strip()])
            if n != expected:
                problems.append(f"{path.name} lists {n} images, expected {expected}: {_fix(DEPTH)}")
    return problems + verify_manifest(root, _fix(DEPTH))


def _read_depth_list(root: Path, split: str, dense: bool,
                     target: Callable[[Path], DepthTarget]) -> Samples:
    if split not in DEPTH_SPLITS:
        raise _unknown_split(DEPTH, split, list(DEPTH_SPLITS))
    path = root / _list_name(split, dense)
    if not path.exists():
        raise DataError(f"missing {path}", _fix(DEPTH))
    samples = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) != 3:
            raise DataError(f"{path}:{lineno}: expected 'rgb depth focal', got {line!r}", _fix(DEPTH))
        rgb, depth, _focal = fields
        drive, frame = rgb.split("/")[-4], Path(rgb).stem
        samples.append(Sample(key=f"{drive}/{frame}", path=root / rgb, target=target(root / depth)))
    return Samples(samples, [])


def load_depth(root: Path, split: str) -> Samples:
    """The Eigen-style split with sparse KITTI ground truth."""
    return _read_depth_list(root, split, False, lambda p: DepthTarget(p, KITTI_MAX_DEPTH_M, "kitti"))


def load_dense(root: Path, split: str) -> Samples:
    """The same images with dense NYU-style (millimetre) ground truth."""
    return _read_depth_list(root, split, True, lambda p: DepthTarget(p, NYU_MAX_DEPTH_M, "nyu"))


# ----------------------------------------------------------------------------- registration
MINI_VOC_DET = DatasetSpec(
    name=DET,
    task="detection",
    description="synthetic scenes on real texture photos, PASCAL VOC2007 layout, 6 long-tailed classes",
    load=load_detection,
    verify=lambda root: _verify_voc(root, DET, "Main", DET_SPLITS),
    prepare=lambda root: _prepare_voc(root, "VOC2007", DET_SETS),
    splits=DET_SPLITS,
    num_classes=len(CLASSES),
    train_split="trainval",
    test_split="test",
    version="1",
    provenance=embedded(SCENES),
)

MINI_VOC_SEG = DatasetSpec(
    name=SEG,
    task="segmentation",
    description="the same scenes, PASCAL VOC2012 SegmentationClass layout (background + 6 classes, 255 void)",
    load=load_segmentation,
    verify=lambda root: _verify_voc(root, SEG, "Segmentation", SEG_SPLITS),
    prepare=lambda root: _prepare_voc(root, "VOC2012", SEG_SETS),
    splits=SEG_SPLITS,
    num_classes=len(SEG_CLASSES),
    train_split="train",
    test_split="val",
    version="1",
    provenance=embedded(SCENES),
)

MINI_KITTI_DEPTH = DatasetSpec(
    name=DEPTH,
    task="depth",
    description="the same scenes, KITTI depth layout: sparse lidar-like 16-bit PNGs (m × 256, ≤ 80 m), "
                "Eigen-style lists",
    load=load_depth,
    verify=_verify_kitti,
    prepare=_prepare_kitti,
    splits=DEPTH_SPLITS,
    train_split="train",
    test_split="test",
    version="1",
    provenance=embedded(SCENES),
)


@hookimpl
def register_datasets(register):
    for spec in (MINI_VOC_DET, MINI_VOC_SEG, MINI_KITTI_DEPTH):
        register(spec)
