"""Readers of the GV-B classification datasets stored as one image file per sample, in each
dataset's official layout. torchvision's dataset classes parse the layouts they know (Food-101,
Oxford-IIIT Pets, Stanford Cars, DTD, FGVC-Aircraft, GTSRB, EuroSAT), always with
``download=False``; the rest (Flowers-102 and FER2013 check md5s in their constructors, so a
non-official copy would not load at all; SUN397's partitions, Caltech-101 with its background
class, RESISC45, Retinopathy, ImageNet's folders) are read here directly.

Every reader takes the dataset directory (torchvision's ``root/<base folder>``) and a split.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Callable

from gaia_bench.api import Sample, Samples
from gaia_bench.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def _samples(root: Path, pairs, classes) -> Samples:
    out = []
    for path, target in pairs:
        path = Path(path)
        out.append(Sample(path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path), path, int(target)))
    return Samples(out, list(classes))


def _torchvision(root: Path, build: Callable[[str], object], fix: str):
    """A torchvision dataset over ``root``'s parent; its 'not found' errors become DataErrors."""
    try:
        return build(str(root.parent))
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read {root}: {exc}", fix) from None


def read_food101(root: Path, split: str, fix: str) -> Samples:
    from torchvision.datasets import Food101

    ds = _torchvision(root, lambda r: Food101(r, split=split, download=False), fix)
    return _samples(root, zip(ds._image_files, ds._labels), ds.classes)


def read_pets(root: Path, split: str, fix: str) -> Samples:
    from torchvision.datasets import OxfordIIITPet

    ds = _torchvision(root, lambda r: OxfordIIITPet(r, split=split, download=False), fix)
    return _samples(root, zip(ds._images, ds._labels), ds.classes)


def read_cars(root: Path, split: str, fix: str) -> Samples:
    from torchvision.datasets import StanfordCars

    ds = _torchvision(root, lambda r: StanfordCars(r, split=split, download=False), fix)
    return _samples(root, ds._samples, ds.classes)


def read_dtd(root: Path, split: str, fix: str, partition: int = 1) -> Samples:
    from torchvision.datasets import DTD

    ds = _torchvision(root, lambda r: DTD(r, split=split, partition=partition, download=False), fix)
    return _samples(root, zip(ds._image_files, ds._labels), ds.classes)


def read_aircraft(root: Path, split: str, fix: str) -> Samples:
    from torchvision.datasets import FGVCAircraft

    ds = _torchvision(root, lambda r: FGVCAircraft(r, split=split, annotation_level="variant", download=False), fix)
    return _samples(root, zip(ds._image_files, ds._labels), ds.classes)


def read_gtsrb(root: Path, split: str, fix: str) -> Samples:
    from torchvision.datasets import GTSRB

    ds = _torchvision(root, lambda r: GTSRB(r, split=split, download=False), fix)
    return _samples(root, ds._samples, [f"{c:05d}" for c in range(43)])


def read_flowers(root: Path, split: str, fix: str) -> Samples:
    """``setid.mat`` (trnid / valid / tstid, 1-based image ids) and ``imagelabels.mat`` (1-based)."""
    from scipy.io import loadmat

    for name in ("setid.mat", "imagelabels.mat"):
        if not (root / name).exists():
            raise DataError(f"missing {root / name}", fix)
    try:
        ids = loadmat(root / "setid.mat", squeeze_me=True)[{"train": "trnid", "val": "valid", "test": "tstid"}[split]]
        labels = loadmat(root / "imagelabels.mat", squeeze_me=True)["labels"]
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"cannot read the Flowers-102 .mat files under {root}: {exc}", fix) from None
    pairs = [(root / "jpg" / f"image_{int(i):05d}.jpg", int(labels[int(i) - 1]) - 1) for i in ids.reshape(-1)]
    return _samples(root, pairs, [str(c) for c in range(1, 103)])


def _rank(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=8).digest()


def ranked_split(pairs: list[tuple[Path, int]], split: str, shares: dict[str, float]) -> list[tuple[Path, int]]:
    """A deterministic per-class split of a dataset that has none: in each class, files ordered by
    blake2b(file name) and cut into consecutive ``shares`` (e.g. VTAB's 60/20/20)."""
    by_class: dict[int, list[Path]] = {}
    for path, target in pairs:
        by_class.setdefault(target, []).append(path)
    out = []
    for target in sorted(by_class):
        members = sorted(by_class[target], key=lambda p: _rank(p.name))
        start = 0
        for name, share in shares.items():
            count = round(share * len(members)) if name != list(shares)[-1] else len(members) - start
            if name == split:
                out += [(p, target) for p in members[start:start + count]]
            start += count
    return out


