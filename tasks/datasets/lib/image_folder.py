"""The image-folder layout (``<split>/<class name>/<file>``), read with torchvision's own
``ImageFolder`` scanning rules (class index = sorted folder order)."""

from __future__ import annotations

from pathlib import Path

from gaia_bench.api import Sample, Samples
from gaia_bench.errors import DataError


def read_image_folder(root: Path, split: str) -> Samples:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    directory = root / split
    if not directory.is_dir():
        raise DataError(f"missing split directory {directory}", "re-create the dataset with `gaia-bench datasets prepare`")
    classes, class_to_idx = find_classes(str(directory))
    items = make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS)
    samples = [Sample(key=Path(p).relative_to(root).as_posix(), path=Path(p), target=t) for p, t in items]
    return Samples(samples, classes)
