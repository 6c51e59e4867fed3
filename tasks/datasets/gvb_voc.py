"""GV-B's two PASCAL VOC datasets, read from the devkit's own layout under ``DATA_ROOT/VOCdevkit``
(the folder the official tars and torchvision's ``VOCDetection``/``VOCSegmentation`` create)::

    VOCdevkit/VOC2007/{JPEGImages, Annotations, ImageSets/Main/{trainval,test}.txt}
    VOCdevkit/VOC2012/{JPEGImages, Annotations, ImageSets/Main/trainval.txt,
                       SegmentationClass, ImageSets/Segmentation/{train,val}.txt,
                       SegmentationClassAug, ImageSets/Segmentation/aug.txt}    <- SBD, as mmseg lays it out

* ``voc_det`` — GV-B's VOC07+12: train on VOC2007 trainval + VOC2012 trainval (5,011 + 11,540), test
  on VOC2007 test (4,952); 20 classes, ``difficult`` objects ignored by the mAP (VOC07 11-point,
  GV-B's number) and not trained on. Sample keys are ``VOC2007/<id>`` / ``VOC2012/<id>``.
* ``voc_seg`` — VOC2012 segmentation with SBD's extra masks: ``trainaug`` = ``train`` (1,464, from
  ``SegmentationClass``) + ``aug`` (9,118 SBD-only images, from ``SegmentationClassAug``) = 10,582;
  test on ``val`` (1,449); 21 classes (background first), 255 = void. ``aug.txt`` is what mmseg's
  ``voc_aug.py`` converter writes; without it, ``aug`` is every ``SegmentationClassAug``
  mask not in ``train`` or ``val``, the same set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.data_source import downloaded
from gaia_bench.tasks.datasets.lib.dense_targets import SegmentationTarget
from gaia_bench.tasks.datasets.lib.gvb_dense_common import (
    Archive,
    Problems,
    check_count,
    check_images,
    download_archives,
    missing_root,
    read_lines,
    unknown_split,
)
from gaia_bench.tasks.datasets.lib.voc_format import VOID, read_annotation, read_detection

PLUGIN_ORDER = 855

CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
SEG_CLASSES: tuple[str, ...] = ("background", *CLASSES)

# (year, ImageSets/Main split) per voc_det split, with the official image counts.
DET_PARTS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "trainval": (("VOC2007", "trainval", 5011), ("VOC2012", "trainval", 11540)),
    "test": (("VOC2007", "test", 4952),),
}
SEG_SIZES = {"train": 1464, "val": 1449, "aug": 9118, "trainaug": 10582}

# torchvision's URLs and md5s (torchvision.datasets.voc, SBD: torchvision.datasets.sbd); the
# mirrors are the VOC server's older host and the copies darknet/YOLO users fetch (md5 checked).
_VOC_MIRRORS = ("http://host.robots.ox.ac.uk/pascal/VOC/{year}/{name}", "https://pjreddie.com/media/files/{name}")


def _voc(year: str, name: str, md5: str) -> Archive:
    return Archive(f"https://thor.robots.ox.ac.uk/pascal/VOC/{year}/{name}", md5, "..",
                   tuple(m.format(year=year, name=name) for m in _VOC_MIRRORS))


VOC_ARCHIVES = {
    "VOC2007 trainval": _voc("voc2007", "VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
    "VOC2007 test": _voc("voc2007", "VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f"),
    "VOC2012 trainval": _voc("voc2012", "VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd"),
}
SBD_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"

DET_HINT = f"""\
PASCAL VOC 07+12 is public: `gaia-bench datasets prepare voc_det --download` fetches and extracts
  {VOC_ARCHIVES['VOC2007 trainval'].url}
  {VOC_ARCHIVES['VOC2007 test'].url}
  {VOC_ARCHIVES['VOC2012 trainval'].url}
