"""CityPersons (GV-B's pedestrian detection column) in the layout Cityscapes distributes it, under
``DATA_ROOT/citypersons``::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png          (leftImg8bit_trainvaltest.zip)
    gtBboxCityPersons/{train,val}/<city>/<city>_<seq>_<frame>_gtBboxCityPersons.json   (gtBbox_cityPersons_trainval.zip)

Each JSON holds ``imgWidth``, ``imgHeight`` and ``objects``, each with a ``label`` (``pedestrian``,
``rider``, ``sitting person``, ``person (other)``, ``person group``, ``ignore``), the full-body
``bbox`` and the visible part ``bboxVis`` as ``[x, y, w, h]``. One class, ``pedestrian``, as GV-B
trains it: every other label is an ignore box for the MR⁻² evaluation (and is not trained on);
visibility = visible-box area / full-box area. Without ``gtBboxCityPersons``, the CityPersons
repository's ``annotations/anno_{train,val}.mat`` (same boxes, class numbers 0-5) are read instead.
Train 2,975 images, evaluation on val (500), metric MR⁻² (``mr`` = the Reasonable setup; the other
setups are reported beside it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Sample, Samples
from gaia_bench.errors import DataError
from gaia_bench.tasks.datasets.lib.data_source import downloaded
from gaia_bench.tasks.datasets.lib.dense_targets import PedestrianTarget
from gaia_bench.tasks.datasets.lib.gvb_dense_common import Problems, check_count, check_images, extra_files, missing_root, unknown_split

PLUGIN_ORDER = 865

NAME = "citypersons"
SIZES = {"train": 2975, "val": 500}
LABELS = ("pedestrian", "rider", "sitting person", "person (other)", "person group", "ignore")
IMAGE_SUFFIX, ANNOTATION_SUFFIX = "_leftImg8bit.png", "_gtBboxCityPersons.json"

HINT = """\
CityPersons needs a Cityscapes account (https://www.cityscapes-dataset.com/register/):
  1. log in at https://www.cityscapes-dataset.com/downloads/ and download leftImg8bit_trainvaltest.zip
     and gtBbox_cityPersons_trainval.zip
  2. unzip both into DATA_ROOT/citypersons/
Expected tree:
  DATA_ROOT/citypersons/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  DATA_ROOT/citypersons/gtBboxCityPersons/{train,val}/<city>/<city>_<seq>_<frame>_gtBboxCityPersons.json"""


def _fix(archive: str) -> str:
    return f"unzip {archive} again (`gaia-bench datasets prepare {NAME}` prints the steps)"


IMAGES_ZIP, BOXES_ZIP = "leftImg8bit_trainvaltest.zip", "gtBbox_cityPersons_trainval.zip"


def _xyxy(xywh) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in xywh)
    return (x, y, x + w, y + h)


def _target(objects: list[tuple[str, object, object]], width: int, height: int) -> PedestrianTarget:
    """``objects``: (label, full box xywh, visible box xywh)."""
    boxes, visibility, ignore = [], [], []
    for label, full, vis in objects:
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}")
        box, seen = _xyxy(full), _xyxy(vis)
        area = (box[2] - box[0]) * (box[3] - box[1])
        visible = (seen[2] - seen[0]) * (seen[3] - seen[1])
        boxes.append(box)
        visibility.append(min(1.0, max(0.0, visible / area)) if area > 0 else 0.0)
        ignore.append(label != "pedestrian" or area <= 0)
    return PedestrianTarget(boxes=tuple(boxes), labels=(0,) * len(boxes), difficult=tuple(ignore),
                            width=width, height=height, visibility=tuple(visibility), ignore=tuple(ignore))


def read_annotation(path: Path) -> PedestrianTarget:
    """One ``*_gtBboxCityPersons.json``."""
    try:
        doc = json.loads(path.read_text())
        objects = [(o["label"], o["bbox"], o.get("bboxVis", o["bbox"])) for o in doc["objects"]]
        return _target(objects, int(doc["imgWidth"]), int(doc["imgHeight"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a gtBboxCityPersons annotation ({exc.__class__.__name__}: {exc})",
                        _fix(BOXES_ZIP)) from None


@dataclass(frozen=True)
class Entry:
    """One image of a split: its key, its file, and how to read its target (a DataError when bad)."""

    key: str
    image: Path
    read: Callable[[], PedestrianTarget]


def _json_entries(root: Path, split: str) -> list[Entry]:
    folder = root / "gtBboxCityPersons" / split
    entries = []
    for annotation in sorted(folder.glob(f"*/*{ANNOTATION_SUFFIX}")):
        city, stem = annotation.parent.name, annotation.name[:-len(ANNOTATION_SUFFIX)]
        entries.append(Entry(f"{city}/{stem}", root / "leftImg8bit" / split / city / f"{stem}{IMAGE_SUFFIX}",
                             lambda a=annotation: read_annotation(a)))
    return entries


def _mat_file(root: Path, split: str) -> Path | None:
    for folder in (root / "annotations", root):
        if (folder / f"anno_{split}.mat").exists():
            return folder / f"anno_{split}.mat"
    return None


def _mat_entries(root: Path, split: str, path: Path) -> list[Entry]:
    """The CityPersons repository's ``anno_<split>.mat``: cell ``anno_<split>_aligned`` of structs
    (``cityname``, ``im_name``, ``bbs`` = rows of [class, x, y, w, h, instance, x_vis, y_vis, w_vis, h_vis],
    class 0 ignore region, 1 pedestrian, 2 rider, 3 sitting, 4 other, 5 group)."""
    import scipy.io

    try:
        cells = np.asarray(scipy.io.loadmat(str(path))[f"anno_{split}_aligned"], dtype=object).reshape(-1)
        records = [(str(np.asarray(c[0, 0]["cityname"]).reshape(-1)[0]), str(np.asarray(c[0, 0]["im_name"]).reshape(-1)[0]),
                    np.asarray(c[0, 0]["bbs"], dtype=np.float64).reshape(-1, 10)) for c in cells]
    except Exception as exc:  # scipy raises several types for a damaged or foreign file
        raise DataError(f"{path}: not CityPersons' anno_{split}.mat ({exc.__class__.__name__}: {exc})",
                        "download it again from https://github.com/cvgroup-njust/CityPersons (annotations/)") from None
    names = ("ignore", "pedestrian", "rider", "sitting person", "person (other)", "person group")

    def read(image: Path, bbs: np.ndarray) -> PedestrianTarget:
        objects = [(names[int(row[0])] if 0 <= int(row[0]) < len(names) else f"class {int(row[0])}", row[1:5], row[6:10])
                   for row in bbs]
        try:
            width, height = _image_size(image)
            return _target(objects, width, height)
        except ValueError as exc:
            raise DataError(f"{path}: {image.name}: {exc}", "download anno_*.mat again") from None

    entries = []
    for city, name, bbs in records:
        image = root / "leftImg8bit" / split / city / name
        entries.append(Entry(f"{city}/{name[:-len(IMAGE_SUFFIX)] if name.endswith(IMAGE_SUFFIX) else name}", image,
                             lambda i=image, b=bbs: read(i, b)))
    return entries


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc})", _fix(IMAGES_ZIP)) from None


def _entries(root: Path, split: str) -> list[Entry]:
    """From ``gtBboxCityPersons/<split>`` (Cityscapes' package) or, without it, ``anno_<split>.mat``."""
    if (root / "gtBboxCityPersons" / split).is_dir():
        return _json_entries(root, split)
    mat = _mat_file(root, split)
    if mat is not None:
        return _mat_entries(root, split, mat)
    raise DataError(f"missing {root / 'gtBboxCityPersons' / split} (or annotations/anno_{split}.mat)", _fix(BOXES_ZIP))


def load(root: Path, split: str) -> Samples:
    if split not in SIZES:
        raise unknown_split(NAME, split, list(SIZES))
    return Samples([Sample(key=e.key, path=e.image, target=e.read()) for e in _entries(root, split)], ["pedestrian"])


def verify(root: Path, sizes: dict[str, int] = SIZES) -> list[str]:
    if not root.is_dir():
        return missing_root(root, NAME, HINT)
    problems = Problems()
    for split, expected in sizes.items():
        try:
            entries = _entries(root, split)
        except DataError as exc:
            problems.add("missing files", exc.message, exc.hint or _fix(BOXES_ZIP))
            continue
        check_count(problems, f"citypersons {split} annotations", len(entries), expected, _fix(BOXES_ZIP))
        images = [e.image for e in entries]
        check_images(problems, images, _fix(IMAGES_ZIP), f"replace it from {IMAGES_ZIP}")
        extra_files(problems, root / "leftImg8bit" / split, f"*/*{IMAGE_SUFFIX}", set(images),
                    f"remove it, or restore its annotation from {BOXES_ZIP}")
        for entry in entries:
            if not entry.image.exists():
                continue  # already reported
            try:
                entry.read()
            except DataError as exc:
                problems.add("bad annotations", exc.message, exc.hint or _fix(BOXES_ZIP))
    return problems.done()


CITYPERSONS = DatasetSpec(
    name=NAME,
    task="detection",
    description="CityPersons: Cityscapes street scenes, train 2,975 / val 500, one class (pedestrian), MR^-2",
    load=load,
    verify=verify,
    prepare_hint=HINT,
    splits=dict(SIZES),
    num_classes=1,
    train_split="train",
    test_split="val",
    primary_metric="mr",
    subdir="citypersons",
    provenance=downloaded(),
)


@hookimpl
def register_datasets(register):
    register(CITYPERSONS)
