"""One stored record as one flat row: the columns `gaia-bench run`'s summary and the text reporters show."""

from __future__ import annotations

# The columns every results table shows (also `gaia-bench run`'s summary).
COLUMNS = ("model", "init", "adaptation", "dataset", "shots", "seed", "status", "metric", "value", "n_train",
           "wall_s", "job_id")


def summary_row(record: dict) -> dict:
    """One record as one flat row of COLUMNS."""
    cfg = record["config"]
    metric = record.get("primary_metric", "")
    if metric and not record.get("higher_is_better", True):
        metric += " (lower is better)"
    value = record.get("primary_value")
    return {
        "model": cfg.get("model"),
        "init": cfg.get("init"),
        "adaptation": cfg.get("adaptation"),
        "dataset": cfg.get("dataset"),
        "shots": cfg.get("shots"),
        "seed": cfg.get("seed"),
        "status": record.get("status"),
        "metric": metric,
        "value": round(value, 2) if isinstance(value, float) else value,
        "n_train": record.get("n_train"),
        "wall_s": record.get("timings", {}).get("total_s"),
        "job_id": record.get("job_id"),
    }
