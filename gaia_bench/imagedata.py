"""Reading images for a split: a torch Dataset that reports unreadable files instead of crashing."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from gaia_bench.api import Sample


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> transforms.Compose:
    """GV-B's evaluation pipeline: short side to ``size`` (bilinear), centre crop, normalize."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def transform_id(size: int, mean: Sequence[float], std: Sequence[float]) -> str:
    """A stable name of :func:`eval_transform`'s output, for cache keys."""
    fmt = lambda v: ",".join(f"{x:.6g}" for x in v)  # noqa: E731
    return f"resize-short{size}-bilinear/center-crop{size}/mean({fmt(mean)})/std({fmt(std)})"


def open_image(sample: Sample) -> Image.Image:
    """The sample's image as RGB: decoded from its container record, or read from its file.
    Raises whatever the decoder raises for a corrupt or truncated image."""
    if sample.decode is not None:
        return sample.decode().convert("RGB")
    with Image.open(sample.path) as img:
        return img.convert("RGB")


def where(sample: Sample) -> str:
    """How a message names a sample: its file, or its record inside a container file."""
    return f"{sample.path} (record {sample.key})" if sample.decode is not None else str(sample.path)


def read_error(sample: Sample) -> str:
    """'' when the sample's image decodes completely, else the error text. A JPEG is decoded at
    1/8 scale (libjpeg still reads every byte, so truncation is found, about 5x faster)."""
    try:
        if sample.decode is not None:
            sample.decode().load()
        else:
            with Image.open(sample.path) as img:
                img.draft(img.mode, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
                img.load()
        return ""
    except Exception as exc:  # noqa: BLE001 - reported by the caller with the path
        return f"{type(exc).__name__}: {exc}"


class ReadCheck(Dataset):
    """Yields ``(index, error)`` for every sample: a DataLoader runs :func:`read_error` in workers."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, str]:
        return index, read_error(self.samples[index])


class ImageSamples(Dataset):
    """Yields ``(image, index, error)``: an unreadable image gives a zero tensor and its error text,
    so the caller can name the file (this works the same inside DataLoader worker processes)."""

    def __init__(self, samples: Sequence[Sample], transform: transforms.Compose, size: int) -> None:
        self.samples = samples
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        sample = self.samples[index]
        try:
            return self.transform(open_image(sample)), index, ""
        except Exception as exc:  # noqa: BLE001 - reported by the caller with the path
            return torch.zeros(3, self.size, self.size), index, f"{type(exc).__name__}: {exc}"
