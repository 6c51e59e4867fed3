"""Finding published weight files in the standard local caches (looking only; downloads: weights_download)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Mapping

from gaia_bench.api import WeightsRef


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint directory ($TORCH_HOME/hub/checkpoints), without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def clip_cache_dir() -> Path:
    """Where open_clip keeps checkpoints it downloads by URL (``download_pretrained_from_url``)."""
    return Path(os.path.expanduser("~/.cache/clip"))


def hf_hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_cached_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` present in the local Hugging Face cache for ``repo_id``."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and os.path.exists(found):
            return Path(found)
    return None


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """Content hash of a weight file (memoized per path, size and mtime)."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def imagenet_if_cached(refs: Mapping[str, WeightsRef]) -> str:
    """A zoo backbone's default init: its ImageNet weights when they are on this machine, else random."""
    ref = refs.get("imagenet")
    return "imagenet" if ref is not None and ref.locate() is not None else "random"
