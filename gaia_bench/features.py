"""Frozen-backbone features, extracted once per (backbone, weights, dataset, split, transform)
and kept on disk, so a probe over many shots, seeds and hyper-parameters runs the backbone once."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from gaia_bench.api import Sample
from gaia_bench.backbone import Backbone
from gaia_bench.devices import autocast
from gaia_bench.errors import DataError, GaiaBenchError
from gaia_bench.imagedata import ImageSamples, eval_pixels, normalize, prefetched, where
from gaia_bench.paths import atomic_write

FEATURE_FORMAT = 1  # bump when the extraction changes what it stores


def cache_key(parts: dict, precision: str | None = None) -> str:
    """The cache file's key; a ``precision`` other than fp32 joins it (fp32 keys stay as they were)."""
    extra = {"precision": precision} if precision not in (None, "fp32") else {}
    return hashlib.sha256(json.dumps({**parts, **extra, "format": FEATURE_FORMAT}, sort_keys=True).encode()).hexdigest()[:32]


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """Hash of the split's sample keys and targets: a changed dataset never reuses stale features."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.key}\x00{s.target}\n".encode())
    return h.hexdigest()[:16]


def files_fingerprint(samples: Sequence[Sample]) -> str:
    """Hash of each file's path, size and modification time (one ``stat`` each, nothing read): an
    image changed or replaced after its features were cached gets another key."""
    def stat(path) -> tuple[int, int]:
        with contextlib.suppress(OSError):
            return (st := os.stat(path)).st_size, st.st_mtime_ns
        return -1, -1

    return hashlib.sha256(repr(sorted((p, stat(p)) for p in {str(s.path) for s in samples})).encode()).hexdigest()[:16]


class FeatureCache:
    """``<dir>/<key>.npz`` holding ``features`` (float32) and ``keys``; written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str, expected_keys: Sequence[str]) -> np.ndarray | None:
        try:  # a missing file is an OSError too
            with np.load(self.path(key), allow_pickle=False) as data:
                if list(data["keys"]) != list(expected_keys):
                    return None
                return data["features"]
        except (OSError, ValueError, KeyError):
            return None  # a damaged cache file is recomputed, never trusted

    def save(self, key: str, features: np.ndarray, keys: Sequence[str], meta: dict) -> None:
        try:
            with atomic_write(self.path(key)) as f:
                np.savez(f, features=features, keys=np.asarray(keys), meta=np.asarray(json.dumps(meta)))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise GaiaBenchError(f"disk full while caching features in {self.directory}",
                                     "free space, set GAIA_BENCH_FEATURES to another disk, or run with --no-cache") from None
            raise


@torch.inference_mode()
def extract_features(backbone: Backbone, samples: Sequence[Sample], *, image_size: int, mean: Sequence[float],
                     std: Sequence[float], device: str, batch_size: int, workers: int,
                     on_batch: Callable[[int], None] | None = None, overlap: bool = True,
                     precision: str | None = None) -> np.ndarray:
    """Pooled features of every sample, in order (an unreadable image stops with its path). Decoded in ``workers``
    processes or, with ``overlap``, a thread a batch ahead of the forward; normalized per batch on the device;
    the forward under ``precision``'s autocast (a channels-last backbone's first layer converts the input)."""
    loader = DataLoader(ImageSamples(samples, eval_pixels(image_size), image_size, torch.uint8), batch_size=batch_size,
                        shuffle=False, num_workers=workers, pin_memory=torch.device(device).type == "cuda")
    backbone.eval().to(device)
    out = np.zeros((len(samples), backbone.num_features), dtype=np.float32)
    for images, indices, errors in prefetched(loader) if overlap and not workers else loader:
        if bad := [(int(i), e) for i, e in zip(indices, errors) if e]:
            i, err = bad[0]
            raise DataError(f"cannot read image {where(samples[i])}: {err}",
                            "replace or delete the file, re-create the dataset with `gaia-bench datasets prepare`, "
                            "or leave such images out with `gaia-bench run --on-bad-sample skip`")
        with autocast(device, precision):
            feats = backbone(normalize(images.to(device, non_blocking=True), mean, std))
        feats = feats.float().cpu().numpy()
        out[indices.numpy()] = feats
        if on_batch:
            on_batch(len(indices))
    return out
