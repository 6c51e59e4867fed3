"""Each record's primary metric on the shared bootstrap resamples of its test items, from its
stored predictions: what `gaia-bench compare` pairs and what the leaderboard's intervals,
not-distinguishable marks and Kendall τ are drawn from.

The resamples depend only on the number of test items (and the seed), so every record scored on the
same test split gets the same draws: records are paired by construction. ``items``, a digest of the
test keys in order, says which records can be paired: equal digests, same items in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaia_bench.errors import DataError, GaiaBenchError
from gaia_bench.predictions import RESAMPLES, predictions_dir, resample_counts


# Why a record's predictions cannot be used: missing or damaged file, unknown task or dataset here,
# a file that does not hold what the record says.
_UNUSABLE = (GaiaBenchError, OSError, ValueError, KeyError)


@dataclass(frozen=True)
class RecordDraws:
    """One record's primary metric on each shared item resample."""

    values: np.ndarray  # (resamples,)
    items: str  # sha256 of the test keys in order: draws pair only with draws of equal ``items``
    correct: np.ndarray | None = None  # classification: whether each test item's top-1 is right (McNemar)


def _top1_correct(predictions: Sequence[Any], targets: Sequence[int]) -> np.ndarray:
    """Whether each item's class (as the classification task reads a prediction) is its target."""
    from gaia_bench.tasks.types.classification import predicted_classes

    return predicted_classes(predictions) == np.asarray(targets)


def record_draws(records: Sequence[Mapping[str, Any]], store_of: Callable[[Mapping[str, Any]], str],
                 resamples: int = RESAMPLES, seed: int = 0) -> list[RecordDraws]:
    """The draws of every record (which all have stored predictions), in order.

    ``store_of(record)``: the results store whose predictions folder holds the record's file. Records
    with the same number of test items are resampled together, one chunk of counts at a time, so a
    large test split's counts are never all in memory. Raises :class:`DataError` when a file is
    missing, damaged or unreadable.
    """
    from gaia_bench.manager import get_registries
    from gaia_bench.predictions import load_predictions, resampled_metrics

    registries = get_registries()
    loaded = []
    for record in records:
        cfg = record.get("config") or {}
        task = registries.tasks.get(str(cfg.get("task")))
        dataset = registries.datasets.get(str(cfg.get("dataset")))
        predictions, test = load_predictions(store_of(record), record, task)
        if len(predictions) != len(test):
            raise DataError(f"job {record.get('job_id')}: {len(predictions)} stored predictions for {len(test)} test items",
                            "rerun the job with --force")
        keys = "\n".join(str(s.key) for s in test.samples)
        correct = _top1_correct(predictions, test.labels()) if task.name == "classification" else None
        loaded.append((task, dataset, str(record["primary_metric"]), predictions, test,
                       hashlib.sha256(keys.encode()).hexdigest(), correct))
    values: list[list[np.ndarray]] = [[] for _ in loaded]
    by_size: dict[int, list[int]] = {}
    for i, entry in enumerate(loaded):
        by_size.setdefault(len(entry[4]), []).append(i)
    for n_items, members in by_size.items():
        for counts in resample_counts(n_items, resamples, seed):
            for i in members:
                task, dataset, metric, predictions, test, _, _ = loaded[i]
                values[i].append(np.asarray(resampled_metrics(task, predictions, test, dataset, counts)[metric], dtype=float))
    return [RecordDraws(np.concatenate(v), entry[5], entry[6]) for v, entry in zip(values, loaded)]


class StoredDraws:
    """Draws of records from several sources, computed once per record and kept; a record without
    usable predictions has none (its problem is kept in ``problems``, one line per record)."""

    def __init__(self, origins: Mapping[str, str], resamples: int = RESAMPLES, seed: int = 0) -> None:
        self.origins = dict(origins)  # job id -> the store (or exported file) the record came from
        self.resamples = resamples
        self.seed = seed
        self.problems: dict[str, str] = {}
        self._cache: dict[str, RecordDraws | None] = {}

    def _store_of(self, record: Mapping[str, Any]) -> str:
        return self.origins[str(record["job_id"])]

    def prepare(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Compute the draws of many records at once (one pass over each test size's counts)."""
        todo = [r for r in records if r.get("predictions") and str(r["job_id"]) in self.origins
                and str(r["job_id"]) not in self._cache]
        try:
            for record, draws in zip(todo, record_draws(todo, self._store_of, self.resamples, self.seed)):
                self._cache[str(record["job_id"])] = draws
        except _UNUSABLE:  # find the records at fault one by one; the others keep their draws
            for record in todo:
                self(record)

    def files(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
        """The prediction files of those ``records`` whose draws were computed (read and verified)."""
        return {str(r["job_id"]): predictions_dir(self._store_of(r)) / r["predictions"]["file"]
                for r in records if self._cache.get(str(r["job_id"])) is not None}

    def __call__(self, record: Mapping[str, Any]) -> RecordDraws | None:
        job_id = str(record["job_id"])
        if job_id not in self._cache:
            draws = None
            if record.get("predictions") and job_id in self.origins:
                try:
                    (draws,) = record_draws([record], self._store_of, self.resamples, self.seed)
                except _UNUSABLE as exc:
                    self.problems[job_id] = str(exc)
            self._cache[job_id] = draws
        return self._cache[job_id]
