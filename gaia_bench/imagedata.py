"""Reading images for a split: a torch Dataset that reports unreadable files instead of crashing."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from gaia_bench.api import Sample


def eval_pixels(size: int) -> transforms.Compose:
    """GV-B's evaluation pipeline up to its float conversion: short side to ``size`` (bilinear), centre
    crop, uint8 ``[3, size, size]`` (a quarter of float32's bytes to collate, pin and move)."""
    bilinear = transforms.InterpolationMode.BILINEAR
    return transforms.Compose([transforms.Resize(size, bilinear), transforms.CenterCrop(size), transforms.PILToTensor()])


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> transforms.Compose:
    """GV-B's evaluation pipeline per image: :func:`eval_pixels` scaled to [0, 1] and normalized."""
    return transforms.Compose([*eval_pixels(size).transforms[:2], transforms.ToTensor(), transforms.Normalize(mean, std)])


def normalize(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> what ToTensor + Normalize make of each image (the same float32 ops: the
    same bits) in one call per batch: on a loaded machine each small tensor op can wait for a core."""
    mean, std = (torch.tensor(v, dtype=torch.float32, device=pixels.device).view(-1, 1, 1) for v in (mean, std))
    return pixels.float().div_(255).sub_(mean).div_(std)


def prefetched(items: Iterable, ahead: int = 2) -> Iterator:
    """``items`` in order, made by one background thread up to ``ahead`` early: decoding (PIL
    releases the GIL) overlaps the caller's forward pass."""
    source, end = iter(items), object()
    with ThreadPoolExecutor(1) as pool:
        queue = deque(pool.submit(next, source, end) for _ in range(ahead))
        while (item := queue.popleft().result()) is not end:
            queue.append(pool.submit(next, source, end))
            yield item


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


def read_errors(batch: Sequence[Sample]) -> list[str]:
    """:func:`read_error` of each sample: a DataLoader's ``collate_fn``, so workers check in parallel."""
    return [read_error(sample) for sample in batch]


class ImageSamples(Dataset):
    """Yields ``(image, index, error)``: an unreadable image gives a zero tensor and its error text,
    so the caller can name the file (this works the same inside DataLoader worker processes).
    ``dtype``: the transform's output type (uint8 for :func:`eval_pixels`)."""

    def __init__(self, samples: Sequence[Sample], transform: transforms.Compose, size: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.samples, self.transform, self.size, self.dtype = samples, transform, size, dtype

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        sample = self.samples[index]
        try:
            return self.transform(open_image(sample)), index, ""
        except Exception as exc:  # noqa: BLE001 - reported by the caller with the path
            return torch.zeros(3, self.size, self.size, dtype=self.dtype), index, f"{type(exc).__name__}: {exc}"
