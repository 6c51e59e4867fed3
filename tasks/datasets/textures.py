"""``textures-lt``: patches of real photographs bundled with scikit-image (brick wall, grass,
gravel, lunar surface, cell micrograph), labelled by the photo they come from.

Patches are 32×32, cut at a random scale (24–64 px) and brightness/contrast, train patches from
the top 70% of each photo and test patches from the bottom 30%, so no pixel is in both. Train is
long-tailed (150 → 15 per class), test has 40 per class. Image-folder layout.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.tasks.datasets.lib.data_source import embedded
from gaia_bench.tasks.datasets.lib.generated_sets import verify_counts, write_images
from gaia_bench.tasks.datasets.lib.image_folder import read_image_folder

PLUGIN_ORDER = 815

NAME = "textures-lt"
SOURCES = ("brick", "grass", "gravel", "moon", "cell")  # skimage.data functions; class order = tail order
HEAD, IMBALANCE, TEST_PER_CLASS, PATCH = 150, 0.1, 40, 32
SPLITS = {"train": 323, "test": 200}


def _train_counts() -> list[int]:
    k = len(SOURCES)
    return [max(1, round(HEAD * IMBALANCE ** (c / (k - 1)))) for c in range(k)]


def _patch(photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    size = int(rng.integers(24, 65))
    top = int(rng.integers(rows[0], rows[1] - size))
    left = int(rng.integers(0, photo.shape[1] - size))
    crop = Image.fromarray(photo[top : top + size, left : left + size]).resize((PATCH, PATCH), Image.BILINEAR)
    x = np.asarray(crop, dtype=np.float32) / 255.0
    x = (x - x.mean()) * rng.uniform(0.6, 1.4) + x.mean() + rng.uniform(-0.15, 0.15)
    return np.clip(x, 0.0, 1.0)


def make_patches() -> tuple[dict[str, list[int]], list[np.ndarray], list[int]]:
    from skimage import data

    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: dict[str, list[int]] = {"train": [], "test": []}
    for c, (source, n_train) in enumerate(zip(SOURCES, _train_counts())):
        photo = getattr(data, source)()
        cut = int(photo.shape[0] * 0.7)
        rng = np.random.default_rng(zlib.crc32(f"{NAME}:{source}".encode()))
        for split, n, rows in (("train", n_train, (0, cut)), ("test", TEST_PER_CLASS, (cut, photo.shape[0]))):
            for _ in range(n):
                splits[split].append(len(images))
                images.append(_patch(photo, rows, rng))
                labels.append(c)
    return splits, images, labels


def prepare(root: Path) -> None:
    splits, images, labels = make_patches()
    write_images(root, splits, lambda i: images[i], lambda i: labels[i], list(SOURCES), layout="folder")


def load(root: Path, split: str) -> Samples:
    return read_image_folder(root, split)


TEXTURES_LT = DatasetSpec(
    name=NAME,
    task="classification",
    description="patches of real scikit-image photos (brick, grass, gravel, moon, cell), long-tailed 150→15",
    load=load,
    verify=lambda root: verify_counts(root, NAME, load, SPLITS),
    prepare=prepare,
    splits=SPLITS,
    num_classes=len(SOURCES),
    provenance=embedded(*[("patches of skimage.data photos", "scikit-image")]),
)


@hookimpl
def register_datasets(register):
    register(TEXTURES_LT)
