"""The percentage-shot protocol: which training samples a job may use.

GV-B trains on a fixed fraction of each training set so that the long-tailed class distribution is
kept (unlike k-shot). GV-B never published how its lists were drawn, so gaia-bench defines its own
rule ("GV-B-like, not GV-B-identical"):

* every class keeps ``max(1, round_half_up(fraction * n_class))`` of its samples — proportional,
  so the tail stays a tail, and no class disappears;
* which samples: the ones with the smallest ``blake2b(seed, sample key)`` inside each class. The
  choice depends only on the seed and the sample keys, never on file order, and a smaller
  fraction's subset is contained in a larger one's for the same seed;
* ``K/class`` (k-shot) keeps ``min(K, n_class)`` per class by the same ranking;
* for multi-label or detection data (a sample has several classes) whole images are sampled:
  ``max(1, round_half_up(fraction * n_images))`` images, first the best-ranked image of every class
  (rarest class first) so each class stays present, then the rest by rank.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from gaia_bench.errors import UsageError

SHOTS_HELP = "a percentage '10%', a fraction '0.1' in (0, 1], a list '1%,10%,100%', or k-shot '5/class'"


@dataclass(frozen=True, order=True)
class ShotSpec:
    """A parsed --shots value: a fraction of each class, or ``k`` per class."""

    fraction: float | None = None
    per_class: int | None = None

    @property
    def label(self) -> str:
        """Canonical text, used in job ids and tables ('10%', '0.5%', '5/class')."""
        if self.per_class is not None:
            return f"{self.per_class}/class"
        pct = self.fraction * 100  # type: ignore[operator]
        return f"{pct:.10g}%"

    def __str__(self) -> str:
        return self.label


_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_FRAC = re.compile(r"^\s*(\d*\.\d+|\d+)\s*$")
_KSHOT = re.compile(r"^\s*(\d+)\s*/\s*class\s*$")


def parse_shot(text: str) -> ShotSpec:
    """Parse one shot value; raise UsageError naming the valid forms."""
    if m := _PCT.match(text):
        pct = float(m.group(1))
        if not 0 <= pct <= 100:
            raise UsageError(f"--shots '{text}' is out of range", "a percentage must be in [0%, 100%] (0%: zero-shot)")
        return ShotSpec(fraction=round(pct / 100, 12))
    if m := _KSHOT.match(text):
        k = int(m.group(1))
        if k < 1:
            raise UsageError(f"--shots '{text}' is out of range", "k-shot needs at least 1 sample per class, e.g. '5/class'")
        return ShotSpec(per_class=k)
    if m := _FRAC.match(text):
        frac = float(m.group(1))
        if not 0 < frac <= 1:
            raise UsageError(f"--shots '{text}' is out of range",
                             "a fraction must be in (0, 1]; write '10%' or '0.1' for a tenth, or '10/class' for k-shot")
        return ShotSpec(fraction=frac)
    raise UsageError(f"cannot read --shots '{text}'", f"use {SHOTS_HELP}")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=16).digest()


def class_quota(shot: ShotSpec, n: int) -> int:
    """How many of a class's ``n`` samples the subset keeps (none of none)."""
    if shot.per_class is not None:
        return min(shot.per_class, n)
    return min(n, max(1, _round_half_up(shot.fraction * n)))  # type: ignore[operator]


def sample_indices(labels: Sequence[int], keys: Sequence[str], shot: ShotSpec, seed: int) -> list[int]:
    """Indices of the single-label subset (sorted), per-class proportional as described above."""
    if len(labels) != len(keys):
        raise ValueError("labels and keys differ in length")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[int(label)].append(i)
    chosen: list[int] = []
    for members in by_class.values():
        members.sort(key=lambda i: (_rank(seed, keys[i]), keys[i]))
        chosen.extend(members[: class_quota(shot, len(members))])
    return sorted(chosen)


def sample_images(label_sets: Sequence[Iterable[int]], keys: Sequence[str], shot: ShotSpec, seed: int) -> list[int]:
    """Indices of the multi-label/detection subset (sorted): whole images, every class kept."""
    sets = [set(int(c) for c in s) for s in label_sets]
    order = sorted(range(len(keys)), key=lambda i: (_rank(seed, keys[i]), keys[i]))
    if shot.per_class is not None:
        chosen: set[int] = set()
        counts: dict[int, int] = defaultdict(int)
        for i in order:  # greedily take images while some class of theirs is under its k
            if any(counts[c] < shot.per_class for c in sets[i]):
                chosen.add(i)
                for c in sets[i]:
                    counts[c] += 1
        return sorted(chosen)
    target = min(len(keys), max(1, _round_half_up(shot.fraction * len(keys))))  # type: ignore[operator]
    frequency = Counter(c for s in sets for c in s)
    chosen = set()
    covered: set[int] = set()
    for c in sorted(frequency, key=lambda c: (frequency[c], c)):
        if c in covered:
            continue
        first = next(i for i in order if c in sets[i])
        chosen.add(first)
        covered |= sets[first]
    for i in order:
        if len(chosen) >= target:
            break
        chosen.add(i)
    return sorted(chosen)


def sample_subset(label_sets: Sequence[Sequence[int]], keys: Sequence[str], shot: ShotSpec, seed: int,
                  single_label: bool) -> list[int]:
    """The protocol's subset: per-class for single-label data, whole images otherwise; none at 0%."""
    if shot.fraction == 0:
        return []
    if single_label:
        return sample_indices([s[0] for s in label_sets], keys, shot, seed)
    return sample_images(label_sets, keys, shot, seed)


@dataclass(frozen=True)
class SubsetStats:
    """Per-class sample counts of a subset: the numbers GV-B tabulates for its 10% lists."""

    n_samples: int
    n_classes: int
    per_class_avg: float
    per_class_min: int
    per_class_max: int

    def as_dict(self) -> dict:
        return {**asdict(self), "per_class_avg": round(self.per_class_avg, 3)}


def subset_stats(label_sets: Sequence[Iterable[int]], num_classes: int | None = None) -> SubsetStats:
    """Counts per class (a sample with several classes counts once for each of them).

    Classes of the dataset absent from the subset count as 0 when ``num_classes`` is given."""
    counts = Counter(int(c) for s in label_sets for c in set(s))
    for c in range(num_classes or 0):
        counts.setdefault(c, 0)
    values = list(counts.values()) or [0]
    return SubsetStats(len(label_sets), len(counts), sum(values) / len(values), min(values), max(values))
