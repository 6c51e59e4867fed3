"""Text formats for stored results: ``markdown``, ``csv`` and ``json`` (`gaia-bench results --format`)."""

from __future__ import annotations

import csv
import io
import json

from gaia_bench import hookimpl
from gaia_bench.api import ReporterSpec
from gaia_bench.store import export_records

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


def render_markdown(records: list[dict]) -> str:
    from tabulate import tabulate

    rows = [[summary_row(r)[c] for c in COLUMNS] for r in records]
    return tabulate(rows, headers=list(COLUMNS), tablefmt="github") + "\n"


def render_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(summary_row(record))
    return out.getvalue()


def render_json(records: list[dict]) -> str:
    return json.dumps(export_records(records), indent=2, sort_keys=True) + "\n"


@hookimpl
def register_reporters(register):
    register(ReporterSpec("markdown", "GitHub-flavoured markdown table", "md", render=render_markdown))
    register(ReporterSpec("csv", "one CSV row per result", "csv", render=render_csv))
    register(ReporterSpec("json", "full records with config and provenance", "json", render=render_json))
