"""Decoding overlapped with the forward (a thread, or worker processes) and normalized per batch
gives the features of the plain per-image pipeline, bit for bit; the dense heads' decoded-once
images are the ones decoded per batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gaia_bench.api import Sample
from gaia_bench.errors import DataError
from gaia_bench.features import extract_features
from gaia_bench.imagedata import eval_pixels, eval_transform, normalize, open_image, prefetched

MEAN, STD, SIZE = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 24


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Sample]:
    """Eleven noise PNGs of assorted sizes (resizing up and down, non-square crops)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(11):
        height, width = (int(v) for v in rng.integers(12, 48, size=2))
        path = root / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        out.append(Sample(key=f"{i}.png", path=path, target=i % 3))
    return out


class TinyNet(nn.Module):
    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.body(x)


def extract(samples, **kwargs) -> np.ndarray:
    options = dict(image_size=SIZE, mean=MEAN, std=STD, device="cpu", batch_size=4, workers=0)
    return extract_features(TinyNet(), samples, **{**options, **kwargs})


def test_batch_normalize_is_the_per_image_pipeline(samples):
    for sample in samples:
        image = open_image(sample)
        assert torch.equal(normalize(eval_pixels(SIZE)(image)[None], MEAN, STD)[0], eval_transform(SIZE, MEAN, STD)(image))


def test_overlapped_extraction_gives_the_same_features(samples):
    net = TinyNet().eval()
    transform = eval_transform(SIZE, MEAN, STD)
    with torch.inference_mode():
        reference = np.concatenate([net(torch.stack([transform(open_image(s)) for s in samples[i:i + 4]])).numpy()
                                    for i in range(0, len(samples), 4)])
    overlapped, in_line = extract(samples), extract(samples, overlap=False)
    assert np.array_equal(overlapped, in_line) and np.array_equal(overlapped, reference)
    assert np.array_equal(extract(samples, workers=1), reference)


def test_an_unreadable_image_still_names_its_file(samples, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        extract([*samples[:5], Sample(key="broken.png", path=broken, target=0)])


def test_prefetched_keeps_order_and_raises_where_the_source_does():
    assert list(prefetched(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise ValueError("source failed")

    with pytest.raises(ValueError, match="source failed"):
        list(prefetched(failing()))


def test_detection_images_decoded_once_equal_those_decoded_per_batch(samples):
    from gaia_bench.plugins.adaptations.lib.detection_head import PyramidSource

    def source():
        return PyramidSource(None, samples, (16, 32), MEAN, STD, "cpu", 4)

    kept = source()
    kept.keep_pixels()
    positions, flips = [3, 0, 7, 7], [False, True, False, True]
    assert torch.equal(kept.images(positions, flips), source().images(positions, flips))
    assert torch.equal(kept.images([7], [True])[0], kept.images([7], [False])[0].flip(-1))
