"""Split manifests: a job's training subset as a list of sample keys, so a subset can be shared,
checked and run as it is (`gaia-bench run --split FILE`), not only redrawn from a seed. The file
(JSON, grouped by class) is the `gaia-bench splits` command's: it writes, reads and checks it.

``sha256`` is the hash of the sorted ids joined by newlines; every done record carries it (as
``split.sha256``), drawn or given, so two results trained on the same subset can be told apart
from others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from gaia_bench.api import Samples
from gaia_bench.errors import DataError


def ids_sha256(ids: Iterable[str]) -> str:
    """The hash a manifest and a record carry: sha256 of the sorted ids, one per line."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


@dataclass(frozen=True)
class SplitManifest:
    """A manifest as read from its file (:func:`gaia_bench.cli.splits.read_manifest`)."""

    path: str  # as given on the command line: what messages name
    dataset: str
    dataset_version: str
    split: str
    shots: str
    seed: int | None
    ids: Mapping[str, Sequence[str]] | Sequence[str]  # class (or label set) -> keys, or one list
    per_class: Mapping[str, int]
    n_samples: int
    sha256: str  # as written; :func:`gaia_bench.cli.splits.manifest_problems` checks it

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


def split_entry(subset: Samples, manifest: SplitManifest | None) -> dict:
    """What a done record says about the subset it trained on (``record["split"]``)."""
    return {"sha256": ids_sha256(s.key for s in subset.samples), "source": manifest.source if manifest else "drawn"}
