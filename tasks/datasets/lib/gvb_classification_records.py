"""Readers of the GV-B classification datasets whose images are records inside container files,
not files of their own: CIFAR-10/100 (python pickles), SVHN (MATLAB .mat), PatchCamelyon (HDF5)
and FER2013 (CSV of pixel strings).

Each sample's ``decode`` is a picklable ``functools.partial`` of a module-level function, so
DataLoader workers can decode it; the container is read once per process (cached), not per image.
"""

from __future__ import annotations

import csv
import functools
import os
import pickle
from pathlib import Path

import numpy as np

from gaia_bench.api import Sample, Samples
from gaia_bench.errors import DataError


def _image(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(array))


def _require(path: Path, fix: str) -> Path:
    if not path.exists():
        raise DataError(f"missing {path}", fix)
    return path


# --------------------------------------------------------------------------- CIFAR
# What the official CIFAR batches are made of: dicts, lists, strings, bytes, numbers and one numpy
# array. A pickle may name any other callable and have it run while it loads (datasets come from
# third parties and are shared between people), so nothing else is let through.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),  # an array
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # an array, protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes written by Python 3 with protocol 2
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only the types the official CIFAR files contain."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no official CIFAR batch contains: refused")


@functools.lru_cache(maxsize=8)
def _cifar_batch(path: str) -> dict:
    with open(path, "rb") as f:
        batch = _CifarUnpickler(f, encoding="latin1").load()
    if not isinstance(batch, dict):
        raise pickle.UnpicklingError(f"it holds a {type(batch).__name__}, not a CIFAR batch (a dict)")
    return batch


def _checked_batch(path: str) -> dict:
    """:func:`_cifar_batch`, with the file named in a refusal."""
    try:
        return _cifar_batch(path)
    except pickle.UnpicklingError as exc:
        exc.filename = path
        raise


def _cifar_pixels(path: str) -> np.ndarray:
    data = np.asarray(_cifar_batch(path)["data"], dtype=np.uint8)
    return data.reshape(-1, 3, 32, 32)


def cifar_image(path: str, index: int):
    return _image(_cifar_pixels(path)[index].transpose(1, 2, 0))


def read_cifar(root: Path, files: list[str], label_key: str, meta_file: str, names_key: str, fix: str) -> Samples:
    """The images of the pickled batches ``files`` under ``root`` (torchvision's layout)."""
    try:
        classes = list(_checked_batch(str(_require(root / meta_file, fix)))[names_key])
        samples = []
        for name in files:
            path = str(_require(root / name, fix))
            batch = _checked_batch(path)
            labels = batch[label_key]
            if len(labels) != len(batch["data"]):
                raise DataError(f"{path} has {len(batch['data'])} images but {len(labels)} labels", fix)
            samples += [Sample(f"{name}/{i:05d}", Path(path), int(t), functools.partial(cifar_image, path, i))
                        for i, t in enumerate(labels)]
    except pickle.UnpicklingError as exc:
        bad = getattr(exc, "filename", None) or root
        raise DataError(f"refusing {bad}: {exc}", f"do not use data from this source; {fix}") from None
    except (EOFError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the CIFAR batches under {root}: {type(exc).__name__}: {exc}", fix) from None
    return Samples(samples, classes)


# --------------------------------------------------------------------------- SVHN
@functools.lru_cache(maxsize=2)
def _svhn_mat(path: str) -> dict:
    from scipy.io import loadmat

    return loadmat(path)


def svhn_image(path: str, index: int):
    return _image(_svhn_mat(path)["X"][:, :, :, index])


def read_svhn(root: Path, split: str, fix: str) -> Samples:
    """``<split>_32x32.mat``: X is 32×32×3×N, y is N×1 with digit 0 stored as 10 (torchvision maps it to 0)."""
    path = str(_require(root / f"{split}_32x32.mat", fix))
    try:
        mat = _svhn_mat(path)
        labels = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
        n = mat["X"].shape[3]
    except (KeyError, ValueError, IndexError, OSError) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}", fix) from None
    if len(labels) != n:
        raise DataError(f"{path} has {n} images but {len(labels)} labels", fix)
    labels[labels == 10] = 0
    samples = [Sample(f"{split}/{i:06d}", Path(path), int(t), functools.partial(svhn_image, path, i))
               for i, t in enumerate(labels)]
    return Samples(samples, [str(d) for d in range(10)])


