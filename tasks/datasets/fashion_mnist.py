"""``fashion-mnist-lt``: real Zalando Fashion-MNIST photos (Debian's ``dataset-fashion-mnist``),
long-tailed, in torchvision's image-folder layout.

Drawn from the official 10,000-image test set only (the 60,000 training images feed the upstream
pool, so downstream and upstream never share an image): 100 per class for test, and a train split
decaying from 300 (T-shirt/top) to 30 (Ankle boot) images per class (1,226 in all).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.tasks.datasets.lib.data_source import embedded
from gaia_bench.tasks.datasets.lib.generated_sets import long_tailed_split, verify_counts, write_images
from gaia_bench.tasks.datasets.lib.image_folder import read_image_folder
from gaia_bench.tasks.datasets.lib.sources import debian_path

PLUGIN_ORDER = 805

NAME = "fashion-mnist-lt"
PACKAGE = "dataset-fashion-mnist"
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
SPLITS = {"train": 1226, "test": 1000}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: magic, dims as big-endian int32, then uint8 data), gzipped."""
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_official(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the official 'train' (60k) or 't10k' (10k) set."""
    base = debian_path(PACKAGE, "usr/share/datasets/fashion-mnist")
    return read_idx(base / f"{split}-images-idx3-ubyte.gz"), read_idx(base / f"{split}-labels-idx1-ubyte.gz")


def prepare(root: Path) -> None:
    images, labels = load_official("t10k")
    splits = long_tailed_split(labels.tolist(), NAME, test_per_class=100, head_train=300, imbalance=0.1)
    write_images(root, splits, lambda i: images[i], lambda i: int(labels[i]), CLASSES, layout="folder")


def load(root: Path, split: str) -> Samples:
    return read_image_folder(root, split)


FASHION_MNIST_LT = DatasetSpec(
    name=NAME,
    task="classification",
    description="real Fashion-MNIST photos (Debian dataset-fashion-mnist), long-tailed 300→30, image folder",
    load=load,
    verify=lambda root: verify_counts(root, NAME, load, SPLITS),
    prepare=prepare,
    prepare_hint=f"needs Debian's {PACKAGE}: run `make sources` or `sudo apt-get install {PACKAGE}`",
    splits=SPLITS,
    num_classes=len(CLASSES),
    provenance=embedded(*[(f"Fashion-MNIST test photos, Debian package {PACKAGE}", None)]),
)


@hookimpl
def register_datasets(register):
    register(FASHION_MNIST_LT)
