"""`gaia-bench compare`: does A beat B? Paired differences with intervals, exact and paired tests,
Holm over the datasets, one verdict per dataset (the logic: :mod:`~gaia_bench.plugins.reporters.lib.comparison`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from gaia_bench import hookimpl
from gaia_bench.cli.common import StoreOption, default_store, handle_errors, open_store, split_values
from gaia_bench.console import console, notice
from gaia_bench.errors import DataError, UsageError

PLUGIN_ORDER = 640

FORMATS = ("table", "markdown", "csv", "json")
SIDE_HELP = "FIELD=VALUE filters of side {} (repeat or comma-separate; fields: model, init, adaptation, dataset, task, shots, seed, precision, hp.NAME)"
Multi = lambda flag, what: Annotated[list[str] | None, typer.Option(flag, help=f"only this {what}, both sides (repeat or comma-separate; * wildcards)")]  # noqa: E731


def _common_filters(**options: list[str] | None) -> dict[str, list[str]]:
    from gaia_bench.plugins.reporters.lib.comparison import normal_value

    filters: dict[str, list[str]] = {}
    for name, values in options.items():
        if parts := split_values(values):
            filters[name] = [normal_value(name, p) for p in parts]
    return filters


def _item_level(store_path: str, group, resamples: int, seed: int):
    """Each seed's primary metric on the same item resamples for A and B, and McNemar per seed
    (classification), from the stored predictions; None when a record has none."""
    import numpy as np

    from gaia_bench.plugins.reporters.lib.comparison import ItemLevel, field_value
    from gaia_bench.plugins.reporters.lib.resampling import record_draws
    from gaia_bench.plugins.reporters.lib.statistics import mcnemar_exact

    if not all(r.get("predictions") for p in group.pairs for r in (p.a, p.b)):
        return None
    records = [r for p in group.pairs for r in (p.a, p.b)]
    draws = record_draws(records, lambda record: store_path, resamples, seed)
    first = group.pairs[0].a
    for record, d in zip(records, draws):
        if d.items != draws[0].items:
            raise DataError(f"job {record['job_id']} was scored on other test items than job {first['job_id']} "
                            f"({field_value(first, 'dataset')})",
                            "compare results of one dataset version; rerun the older jobs with --force")
    a, b = draws[0::2], draws[1::2]
    mcnemar = [mcnemar_exact(da.correct, db.correct) for da, db in zip(a, b)
               if da.correct is not None and db.correct is not None]
    return ItemLevel(np.stack([d.values for d in a]), np.stack([d.values for d in b]), mcnemar)


def _print_table(report) -> None:
    from rich import box
    from rich.table import Table

    from gaia_bench.plugins.reporters.lib.comparison import note_lines, table, title_lines, verdict_lines

    headers, rows = table(report)

    def grid(gap: int) -> Table:
        out = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, gap))
        for i, column in enumerate(out.columns):  # too narrow a terminal wraps the intervals, never a name
            column.no_wrap = i < len(report.columns)
            column.overflow = "fold"
            column.justify = "left" if i < len(report.columns) else "right"
        for row in rows:
            out.add_row(*row)
        return out

    for line in title_lines(report):
        console.print(line, highlight=False)
    from rich.cells import cell_len

    natural = sum(max([*(cell_len(w) for w in h.split()), *(cell_len(r[i]) for r in rows)])
                  for i, h in enumerate(headers))
    console.print(grid(1 if natural + 3 * (len(headers) - 1) <= console.width else 0))
    for line in verdict_lines(report):
        console.print(line, highlight=False)
    for line in note_lines(report):
        console.print(f"[dim]{line}[/]", highlight=False)


@handle_errors
def compare(
    a: Annotated[list[str], typer.Option("--a", help=SIDE_HELP.format("A") + ", e.g. init=imagenet")],
    b: Annotated[list[str], typer.Option("--b", help=SIDE_HELP.format("B") + ", e.g. init=gaia")],
    store: StoreOption = None,
    dataset: Multi("--dataset", "dataset") = None,
    shots: Multi("--shots", "shots setting, e.g. 10%") = None,
    adapt: Multi("--adapt", "adaptation") = None,
    model: Multi("--model", "model") = None,
    level: Annotated[float, typer.Option("--level", help="confidence level of the intervals")] = 0.95,
    resamples: Annotated[int, typer.Option("--resamples", help="bootstrap resamples of the test items (and seeds)")] = 1000,
    alpha: Annotated[float, typer.Option("--alpha", help="significance level of the verdicts, after Holm over the rows")] = 0.05,
    power: Annotated[float | None, typer.Option("--power", metavar="DELTA", help="add the seeds a paired t-test needs to detect a difference of DELTA points (power 0.8)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table (the terminal), markdown, csv or json")] = "table",
) -> None:
    """Compare two groups of results on the cells they share: per dataset the difference A−B with a
    paired interval, McNemar's exact test of top-1 per seed, the paired t-test across seeds, the
    deciding p-value after Holm over the datasets, and a verdict: A better, B better or not
    distinguishable. A field set to different values on the two sides is compared; any other
    FIELD=VALUE filters both sides. The deciding test: one seed → McNemar for top-1 classification, the paired
    bootstrap over test items otherwise; several seeds → the larger p-value of the paired bootstrap
    over seeds × test items and the paired t-test across seeds (the bootstrap alone is optimistic
    with few seeds); results without stored predictions → the paired t-test across seeds (one seed: no test)."""
    from gaia_bench.plugins.reporters.lib.comparison import (
        Report,
        add_power,
        decide,
        pair_records,
        parse_side,
        render_csv,
        render_json,
        render_text,
        row_statistics,
        split_sides,
    )

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt} is not a compare format", "use " + ", ".join(FORMATS))
    if not 0 < level < 1 or not 0 < alpha < 1:
        raise UsageError(f"--level {level:g} / --alpha {alpha:g} out of range", "both lie in (0, 1), e.g. --level 0.95 --alpha 0.05")
    if resamples < 100:
        raise UsageError(f"--resamples {resamples} is too few for a percentile interval", "use 1000 (the default) or more")
    if power is not None and not (power > 0 and math.isfinite(power)):
        raise UsageError(f"--power {power:g}: the difference to detect must be positive", "e.g. --power 1 (one point)")
    sides = split_sides(parse_side(a, "--a"), parse_side(b, "--b"))
    common = _common_filters(dataset=dataset, shots=shots, adaptation=adapt, model=model)
    path = store or str(default_store())
    if not Path(path).expanduser().is_file():
        raise UsageError(f"no results store at {path}", "run `gaia-bench run ...` first, or pass --store with an existing file")
    with open_store(path) as s:
        records = s.query(status="done")
    pairing = pair_records(records, sides, common)
    if not pairing.groups:
        raise UsageError(f"no cell has results of both A ({sides.label('a')}) and B ({sides.label('b')}) in {path} "
                         f"({len(pairing.only_a)} only in A, {len(pairing.only_b)} only in B)",
                         "check the filters with `gaia-bench results`, or run the missing side")
    seed = 0
    rows, seed_level = [], 0
    for group in pairing.groups:
        items = _item_level(path, group, resamples, seed)
        seed_level += items is None
        rows.append(row_statistics(group, items, level, seed))
    decide(rows, alpha)
    if power is not None:
        add_power(rows, power, alpha)
    report = Report(sides, pairing, rows, level, alpha, resamples, seed, power)
    if seed_level:
        report.notes.append(f"{seed_level} of {len(rows)} rows: results without stored predictions (older runs), "
                            "so their interval and test are across seeds only.")
    if fmt == "table":
        _print_table(report)
    elif fmt == "markdown":
        sys.stdout.write(render_text(report, markdown=True))
    elif fmt == "json":
        sys.stdout.write(render_json(report))
    else:
        sys.stdout.write(render_csv(report))
        for line in report.notes:
            notice(line)


@hookimpl
def register_commands(cli):
    cli.command()(compare)
