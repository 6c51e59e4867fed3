"""Tiny replicas of the 20 GV-B classification datasets, each in its official on-disk format
(CIFAR pickles, SVHN .mat, PCam HDF5, FER2013 CSV, Food-101 JSON, Flowers .mat, Stanford Cars
annotation structs, GTSRB CSV, UCF101 split lists + frames, Kinetics CSVs + frames, …), written
with a handful of 8×8 images so every reader can be tested without the real data.

``write_replica(name, data_root)`` writes one and returns what a reader must find:
``{split: [count of class 0, class 1, class 2]}`` (every replica uses 3 classes).
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

# Per-class counts: long-tailed train so that 10% keeps 3 / 1 / 1.
TRAIN = [25, 6, 3]
TEST = [2, 2, 2]
VAL = [1, 1, 1]
SIZE = 8

_rng = np.random.default_rng(0)


def pixels(size: int = SIZE, channels: int = 3) -> np.ndarray:
    shape = (size, size, channels) if channels > 1 else (size, size)
    return _rng.integers(0, 256, shape, dtype=np.uint8)


def save_image(path: Path, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".ppm": "PPM"}[path.suffix.lower()]
    Image.fromarray(pixels(size)).save(path, format=fmt)
    return path


def labels_of(counts: list[int]) -> list[int]:
    return [c for c, n in enumerate(counts) for _ in range(n)]


# --------------------------------------------------------------------------- container formats
def _cifar(root: Path, hundred: bool) -> dict:
    def batch(labels: list[int]) -> dict:
        data = np.stack([pixels(32).transpose(2, 0, 1).reshape(-1) for _ in labels]) if labels else np.zeros((0, 3072), np.uint8)
        key = "fine_labels" if hundred else "labels"
        return {"data": data, key: labels, **({"coarse_labels": [0] * len(labels)} if hundred else {})}

    def dump(name: str, obj: dict) -> None:
        (root / name).write_bytes(pickle.dumps(obj, protocol=2))

    root.mkdir(parents=True)
    train = labels_of(TRAIN)
    if hundred:
        dump("meta", {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]})
        dump("train", batch(train))
        dump("test", batch(labels_of(TEST)))
    else:
        dump("batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 10000})
        for i in range(5):
            dump(f"data_batch_{i + 1}", batch(train[i::5]))
        dump("test_batch", batch(labels_of(TEST)))
    return {"train": TRAIN, "test": TEST}


def cifar10(data_root: Path) -> dict:
    return _cifar(data_root / "cifar-10-batches-py", hundred=False)


def cifar100(data_root: Path) -> dict:
    return _cifar(data_root / "cifar-100-python", hundred=True)


def svhn(data_root: Path) -> dict:
    from scipy.io import savemat

    root = data_root / "svhn"
    root.mkdir(parents=True)
    for split, counts in (("train", TRAIN), ("test", TEST)):
        labels = np.array([10 if c == 0 else c for c in labels_of(counts)], dtype=np.uint8)  # digit 0 is stored as 10
        x = np.stack([pixels(32) for _ in labels], axis=3)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": labels.reshape(-1, 1)})
    return {"train": TRAIN, "test": TEST}


def pcam(data_root: Path) -> dict:
    import h5py

    root = data_root / "pcam"
    root.mkdir(parents=True)
    plan = {"train": [3, 2], "valid": [1, 1], "test": [2, 1]}
    for part, counts in plan.items():
        labels = labels_of(counts)
        with h5py.File(root / f"camelyonpatch_level_2_split_{part}_x.h5", "w") as f:
            f["x"] = np.stack([pixels(96) for _ in labels])
        with h5py.File(root / f"camelyonpatch_level_2_split_{part}_y.h5", "w") as f:
            f["y"] = np.array(labels, dtype=np.uint8).reshape(-1, 1, 1, 1)
    return {"train": plan["train"], "val": plan["valid"], "test": plan["test"]}


def fer2013(data_root: Path) -> dict:
    root = data_root / "fer2013"
    root.mkdir(parents=True)
    with open(root / "fer2013.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, counts in (("Training", TRAIN), ("PublicTest", VAL), ("PrivateTest", TEST)):
            for label in labels_of(counts):
                writer.writerow([label, " ".join(str(v) for v in pixels(48, 1).reshape(-1)), usage])
    return {"train": TRAIN, "val": VAL, "test": TEST}


# --------------------------------------------------------------------------- image files + lists
def food101(data_root: Path) -> dict:
    root = data_root / "food-101"
    classes = [f"dish_{i:03d}" for i in range(101)]
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("".join(c + "\n" for c in classes))
    for split, counts in (("train", TRAIN), ("test", TEST)):
        listing: dict[str, list[str]] = {c: [] for c in classes}
        for i, label in enumerate(labels_of(counts)):
            rel = f"{classes[label]}/{split}{i}"
            save_image(root / "images" / f"{rel}.jpg")
            listing[classes[label]].append(rel)
        (root / "meta" / f"{split}.json").write_text(json.dumps(listing))
    return {"train": TRAIN, "test": TEST}


def pets(data_root: Path) -> dict:
    root = data_root / "oxford-iiit-pet"
    breeds = ["Abyssinian", "american_bulldog", "Bengal"]
    (root / "annotations").mkdir(parents=True)
    for split, counts in (("trainval", TRAIN), ("test", TEST)):
        lines = []
        for i, label in enumerate(labels_of(counts)):
            image_id = f"{breeds[label]}_{split}{i}"
            save_image(root / "images" / f"{image_id}.jpg")
            lines.append(f"{image_id} {label + 1} {1 if breeds[label][0].isupper() else 2} {i + 1}\n")
        (root / "annotations" / f"{split}.txt").write_text("".join(lines))
    return {"trainval": TRAIN, "test": TEST}


def flowers(data_root: Path) -> dict:
    from scipy.io import savemat

    root = data_root / "flowers-102"
    ids: dict[str, list[int]] = {}
    labels: list[int] = []
    for key, counts in (("trnid", TRAIN), ("valid", VAL), ("tstid", TEST)):
        ids[key] = []
        for label in labels_of(counts):
            labels.append(label + 1)  # 1-based
            ids[key].append(len(labels))
            save_image(root / "jpg" / f"image_{len(labels):05d}.jpg")
    savemat(root / "imagelabels.mat", {"labels": np.array(labels, dtype=np.uint8).reshape(1, -1)})
    savemat(root / "setid.mat", {k: np.array(v, dtype=np.uint16).reshape(1, -1) for k, v in ids.items()})
    return {"train": TRAIN, "val": VAL, "test": TEST}


def sun397(data_root: Path) -> dict:
    root = data_root / "SUN397"
    classes = ["/a/abbey", "/b/bakery/shop", "/c/canyon"]
    root.mkdir(parents=True)
    (root / "ClassName.txt").write_text("".join(c + "\n" for c in classes))
    for split, name, counts in (("train", "Training_01.txt", TRAIN), ("test", "Testing_01.txt", TEST)):
        lines = []
        for i, label in enumerate(labels_of(counts)):
            rel = f"{classes[label]}/sun_{split}{i}.jpg"
            save_image(root / rel.lstrip("/"))
            lines.append(rel + "\n")
        (root / "Partitions").mkdir(exist_ok=True)
        (root / "Partitions" / name).write_text("".join(lines))
    return {"train": TRAIN, "test": TEST}


def cars(data_root: Path) -> dict:
    from scipy.io import savemat

    root = data_root / "stanford_cars"
    (root / "devkit").mkdir(parents=True)
    savemat(root / "devkit" / "cars_meta.mat",
            {"class_names": np.array([f"Make Model {i}" for i in range(196)], dtype=object).reshape(1, -1)})
    for split, counts, mat in (("train", TRAIN, root / "devkit" / "cars_train_annos.mat"),
                               ("test", TEST, root / "cars_test_annos_withlabels.mat")):
        rows = np.zeros((1, sum(counts)), dtype=[("fname", "O"), ("class", "O")])
        for i, label in enumerate(labels_of(counts)):
            fname = f"{i + 1:05d}.jpg"
            save_image(root / f"cars_{split}" / fname)
            rows[0, i] = (fname, np.uint8(label + 1))  # 1-based
        savemat(mat, {"annotations": rows})
    return {"train": TRAIN, "test": TEST}


def dtd(data_root: Path) -> dict:
    root = data_root / "dtd" / "dtd"
    classes = ["banded", "blotchy", "zigzagged"]
    (root / "labels").mkdir(parents=True)
    for split, counts in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        lines = []
        for i, label in enumerate(labels_of(counts)):
            rel = f"{classes[label]}/{classes[label]}_{split}{i:04d}.jpg"
            save_image(root / "images" / rel)
            lines.append(rel + "\n")
        (root / "labels" / f"{split}1.txt").write_text("".join(lines))
    return {"train": TRAIN, "val": VAL, "test": TEST}


def caltech101(data_root: Path) -> dict:
    root = data_root / "caltech101" / "101_ObjectCategories"
    per_class = {"BACKGROUND_Google": 32, "Faces": 31, "accordion": 31}
    for name, n in per_class.items():
        for i in range(n):
            save_image(root / name / f"image_{i + 1:04d}.jpg")
    return {"train": [30, 30, 30], "test": [2, 1, 1]}


def aircraft(data_root: Path) -> dict:
    root = data_root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172"]
    (root / "images").mkdir(parents=True)
    (root / "variants.txt").write_text("".join(v + "\n" for v in variants))
    plan = {"train": TRAIN, "val": VAL, "test": TEST}
    trainval = []
    n = 1000000
    for split, counts in plan.items():
        lines = []
        for label in labels_of(counts):
            n += 1
            save_image(root / "images" / f"{n}.jpg")
            lines.append(f"{n} {variants[label]}\n")
        (root / f"images_variant_{split}.txt").write_text("".join(lines))
        if split != "test":
            trainval += lines
    (root / "images_variant_trainval.txt").write_text("".join(trainval))
    return plan


def _class_folders(root: Path, classes: list[str], counts: list[int], suffix: str = ".jpg") -> None:
    for label, name in enumerate(classes):
        for i in range(counts[label]):
            save_image(root / name / f"{name}_{i + 1}{suffix}")


def eurosat(data_root: Path) -> dict:
    _class_folders(data_root / "eurosat" / "2750", ["AnnualCrop", "Forest", "River"], [10, 5, 5])
    return {"train": [6, 3, 3], "val": [2, 1, 1], "test": [2, 1, 1]}


def resisc45(data_root: Path) -> dict:
    _class_folders(data_root / "NWPU-RESISC45", ["airplane", "beach", "wetland"], [10, 5, 5])
    return {"train": [6, 3, 3], "val": [2, 1, 1], "test": [2, 1, 1]}


def imagenet(data_root: Path) -> dict:
    wnids = ["n01440764", "n01443537", "n01484850"]
    for split, counts in (("train", TRAIN), ("val", TEST)):
        for label, wnid in enumerate(wnids):
            for i in range(counts[label]):
                save_image(data_root / "imagenet" / split / wnid / f"{wnid}_{split}{i}.JPEG")
    return {"train": TRAIN, "val": TEST}


def retinopathy(data_root: Path) -> dict:
    root = data_root / "diabetic-retinopathy-detection"
    root.mkdir(parents=True)
    with open(root / "trainLabels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "level"])
        for i, label in enumerate(labels_of(TRAIN)):
            save_image(root / "train" / f"{i}_left.jpeg")
            writer.writerow([f"{i}_left", label])
    with open(root / "retinopathy_solution.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "level", "Usage"])
        for usage, counts in (("Public", VAL), ("Private", TEST)):
            for i, label in enumerate(labels_of(counts)):
                save_image(root / "test" / f"{usage}{i}_right.jpeg")
                writer.writerow([f"{usage}{i}_right", label, usage])
    return {"train": TRAIN, "val": VAL, "test": TEST}


def gtsrb(data_root: Path) -> dict:
    root = data_root / "gtsrb"
    for label in range(3):
        for i in range(TRAIN[label]):
            save_image(root / "GTSRB" / "Training" / f"{label:05d}" / f"00000_{i:05d}.ppm")
        (root / "GTSRB" / "Training" / f"{label:05d}" / f"GT-{label:05d}.csv").write_text("Filename;ClassId\n")
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"]
    for i, label in enumerate(labels_of(TEST)):
        save_image(root / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;8;8;0;0;8;8;{label}\n")
    (root / "GT-final_test.csv").write_text("".join(rows))
    return {"train": TRAIN, "test": TEST}


# --------------------------------------------------------------------------- video frames
def _frames(clip_dir: Path, n: int = 3) -> None:
    for i in range(n):
        save_image(clip_dir / f"img_{i + 1:05d}.jpg")


def ucf101(data_root: Path) -> dict:
    root = data_root / "ucf101"
    classes = ["ApplyEyeMakeup", "Basketball", "YoYo"]
    (root / "ucfTrainTestlist").mkdir(parents=True)
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for split, counts in (("train", TRAIN), ("test", TEST)):
        lines = []
        for i, label in enumerate(labels_of(counts)):
            stem = f"v_{classes[label]}_g{i:02d}_c0{1 if split == 'train' else 2}"
            _frames(root / "rawframes" / classes[label] / stem)
            lines.append(f"{classes[label]}/{stem}.avi" + (f" {label + 1}\n" if split == "train" else "\n"))
        (root / "ucfTrainTestlist" / f"{split}list01.txt").write_text("".join(lines))
    return {"train": TRAIN, "test": TEST}


def kinetics700(data_root: Path) -> dict:
    """One clip of each CSV has no frames: gone from YouTube, as in any real copy."""
    root = data_root / "kinetics700"
    labels = ["abseiling", "juggling balls", "zumba"]
    (root / "annotations").mkdir(parents=True)
    for split, name, counts in (("train", "train.csv", TRAIN), ("val", "validate.csv", TEST)):
        with open(root / "annotations" / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for i, label in enumerate(labels_of(counts) + [0]):
                writer.writerow([labels[label], f"yt{split}{i:03d}", 10, 20, split])
                if i < sum(counts):
                    _frames(root / "rawframes" / split / labels[label] / f"yt{split}{i:03d}_000010_000020")
    return {"train": TRAIN, "val": TEST}


WRITERS: dict[str, Callable[[Path], dict]] = {
    "cifar10": cifar10, "cifar100": cifar100, "food101": food101, "pets": pets, "flowers": flowers,
    "sun397": sun397, "cars": cars, "dtd": dtd, "caltech101": caltech101, "aircraft": aircraft, "svhn": svhn,
    "eurosat": eurosat, "resisc45": resisc45, "retinopathy": retinopathy, "fer2013": fer2013, "ucf101": ucf101,
    "gtsrb": gtsrb, "pcam": pcam, "imagenet": imagenet, "kinetics700": kinetics700,
}


def write_replica(name: str, data_root: Path) -> dict[str, list[int]]:
    """Write the replica of dataset ``name`` under ``data_root``; return its per-class split counts."""
    return WRITERS[name](Path(data_root))