def _class_folders(directory: Path, fix: str) -> tuple[list[tuple[Path, int]], list[str]]:
    from torchvision.datasets.folder import find_classes

    if not directory.is_dir():
        raise DataError(f"missing directory {directory}", fix)
    classes, _ = find_classes(str(directory))
    pairs = []
    for target, name in enumerate(classes):
        pairs += [(p, target) for p in sorted((directory / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    return pairs, classes


VTAB_SHARES = {"train": 0.6, "val": 0.2, "test": 0.2}


def read_eurosat(root: Path, split: str, fix: str) -> Samples:
    from torchvision.datasets import EuroSAT

    ds = _torchvision(root, lambda r: EuroSAT(r, download=False), fix)
    pairs = [(Path(p), t) for p, t in ds.samples]
    return _samples(root, ranked_split(pairs, split, VTAB_SHARES), ds.classes)


def read_resisc45(root: Path, split: str, fix: str) -> Samples:
    pairs, classes = _class_folders(root, fix)
    return _samples(root, ranked_split(pairs, split, VTAB_SHARES), classes)


def read_caltech101(root: Path, split: str, fix: str) -> Samples:
    """All 102 folders of ``101_ObjectCategories`` (GV-B keeps BACKGROUND_Google; torchvision drops
    it); 30 images per class train, the rest test (the TFDS / VTAB convention)."""
    pairs, classes = _class_folders(root / "101_ObjectCategories", fix)
    by_class: dict[int, list[Path]] = {}
    for path, target in pairs:
        by_class.setdefault(target, []).append(path)
    out = []
    for target in sorted(by_class):
        members = sorted(by_class[target], key=lambda p: _rank(p.name))
        chosen = members[:30] if split == "train" else members[30:]
        out += [(p, target) for p in chosen]
    return _samples(root, out, classes)


def read_sun397(root: Path, split: str, fix: str, partition: int = 1) -> Samples:
    """The official partition lists ``Training_01.txt`` / ``Testing_01.txt`` (from Partitions.zip,
    in the dataset directory or its ``Partitions/``), class order from ``ClassName.txt``."""
    names = root / "ClassName.txt"
    if not names.exists():
        raise DataError(f"missing {names}", fix)
    classes = [line.strip() for line in names.read_text().splitlines() if line.strip()]
    index = {c: i for i, c in enumerate(classes)}
    list_name = f"{'Training' if split == 'train' else 'Testing'}_{partition:02d}.txt"
    lst = next((p for p in (root / list_name, root / "Partitions" / list_name) if p.exists()), None)
    if lst is None:
        raise DataError(f"missing the SUN397 partition list {root / 'Partitions' / list_name}",
                        "download https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip and unzip it "
                        f"into {root} (or run `gaia-bench datasets prepare sun397 --download`)")
    pairs = []
    for lineno, line in enumerate(lst.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel = line.strip()
        cls = rel.rsplit("/", 1)[0]
        if cls not in index:
            raise DataError(f"{lst}:{lineno}: class {cls!r} is not in {names}", fix)
        pairs.append((root / rel.lstrip("/"), index[cls]))
    return _samples(root, pairs, [c.lstrip("/") for c in classes])


RETINOPATHY_SPLITS = {"train": ("train", "trainLabels.csv", None), "val": ("test", "retinopathy_solution.csv", "Public"),
                      "test": ("test", "retinopathy_solution.csv", "Private")}


def read_retinopathy(root: Path, split: str, fix: str) -> Samples:
    """Kaggle's EyePACS layout: ``train/<image>.jpeg`` + ``trainLabels.csv``, ``test/<image>.jpeg`` +
    ``retinopathy_solution.csv`` (Usage Public = TFDS validation, Private = TFDS test)."""
    folder, labels_file, usage = RETINOPATHY_SPLITS[split]
    path = root / labels_file
    if not path.exists():
        raise DataError(f"missing {path}", fix)
    pairs = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if usage is None or row.get("Usage") == usage:
                pairs.append((root / folder / f"{row['image']}.jpeg", int(row["level"])))
    return _samples(root, pairs, [str(g) for g in range(5)])


def read_imagenet(root: Path, split: str, fix: str) -> Samples:
    """``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``: the folders torchvision's ``ImageNet``
    makes from the official tars; class order = sorted wnids (torchvision's)."""
    pairs, classes = _class_folders(root / split, fix)
    return _samples(root, pairs, classes)
