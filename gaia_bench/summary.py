"""Flat rows of stored records: the columns every results table shows."""

from __future__ import annotations

COLUMNS = ("model", "init", "adaptation", "dataset", "shots", "seed", "status", "metric", "value", "n_train",
           "wall_s", "job_id")


def summary_row(record: dict) -> dict:
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
