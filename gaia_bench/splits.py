"""Split manifests: a job's training subset as a file, so a subset can be shared, checked and run
as it is (`gaia-bench splits export / verify`, `gaia-bench run --split FILE`), not only redrawn
from a seed.

A manifest is JSON: dataset, version, split, shots label, seed, ``n_samples``, ``sha256`` and the
subset's sample keys under ``ids`` -- grouped by class name (by label set, names joined with "+",
for multi-label and detection data), or one list when the split's samples name no classes
(segmentation, depth) -- with ``per_class`` counts (an image counts once for each of its classes).
``sha256`` is the hash of the sorted ids joined by newlines; every done record carries it (as
``split.sha256``), drawn or given, so two results trained on the same subset can be told apart
from others.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from gaia_bench.api import Samples
from gaia_bench.errors import DataError, UsageError
from gaia_bench.shots import parse_shot

KIND = "gaia-bench-split"
_FIX = "write it with `gaia-bench splits export DATASET --shots 10% --seed 0 --out FILE`"


def ids_sha256(ids: Iterable[str]) -> str:
    """The hash a manifest and a record carry: sha256 of the sorted ids, one per line."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def group_name(labels: Sequence[int], classes: Sequence[str]) -> str:
    return "+".join(str(classes[c]) for c in sorted(set(labels))) or "(no class)"


def class_counts(label_sets: Iterable[Sequence[int]], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(c for s in label_sets for c in set(s))
    return {str(name): counts.get(i, 0) for i, name in enumerate(classes)}


@dataclass(frozen=True)
class SplitManifest:
    """A manifest as read from its file (:func:`read_manifest`)."""

    path: str  # as given on the command line: what messages name
    dataset: str
    dataset_version: str
    split: str
    shots: str
    seed: int | None
    ids: Mapping[str, Sequence[str]] | Sequence[str]  # class (or label set) -> keys, or one list
    per_class: Mapping[str, int]
    n_samples: int
    sha256: str  # as written; :func:`manifest_problems` checks it

    @property
    def source(self) -> str:
        """The file's name: what a record says its subset came from."""
        return Path(self.path).name

    def keys(self) -> list[str]:
        return [k for group in self.ids.values() for k in group] if isinstance(self.ids, Mapping) else list(self.ids)

    def positions(self, train: Samples) -> list[int]:
        """The manifest's samples as sorted positions in ``train`` (what the protocol's draw returns)."""
        where = {s.key: i for i, s in enumerate(train.samples)}
        if missing := [k for k in self.keys() if k not in where]:
            raise DataError(f"split manifest {self.path}: id {missing[0]!r} is not in {self.dataset}:{self.split}"
                            + (f" ({len(missing) - 1} more ids are missing)" if len(missing) > 1 else ""),
                            f"the manifest was made from other data; `gaia-bench splits verify {self.path}` lists them")
        return sorted(where[k] for k in self.keys())


def read_manifest(path: Path) -> SplitManifest:
    """Parse a manifest file; a file that is not one is a UsageError naming it."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read split manifest {path}: {exc.strerror or exc}", _FIX) from None
    except ValueError as exc:
        raise UsageError(f"split manifest {path} is not JSON ({exc})", _FIX) from None
    ids = doc.get("ids") if isinstance(doc, dict) else None
    groups = list(ids.values()) if isinstance(ids, dict) else [ids]
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not all(isinstance(g, list) for g in groups) \
            or not all(isinstance(k, str) for g in groups for k in g) \
            or not all(isinstance(doc.get(k), str) for k in ("dataset", "split", "shots", "sha256")) \
            or not isinstance(doc.get("n_samples"), int) or not isinstance(doc.get("per_class", {}), dict):
        raise UsageError(f"{path} is not a split manifest (it needs kind {KIND!r}, dataset, split, shots, "
                         "n_samples, sha256 and ids: lists of sample keys)", _FIX)
    try:
        parse_shot(doc["shots"])
    except UsageError:
        raise UsageError(f"split manifest {path}: shots {doc['shots']!r} is not a shots label",
                         "write it as '10%', '0.1' or '5/class'") from None
    return SplitManifest(path=str(path), dataset=doc["dataset"], dataset_version=str(doc.get("dataset_version")),
                         split=doc["split"], shots=doc["shots"], seed=doc.get("seed"), ids=ids,
                         per_class=doc.get("per_class") or {}, n_samples=doc["n_samples"], sha256=doc["sha256"])


def manifest_problems(m: SplitManifest) -> list[str]:
    """What is inconsistent inside the file itself: repeated ids, count and hash."""
    keys = m.keys()
    problems = [f"id {k!r} is listed {n} times" for k, n in Counter(keys).items() if n > 1]
    if m.n_samples != len(keys):
        problems.append(f"n_samples is {m.n_samples}, but {len(keys)} ids are listed")
    if m.sha256 != (actual := ids_sha256(keys)):
        problems.append(f"sha256 is {m.sha256}, but the listed ids hash to {actual}")
    return problems


def split_entry(subset: Samples, manifest: SplitManifest | None) -> dict:
    """What a done record says about the subset it trained on (``record["split"]``)."""
    return {"sha256": ids_sha256(s.key for s in subset.samples), "source": manifest.source if manifest else "drawn"}
