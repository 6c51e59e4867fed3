"""Text formats for stored results: ``markdown``, ``csv`` and ``json`` (`gaia-bench results --format`)."""

from __future__ import annotations

import csv
import io
import json

from gaia_bench import hookimpl
from gaia_bench.api import ReporterSpec
from gaia_bench.cli.summary import COLUMNS, summary_row
from gaia_bench.cli.exports import export_records

PLUGIN_ORDER = 600


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
    register(ReporterSpec("markdown", "GitHub-flavoured markdown table", render=render_markdown))
    register(ReporterSpec("csv", "one CSV row per result", render=render_csv))
    register(ReporterSpec("json", "full records with config and provenance", render=render_json))
