"""The prediction store: every done job's test-set predictions, kept so that a metric can be
recomputed, added or compared without running the job again (`gaia-bench results rescore`,
`gaia-bench compare`), and the bootstrap interval of a job's metrics over its test items.

Files live beside the results store, ``<store stem>.predictions/<job_id>.npz``: numpy arrays only
(the task's :class:`~gaia_bench.api.EncodePredictions`, the test keys and class names), compressed,
written atomically; the record holds the file's sha256, checked on every read. Why npz and not
pickle: a store is shared between people, and loading it must never run code.

Intervals: percentile bootstrap over test items (images for dense tasks). The resamples depend only
on the number of test items and the seed, so every job on one test split sees the same resamples
and two jobs' intervals are paired by construction.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from gaia_bench.api import DatasetSpec, Samples, TaskSpec
from gaia_bench.errors import DataError
from gaia_bench.paths import atomic_write

RESAMPLES = 1000  # bootstrap resamples of an interval, unless a command says otherwise
LEVEL = 0.95
METHOD = "percentile bootstrap over test items"


def predictions_dir(store_path: str | Path) -> Path:
    """Where the predictions of the jobs of the store at ``store_path`` are kept."""
    path = Path(os.path.abspath(store_path))
    return path.with_name(path.stem + ".predictions")


def save_predictions(directory: str | Path, job_id: str, task: TaskSpec, predictions: Sequence[Any],
                     test: Samples) -> dict[str, Any] | None:
    """Write one job's predictions; the reference a record keeps (None: the task stores none)."""
    if task.encode is None:
        return None
    arrays = dict(task.encode(predictions, test))
    arrays["keys"] = np.asarray([s.key for s in test.samples], dtype=str)
    arrays["classes"] = np.asarray(list(test.classes), dtype=str)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    body = buffer.getvalue()
    name = f"{job_id}.npz"
    with atomic_write(Path(directory) / name, "wb") as f:
        f.write(body)
    return {"file": name, "sha256": hashlib.sha256(body).hexdigest(), "items": len(test)}


def load_predictions(store_path: str | Path, record: Mapping[str, Any], task: TaskSpec) -> tuple[list, Samples]:
    """A record's predictions, in test order, and the test split they were scored on (keys as
    paths, classes, targets), checked against the record's sha256."""
    ref = record.get("predictions")
    if not ref or task.decode is None:
        raise DataError(f"job {record.get('job_id')} has no stored predictions",
                        "rerun it with `gaia-bench run ... --force` (predictions are kept since this version)")
    path = predictions_dir(store_path) / ref["file"]
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the predictions of job {record['job_id']}: {path} ({exc.strerror or exc})",
                        "restore the store's .predictions folder beside it, or rerun the job with --force") from None
    if hashlib.sha256(body).hexdigest() != ref["sha256"]:
        raise DataError(f"{path} does not match the sha256 its record holds (changed or damaged)",
                        "restore the file, or rerun the job with --force")
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return task.decode(arrays, arrays.pop("keys").tolist(), arrays.pop("classes").tolist())


def resample_counts(n_items: int, resamples: int, seed: int, chunk_cells: int = 20_000_000) -> Iterator[np.ndarray]:
    """``resamples`` bootstrap draws of ``n_items`` items as multinomial counts (B × n), yielded in
    chunks small enough to keep in memory; the same numbers for the same ``(n_items, resamples, seed)``.
    One chunk (the usual case) is drawn once per process: every job of a test split shares it."""
    rows = max(1, chunk_cells // max(n_items, 1))
    if rows >= resamples:
        yield _draws(n_items, resamples, seed)
        return
    rng = np.random.default_rng([seed, n_items])
    for start in range(0, resamples, rows):
        yield rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=min(rows, resamples - start))


@functools.lru_cache(maxsize=8)
def _draws(n_items: int, resamples: int, seed: int) -> np.ndarray:
    counts = np.random.default_rng([seed, n_items]).multinomial(n_items, np.full(n_items, 1.0 / n_items), size=resamples)
    counts.flags.writeable = False  # shared: nobody may change it
    return counts


def resampled_metrics(task: TaskSpec, predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
                      counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric on each resample (rows of ``counts``): the task's vectorised
    :class:`~gaia_bench.api.Resample` when it has one, else ``evaluate`` on each resample."""
    if task.resample is not None:
        return {k: np.asarray(v, dtype=float) for k, v in task.resample(predictions, test, dataset, counts).items()}
    per_draw: dict[str, list[float]] = {}
    for row in counts:
        drawn = np.repeat(np.arange(len(row)), row)
        metrics = task.evaluate([predictions[i] for i in drawn], test.subset(drawn.tolist()), dataset)
        for name, value in metrics.items():
            per_draw.setdefault(name, []).append(float(value))
    return {k: np.asarray(v) for k, v in per_draw.items()}


def bootstrap_interval(task: TaskSpec, predictions: Sequence[Any], test: Samples, dataset: DatasetSpec,
                       resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """The record's ``interval``: per metric, the ``level`` percentile interval of its bootstrap
    distribution over test items, with the method, resamples and seed that reproduce it."""
    draws: dict[str, list[np.ndarray]] = {}
    for counts in resample_counts(len(test), resamples, seed):
        for name, values in resampled_metrics(task, predictions, test, dataset, counts).items():
            draws.setdefault(name, []).append(values)
    tail = 100 * (1 - level) / 2
    bounds = {name: [round(float(v), 6) for v in np.nanpercentile(np.concatenate(chunks), [tail, 100 - tail])]
              for name, chunks in draws.items()}
    return {"method": METHOD, "level": level, "resamples": resamples, "seed": seed, "unit": "test item",
            "metrics": bounds}
