"""The protocol of one job, applied in one place: the percentage-shot subset of the training split,
its held-out part and the test split, drawn by the runner before the adaptation runs (why: see
:class:`gaia_bench.api.JobData`). An adaptation trains on ``data.fit_samples`` and chooses what it
must choose on ``data.val_samples``.

Held-out part: a job whose hyper-parameters include ``val_share`` holds out that share of the subset
(at least one item; none when the subset has a single item), chosen by the job seed.

* With strata (the task's :attr:`~gaia_bench.api.TaskSpec.holdout_strata`: class labels for
  classification, each image's smallest class for detection): within each stratum of 2 or more
  items, ``max(1, round(val_share * n))`` go to the held-out part, always leaving one to fit.
* Without (segmentation, depth): ``max(1, round(val_share * n))`` items of the whole subset.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from gaia_bench.api import JobData, Samples, TaskSpec
from gaia_bench.shots import ShotSpec, sample_subset, subset_stats
from gaia_bench.splits import SplitManifest


def stratified_holdout(strata: Sequence[int], val_share: float, seed: int) -> tuple[list[int], list[int]]:
    """(fit, val) positions: per stratum with 2+ items, ``max(1, round(val_share * n))`` held out,
    always leaving at least one to fit."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    fit: list[int] = []
    val: list[int] = []
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        n_val = min(len(members) - 1, max(1, round(val_share * len(members)))) if len(members) >= 2 else 0
        val.extend(int(i) for i in members[:n_val])
        fit.extend(int(i) for i in members[n_val:])
    return sorted(fit), sorted(val)


def random_holdout(n: int, val_share: float, seed: int) -> tuple[list[int], list[int]]:
    """(fit, val) positions: ``max(1, round(val_share * n))`` items held out (none when n < 2)."""
    order = np.random.default_rng([seed, n]).permutation(n)
    n_val = min(n - 1, max(1, round(val_share * n))) if n >= 2 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def holdout(strata: Sequence[int] | None, n: int, val_share: float | None, seed: int) -> tuple[list[int], list[int]]:
    """The held-out rule of the module docstring: ``(fit, val)`` positions among ``n`` items;
    ``val_share`` None means no held-out part."""
    if val_share is None:
        return list(range(n)), []
    if strata is not None:
        return stratified_holdout(strata, float(val_share), seed)
    return random_holdout(n, float(val_share), seed)


def subset_positions(train: Samples, shot: ShotSpec, seed: int, split: SplitManifest | None = None) -> list[int]:
    """The subset's sorted positions in ``train``: a manifest's ids when one is given (--split),
    else the percentage-shot draw (:mod:`gaia_bench.shots`). `gaia-bench splits export` writes this."""
    if split is not None:
        return split.positions(train)
    return sample_subset(train.label_sets(), [s.key for s in train.samples], shot, seed, train.single_label)


def draw(task: TaskSpec, shot: ShotSpec, seed: int, hyperparams: dict, load: Callable[[str], Samples],
         train_split: str, test_split: str, split: SplitManifest | None = None) -> JobData:
    """The job's :class:`JobData`: subset (the manifest's, given ``split``), held-out part and test
    split, each drawn once."""
    train = load(train_split)
    sets = train.label_sets()  # the subset, then its held-out part
    indices = subset_positions(train, shot, seed, split)
    strata = task.holdout_strata(train.subset(indices)) if task.holdout_strata is not None else None
    fit, val = holdout(strata, len(indices), hyperparams.get("val_share"), seed)
    stats = subset_stats([sets[i] for i in indices], len(train.classes) or None).as_dict()
    return JobData(train=train, indices=tuple(indices), fit=tuple(fit), val=tuple(val),
                   test=load(test_split), stats=stats)
