"""Shared machinery of the embedded classification datasets: a deterministic balanced test split,
a long-tailed train split, and writing / verifying them in an official on-disk layout.

Every choice is a function of (dataset name, sample index) through blake2b, so the same version
writes the same files on every machine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gaia_bench.api import Samples
from gaia_bench.tasks.datasets.lib.manifest import verify_manifest, write_manifest
from gaia_bench.tasks.datasets.lib.meta_list import write_meta_list


def rank(prefix: str, index: int) -> bytes:
    return hashlib.blake2b(f"{prefix}:{index}".encode(), digest_size=8).digest()


def long_tailed_split(
    labels: Sequence[int],
    prefix: str,
    *,
    test_per_class: int,
    head_train: int,
    imbalance: float,
) -> dict[str, list[int]]:
    """Indices of a balanced test split (``test_per_class`` of each class) and a long-tailed train
    split: class ``c`` of ``K`` keeps ``round(head_train * imbalance ** (c / (K - 1)))`` (at least 1)
    of the remaining images — CIFAR-LT's exponential profile, head class first."""
    classes = sorted(set(int(y) for y in labels))
    splits: dict[str, list[int]] = {"train": [], "test": []}
    for position, c in enumerate(classes):
        members = sorted((i for i, y in enumerate(labels) if int(y) == c), key=lambda i: rank(prefix, i))
        splits["test"] += members[:test_per_class]
        pool = members[test_per_class:]
        exponent = position / max(1, len(classes) - 1)
        keep = max(1, min(len(pool), round(head_train * imbalance ** exponent)))
        splits["train"] += pool[:keep]
    return splits


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (or any uint8) to uint8, rounding half up."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.floor(image * 255.0 + 0.5), 0, 255).astype(np.uint8)


def write_images(
    root: Path,
    splits: dict[str, list[int]],
    image_of: Callable[[int], np.ndarray],
    label_of: Callable[[int], int],
    class_names: Sequence[str],
    layout: str,
) -> None:
    """Write PNGs in ``layout`` 'meta' (GV-B: ``<split>/<label>/<i>.png`` + ``<split>_meta.list``)
    or 'folder' (torchvision ImageFolder: ``<split>/<class name>/<i>.png``), then a manifest."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in class_names))
    for split, indices in splits.items():
        entries = []
        for index in indices:
            label = label_of(index)
            folder = str(label) if layout == "meta" else class_names[label]
            rel = f"{split}/{folder}/{index:05d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(image_of(index))).save(root / rel, optimize=False)
            entries.append((rel, label))
        if layout == "meta":
            write_meta_list(root / f"{split}_meta.list", entries)
    write_manifest(root)


def verify_counts(root: Path, name: str, load: Callable[[Path, str], Samples], splits: dict[str, int]) -> list[str]:
    """Missing directory, wrong split sizes, unreadable lists, missing/altered/extra files."""
    fix = f"run `gaia-bench datasets prepare {name} --force`"
    if not root.exists():
        return [f"{root} does not exist: run `gaia-bench datasets prepare {name}`"]
    problems = []
    for split, expected in splits.items():
        try:
            n = len(load(root, split))
        except Exception as exc:  # noqa: BLE001 - reported, verification goes on
            problems.append(f"cannot read the {split} split: {exc}: {fix}")
            continue
        if n != expected:
            problems.append(f"{split} split has {n} images, expected {expected}: {fix}")
    return problems + verify_manifest(root, fix)
