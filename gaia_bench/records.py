"""What a result record holds, and the one rule for which of two records of a job id wins.

Records travel as JSON (the store's ``record`` column, result files, exports, a leaderboard's
results.json), so they stay dicts; :class:`ResultRecord` names their fields for readers and type
checkers.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class ResultRecord(TypedDict, total=False):
    """One job's result as :func:`gaia_bench.runner.run_job` writes it; ``job_id``, ``status`` and
    ``config`` are always there, the rest where they apply (``metrics`` only when done)."""

    schema_version: int
    job_id: str  # sha256 of the resolved config (gaia_bench.jobs.JobConfig.job_id)
    status: Literal["done", "failed"]
    config: dict[str, Any]  # model, init, adaptation, dataset, task, shots, seed, hyperparams, ...
    shots: dict[str, Any]  # requested, fraction, per_class
    started_at: str
    finished_at: str  # ISO 8601, UTC: which of two attempts is the later one
    metrics: dict[str, float]
    primary_metric: str
    primary_value: float
    higher_is_better: bool
    n_train: int
    n_test: int
    trainable_params: int
    details: dict[str, Any]  # what the adaptation reports beyond its metrics
    timings: dict[str, float]  # total_s and one entry per stage
    memory: dict[str, float]  # peak MB
    environment: dict[str, Any]  # gaia_bench.provenance.environment
    weights: dict[str, Any]  # the published weights file: tag, file, bytes, sha256
    weights_report: dict[str, Any]  # keys that loading published weights left out
    data_source: dict[str, Any]  # where the dataset's files came from (DatasetSpec.provenance); not in the job id
    skipped_samples: int  # unreadable images left out (--on-bad-sample skip)
    skipped: list[Any]
    error: str  # failed only
    traceback: str
    reference: dict[str, Any]  # published reference values only: where the value was published


Verdict = Literal["new", "old", "same", "conflict"]


def prefer(old: dict | None, new: dict) -> Verdict:
    """Which of two records of one job id wins: a finished result beats a failed attempt, either way
    round (``"new"`` or ``"old"``); otherwise they are the ``"same"`` (status and the metrics both
    have equal; the one with more, e.g. a rerun that added calibration, wins) or a ``"conflict"``,
    which the caller settles: merging result files keeps the later attempt, an import and the
    leaderboard keep the record they had and report both."""
    if old is None:
        return "new"
    old_done, new_done = old.get("status") == "done", new.get("status") == "done"
    if old_done != new_done:
        return "new" if new_done else "old"
    a, b = old.get("metrics") or {}, new.get("metrics") or {}
    shared = a.keys() & b.keys()
    if old.get("status") == new.get("status") and (a == b or shared and all(a[k] == b[k] for k in shared)):
        return "new" if b.keys() > a.keys() else "same"  # a rerun that only adds metrics agrees, and wins
    return "conflict"
