"""Long tail: accuracy on the head, medium and tail classes of every long-tailed classification
dataset, and the worst class, from the per-class values each record stores.

Buckets come from the FULL training split's class counts (``per_class.train_count``), never from
the percentage-shot subset, so a class is in the same bucket at 1%, 10% and 100%. Like LVIS's
rare / common / frequent (1-10, 11-100, more than 100 training images: decades of the count), the
buckets are thirds of the *log* count, but of each dataset's own range: with ``lo`` the smallest
and ``hi`` the largest class count, tail = count < lo^(2/3)·hi^(1/3), head = count ≥ lo^(1/3)·hi^(2/3),
medium between. A dataset is long-tailed when its largest class has at least
:data:`LONG_TAIL_RATIO` times the training images of its smallest, with at least 3 classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gaia_bench.plugins.reporters.lib.leaderboard import Cell, Column, MainTable, RowKey

LONG_TAIL_RATIO = 4.0
BUCKETS = ("head", "medium", "tail")
RULE = ("head / medium / tail: the upper, middle and lower third of the log training-class count between the "
        "dataset's smallest (lo) and largest (hi) class in the FULL training split: tail = count < lo^(2/3)·hi^(1/3), "
        "head = count ≥ lo^(1/3)·hi^(2/3) (LVIS's rare/common/frequent are decades of the count; this splits each "
        f"dataset's own range); long-tailed = largest / smallest class ≥ {LONG_TAIL_RATIO:g} with 3 classes or more; "
        "bucket accuracy = the mean of its classes' accuracies (classes with test items), worst class = the lowest "
        "class accuracy; each per seed, then mean ± std over seeds")


@dataclass(frozen=True)
class Buckets:
    """The classes of one dataset by their full training-split count."""

    dataset: str
    train_count: tuple[int, ...]
    tail_below: float
    head_from: float
    members: dict[str, tuple[int, ...]]

    @property
    def ratio(self) -> float:
        return max(self.train_count) / min(self.train_count)

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {len(self.members[name])}" for name in BUCKETS)
        return (f"{self.dataset}: classes per bucket {sizes} of {len(self.train_count)}; head ≥ {self.head_from:.1f}, "
                f"tail < {self.tail_below:.1f} training images (counts {min(self.train_count)}–{max(self.train_count)}, "
                f"ratio {self.ratio:.1f})")


def buckets_of(dataset: str, train_count: list[int] | tuple[int, ...]) -> Buckets | None:
    """The buckets of a long-tailed dataset; None when it is not long-tailed (see the module docstring)."""
    counts = tuple(int(c) for c in train_count)
    if len(counts) < 3 or min(counts) < 1 or max(counts) / min(counts) < LONG_TAIL_RATIO:
        return None
    lo, hi = math.log(min(counts)), math.log(max(counts))
    tail_below, head_from = math.exp(lo + (hi - lo) / 3), math.exp(lo + 2 * (hi - lo) / 3)
    members = {
        "head": tuple(i for i, c in enumerate(counts) if c >= head_from),
        "medium": tuple(i for i, c in enumerate(counts) if tail_below <= c < head_from),
        "tail": tuple(i for i, c in enumerate(counts) if c < tail_below),
    }
    return Buckets(dataset, counts, tail_below, head_from, members)


@dataclass
class LongTailRow:
    key: RowKey
    column: Column
    buckets: dict[str, Cell] = field(default_factory=dict)  # bucket -> its accuracy per seed
    worst: Cell = field(default_factory=Cell)  # the worst class's accuracy per seed


@dataclass
class LongTail:
    datasets: list[Buckets]
    rows: list[LongTailRow]
    without_values: list[str]  # long-tail candidates (classification datasets) with no per-class values stored


def _mean(values: list[float | None], classes: tuple[int, ...]) -> float | None:
    present = [values[c] for c in classes if c < len(values) and values[c] is not None]
    return sum(present) / len(present) if present else None


def long_tail(table: MainTable) -> LongTail:
    """Buckets and per-row bucket accuracies for every long-tailed classification column of ``table``."""
    datasets: list[Buckets] = []
    rows: list[LongTailRow] = []
    without: list[str] = []
    for column in table.columns:
        if column.task != "classification":
            continue
        stored = [r["per_class"] for row in table.rows if column in row.cells
                  for r in row.cells[column].records if r.get("per_class")]
        if not stored:
            without.append(column.dataset)
            continue
        buckets = buckets_of(column.dataset, stored[0]["train_count"])
        if buckets is None:
            continue
        datasets.append(buckets)
        for row in table.rows:
            if column not in row.cells:
                continue
            out = LongTailRow(row.key, column, {name: Cell() for name in BUCKETS})
            for record in row.cells[column].records:
                per_class = record.get("per_class") or {}
                if tuple(per_class.get("train_count") or ()) != buckets.train_count:
                    continue  # another version of the dataset: other classes
                values = per_class["values"]
                for name in BUCKETS:
                    if (value := _mean(values, buckets.members[name])) is not None:
                        out.buckets[name].values.append(value)
                present = [v for v in values if v is not None]
                if present:
                    out.worst.values.append(min(present))
            if out.worst.n:
                rows.append(out)
    return LongTail(datasets, rows, without)