# --------------------------------------------------------------------------- PatchCamelyon
_H5: dict[tuple[int, str], object] = {}


def _h5(path: str):
    """An open HDF5 file per process (an h5py handle must not cross a fork)."""
    import h5py

    key = (os.getpid(), path)
    if key not in _H5:
        _H5[key] = h5py.File(path, "r")
    return _H5[key]


def pcam_image(path: str, index: int):
    return _image(_h5(path)["x"][index])


PCAM_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def read_pcam(root: Path, split: str, fix: str) -> Samples:
    """``camelyonpatch_level_2_split_<split>_{x,y}.h5``: x is N×96×96×3 uint8, y is N×1×1×1."""
    import h5py

    part = PCAM_SPLITS[split]
    x = str(_require(root / f"camelyonpatch_level_2_split_{part}_x.h5", fix))
    y = _require(root / f"camelyonpatch_level_2_split_{part}_y.h5", fix)
    try:
        with h5py.File(y, "r") as f:
            labels = np.asarray(f["y"]).reshape(-1)
        with h5py.File(x, "r") as f:
            n = f["x"].shape[0]
    except (KeyError, OSError) as exc:
        raise DataError(f"cannot read the PCam files of split {split} under {root}: {exc}", fix) from None
    if len(labels) != n:
        raise DataError(f"{x} has {n} images but {y} has {len(labels)} labels", fix)
    samples = [Sample(f"{part}/{i:06d}", Path(x), int(t), functools.partial(pcam_image, x, i))
               for i, t in enumerate(labels)]
    return Samples(samples, ["normal", "tumor"])


# --------------------------------------------------------------------------- FER2013
FER_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
FER_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FER_FILES = ("fer2013.csv", "icml_face_data.csv")  # both carry test labels (torchvision's precedence)


def fer_file(root: Path) -> Path | None:
    return next((root / n for n in FER_FILES if (root / n).exists()), None)


@functools.lru_cache(maxsize=2)
def _fer_table(path: str) -> tuple[list[int], list[str], np.ndarray]:
    """(emotions, usages, N×48×48 uint8 pixels) of the CSV, parsed once per process (the pixel
    strings themselves would take ~4x the memory). ``icml_face_data.csv`` has spaces in its header."""
    labels, usages, images = [], [], []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.DictReader(f), 2):
            row = {k.strip(): v for k, v in row.items()}
            pixels = np.fromstring(row["pixels"], dtype=np.uint8, sep=" ")
            if pixels.size != 48 * 48:
                raise ValueError(f"line {lineno} has {pixels.size} pixels, expected 2304")
            labels.append(int(row["emotion"]))
            usages.append(row["Usage"].strip())
            images.append(pixels.reshape(48, 48))
    return labels, usages, np.stack(images) if images else np.zeros((0, 48, 48), np.uint8)


def fer_image(path: str, index: int):
    return _image(_fer_table(path)[2][index])


def read_fer2013(root: Path, split: str, fix: str) -> Samples:
    """Rows whose Usage is Training (train), PublicTest (val) or PrivateTest (test)."""
    path = fer_file(root)
    if path is None:
        hint = (" (train.csv/test.csv carry no test labels: get fer2013.csv)" if (root / "test.csv").exists() else "")
        raise DataError(f"missing {root / FER_FILES[0]}{hint}", fix)
    try:
        labels, usages, _ = _fer_table(str(path))
    except (KeyError, ValueError, AttributeError) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}", fix) from None
    usage = FER_USAGE[split]
    samples = [Sample(f"{usage}/{i:05d}", path, label, functools.partial(fer_image, str(path), i))
               for i, (label, use) in enumerate(zip(labels, usages)) if use == usage]
    return Samples(samples, FER_CLASSES)
