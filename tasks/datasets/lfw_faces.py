"""``lfw-faces``: scikit-image's bundled real LFW subset — 100 face crops and 100 non-face patches
(25×25 greyscale) — a small, balanced binary problem in GV-B's meta-list layout (test: 30 per class)."""

from __future__ import annotations

from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.tasks.datasets.lib.data_source import embedded
from gaia_bench.tasks.datasets.lib.generated_sets import long_tailed_split, verify_counts, write_images
from gaia_bench.tasks.datasets.lib.meta_list import read_meta_list

PLUGIN_ORDER = 810

NAME = "lfw-faces"
CLASSES = ["non-face", "face"]
SPLITS = {"train": 140, "test": 60}


def prepare(root: Path) -> None:
    from skimage import data

    images = data.lfw_subset()  # first 100 are faces, last 100 are not
    labels = [1] * 100 + [0] * 100
    splits = long_tailed_split(labels, NAME, test_per_class=30, head_train=70, imbalance=1.0)
    write_images(root, splits, lambda i: images[i], lambda i: labels[i], CLASSES, layout="meta")


def load(root: Path, split: str) -> Samples:
    return read_meta_list(root, f"{split}_meta.list", CLASSES)


LFW_FACES = DatasetSpec(
    name=NAME,
    task="classification",
    description="real LFW face crops vs non-faces from scikit-image (25×25), balanced, meta list",
    load=load,
    verify=lambda root: verify_counts(root, NAME, load, SPLITS),
    prepare=prepare,
    splits=SPLITS,
    num_classes=2,
    provenance=embedded(*[("LFW faces and non-faces, skimage.data.lfw_subset", "scikit-image")]),
)


@hookimpl
def register_datasets(register):
    register(LFW_FACES)