or extract those three tars yourself into DATA_ROOT (each creates VOCdevkit/). Expected tree:
  DATA_ROOT/VOCdevkit/VOC2007/{{JPEGImages,Annotations,ImageSets/Main/{{trainval,test}}.txt}}
  DATA_ROOT/VOCdevkit/VOC2012/{{JPEGImages,Annotations,ImageSets/Main/trainval.txt}}"""

SEG_HINT = f"""\
VOC2012 segmentation + SBD: `gaia-bench datasets prepare voc_seg --download` fetches and extracts
  {VOC_ARCHIVES['VOC2012 trainval'].url}
then add SBD's masks as mmseg does (no automatic step; SBD ships MATLAB .mat files):
  1. download {SBD_URL} and extract it into DATA_ROOT/VOCdevkit/VOCaug
  2. with mmsegmentation's sources: python tools/dataset_converters/voc_aug.py DATA_ROOT/VOCdevkit DATA_ROOT/VOCdevkit/VOCaug
     (tools/convert_datasets/voc_aug.py in mmseg 0.x)
     (writes VOC2012/SegmentationClassAug/*.png and ImageSets/Segmentation/aug.txt)
Expected tree:
  DATA_ROOT/VOCdevkit/VOC2012/{{JPEGImages,SegmentationClass,SegmentationClassAug,
                               ImageSets/Segmentation/{{train,val,aug}}.txt}}"""


def _det_fix() -> str:
    return "re-extract the VOC tars (`gaia-bench datasets prepare voc_det --download`)"


def _seg_fix(aug: bool = False) -> str:
    if aug:
        return "re-run mmseg's voc_aug.py on SBD (`gaia-bench datasets prepare voc_seg` prints the steps)"
    return "re-extract VOCtrainval_11-May-2012.tar (`gaia-bench datasets prepare voc_seg --download`)"


# ----------------------------------------------------------------------------- detection
def load_detection(root: Path, split: str) -> Samples:
    if split not in DET_PARTS:
        raise unknown_split("voc_det", split, list(DET_PARTS))
    samples = []
    for year, image_set, _ in DET_PARTS[split]:
        folder = root / year
        for image_id in read_lines(folder / "ImageSets" / "Main" / f"{image_set}.txt", _det_fix()):
            image_id = image_id.split()[0]
            samples.append(Sample(key=f"{year}/{image_id}", path=folder / "JPEGImages" / f"{image_id}.jpg",
                                  target=read_detection(folder / "Annotations" / f"{image_id}.xml", CLASSES)))
    return Samples(samples, list(CLASSES))


def verify_detection(root: Path, sizes: Mapping[str, tuple[tuple[str, str, int], ...]] = DET_PARTS) -> list[str]:
    if not root.is_dir():
        return missing_root(root, "voc_det", DET_HINT)
    problems = Problems()
    known = set(CLASSES)
    for parts in sizes.values():
        for year, image_set, expected in parts:
            folder = root / year
            list_path = folder / "ImageSets" / "Main" / f"{image_set}.txt"
            if not list_path.exists():
                problems.add("missing files", f"missing {list_path}", _det_fix())
                continue
            ids = [line.split()[0] for line in read_lines(list_path, _det_fix())]
            check_count(problems, f"{year} ImageSets/Main/{image_set}.txt", len(ids), expected, _det_fix())
            check_images(problems, (folder / "JPEGImages" / f"{i}.jpg" for i in ids), _det_fix(),
                         f"replace it from the official tar ({_det_fix()})")
            for image_id in ids:
                xml = folder / "Annotations" / f"{image_id}.xml"
                if not xml.exists():
                    problems.add("missing files", f"missing {xml}", _det_fix())
                    continue
                try:
                    names = {o.name for o in read_annotation(xml).objects}
                except DataError as exc:
                    problems.add("bad annotations", exc.message, _det_fix())
                    continue
                for name in sorted(names - known):
                    problems.add("bad annotations", f"{xml}: unknown class {name!r}", _det_fix())
    return problems.done()


# ----------------------------------------------------------------------------- segmentation
def _seg_ids(voc: Path, split: str) -> list[str]:
    lists = voc / "ImageSets" / "Segmentation"
    if split in ("train", "val"):
        return [line.split()[0] for line in read_lines(lists / f"{split}.txt", _seg_fix())]
    if split == "aug":
        if (lists / "aug.txt").exists():
            return [line.split()[0] for line in read_lines(lists / "aug.txt", _seg_fix(True))]
        masks = voc / "SegmentationClassAug"
        if not masks.is_dir():
            raise DataError(f"missing {masks} (SBD's masks)", _seg_fix(True))
        official = set(_seg_ids(voc, "train")) | set(_seg_ids(voc, "val"))
        return sorted(p.stem for p in masks.glob("*.png") if p.stem not in official)
    return _seg_ids(voc, "train") + _seg_ids(voc, "aug")


def load_segmentation(root: Path, split: str) -> Samples:
    if split not in SEG_SIZES:
        raise unknown_split("voc_seg", split, list(SEG_SIZES))
    voc = root / "VOC2012"
    samples = []
    for part in ("train", "aug") if split == "trainaug" else (split,):
        folder = "SegmentationClassAug" if part == "aug" else "SegmentationClass"
        samples += [Sample(key=f"VOC2012/{i}", path=voc / "JPEGImages" / f"{i}.jpg",
                           target=SegmentationTarget(voc / folder / f"{i}.png", VOID))
                    for i in _seg_ids(voc, part)]
    return Samples(samples, list(SEG_CLASSES))


def verify_segmentation(root: Path, sizes: Mapping[str, int] = SEG_SIZES) -> list[str]:
    if not root.is_dir():
        return missing_root(root, "voc_seg", SEG_HINT)
    voc = root / "VOC2012"
    problems = Problems()
    for part in ("train", "val", "aug"):
        aug = part == "aug"
        try:
            ids = _seg_ids(voc, part)
        except DataError as exc:
            problems.add("missing files", exc.message, exc.hint or _seg_fix(aug))
            continue
        check_count(problems, f"voc_seg split {part!r}", len(ids), sizes[part], _seg_fix(aug))
        check_images(problems, (voc / "JPEGImages" / f"{i}.jpg" for i in ids), _seg_fix(),
                     f"replace it from the official tar ({_seg_fix()})")
        folder = "SegmentationClassAug" if aug else "SegmentationClass"
        check_images(problems, (voc / folder / f"{i}.png" for i in ids), _seg_fix(aug), _seg_fix(aug))
    return problems.done()


# ----------------------------------------------------------------------------- registration
VOC_DET = DatasetSpec(
    name="voc_det",
    task="detection",
    description="PASCAL VOC 07+12 detection: train VOC2007+2012 trainval, test VOC2007 test; 20 classes",
    load=load_detection,
    verify=verify_detection,
    prepare_hint=DET_HINT,
    download=lambda root: download_archives(root, list(VOC_ARCHIVES.values())),
    provenance=downloaded([(a.url, a.md5) for a in VOC_ARCHIVES.values()]),
    splits={split: sum(n for _, _, n in parts) for split, parts in DET_PARTS.items()},
    num_classes=len(CLASSES),
    train_split="trainval",
    test_split="test",
    primary_metric="mAP",
    subdir="VOCdevkit",
)

VOC_SEG = DatasetSpec(
    name="voc_seg",
    task="segmentation",
    description="PASCAL VOC2012 segmentation + SBD masks: train trainaug (10,582), test val; 21 classes, 255 void",
    load=load_segmentation,
    verify=verify_segmentation,
    prepare_hint=SEG_HINT,
    download=lambda root: download_archives(root, [VOC_ARCHIVES["VOC2012 trainval"]]),
    provenance=downloaded([(VOC_ARCHIVES["VOC2012 trainval"].url, VOC_ARCHIVES["VOC2012 trainval"].md5), (SBD_URL, None)]),
    splits={"trainaug": SEG_SIZES["trainaug"], "val": SEG_SIZES["val"]},
    num_classes=len(SEG_CLASSES),
    train_split="trainaug",
    test_split="val",
    primary_metric="mIoU",
    subdir="VOCdevkit",
)


@hookimpl
def register_datasets(register):
    register(VOC_DET)
    register(VOC_SEG)
