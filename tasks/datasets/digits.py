"""``digits-lt``: real handwritten digits that ship inside scikit-learn, as a small long-tailed
classification dataset in GV-B's meta-list layout (works offline, prepared in under a second).

Source: ``sklearn.datasets.load_digits`` (UCI ML hand-written digits, 1,797 images, 8×8, 16 grey
levels). Preparation is deterministic:

* test split: in each class, the 30% of images with the smallest blake2b(index) — balanced;
* train split: the remaining images, long-tailed like CIFAR-LT: class ``c`` keeps the best-ranked
  ``round(n_c * 0.1 ** (c / 9))`` (imbalance ratio 10: digit 0 keeps all, digit 9 a tenth);
* images are upscaled to 32×32 (bilinear) and written as 8-bit greyscale PNGs.

Layout under the dataset directory::

    classes.txt  train_meta.list  test_meta.list  MANIFEST.sha256
    train/<digit>/<index>.png  test/<digit>/<index>.png
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gaia_bench import hookimpl
from gaia_bench.api import DatasetSpec, Samples
from gaia_bench.tasks.datasets.lib.data_source import embedded
from gaia_bench.tasks.datasets.lib.generated_sets import rank, verify_counts
from gaia_bench.tasks.datasets.lib.manifest import write_manifest
from gaia_bench.tasks.datasets.lib.meta_list import read_meta_list, write_meta_list

PLUGIN_ORDER = 800

NAME = "digits-lt"
NAME_SALT = "digits"  # the ranking salt the pinned list checksums were made with
CLASSES = [str(d) for d in range(10)]
TEST_SHARE = 0.3
IMBALANCE = 0.1
SIZE = 32
# Expected sizes and the sha256 of the lists: a different generator output is reported by verify.
SPLITS = {"train": 514, "test": 539}
LIST_SHA256 = {
    "train_meta.list": "711b62ec90f26705845bea2b6ec5d20a820006cdc3cf40c5ce36399b8c84fe2a",
    "test_meta.list": "cd3172d6f89da13fb901e577e58870b8fcef64a4b433571a4ef75b3847e85844",
}


def build_splits() -> dict[str, list[tuple[int, int]]]:
    """(sklearn index, label) pairs of each split."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for label in range(10):
        members = sorted((i for i in range(len(target)) if target[i] == label), key=lambda i: rank(NAME_SALT, i))
        n_test = round(TEST_SHARE * len(members))
        pool = members[n_test:]
        keep = max(1, round(len(pool) * IMBALANCE ** (label / 9)))
        splits["test"] += [(i, label) for i in members[:n_test]]
        splits["train"] += [(i, label) for i in pool[:keep]]
    return splits


def prepare(root: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    for split, pairs in build_splits().items():
        entries = []
        for index, label in pairs:
            rel = f"{split}/{label}/{index:04d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels = (images[index] * (255.0 / 16.0)).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((SIZE, SIZE), Image.BILINEAR).save(root / rel, optimize=False)
            entries.append((rel, label))
        write_meta_list(root / f"{split}_meta.list", entries)
    write_manifest(root)


def verify(root: Path) -> list[str]:
    """The shared checks (split sizes, manifest), plus the lists' pinned checksums: a different
    generator output on this machine is reported."""
    problems = verify_counts(root, NAME, load, SPLITS)
    for name, expected in LIST_SHA256.items():
        if (root / name).exists() and (digest := hashlib.sha256((root / name).read_bytes()).hexdigest()) != expected:
            problems.append(f"{name} has sha256 {digest[:12]}…, expected {expected[:12]}…: "
                            f"run `gaia-bench datasets prepare {NAME} --force`")
    return problems


def load(root: Path, split: str) -> Samples:
    return read_meta_list(root, f"{split}_meta.list", CLASSES)


DIGITS_LT = DatasetSpec(
    name=NAME,
    task="classification",
    description="real 8×8 handwritten digits from scikit-learn, long-tailed train split (ratio 10)",
    load=load,
    verify=verify,
    prepare=prepare,
    splits=SPLITS,
    num_classes=len(CLASSES),
    version="1",
    provenance=embedded(*[("handwritten digits, sklearn.datasets.load_digits", "scikit-learn")]),
)


@hookimpl
def register_datasets(register):
    register(DIGITS_LT)
