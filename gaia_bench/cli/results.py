"""`gaia-bench results`: list, filter, export and import stored results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gaia_bench.cli import app
from gaia_bench.cli.common import StoreOption, handle_errors, open_store, split_values
from gaia_bench.console import console, notice
from gaia_bench.errors import DataError, UsageError

results_app = typer.Typer(help="List, filter, export and import stored results.", no_args_is_help=False)
app.add_typer(results_app, name="results")

Filter = lambda flag, what: Annotated[str | None, typer.Option(flag, help=f"only this {what} (* wildcards)")]  # noqa: E731


@results_app.callback(invoke_without_command=True)
@handle_errors
def results(
    ctx: typer.Context,
    store: StoreOption = None,
    model: Filter("--model", "model") = None,
    init: Filter("--init", "init") = None,
    adaptation: Filter("--adapt", "adaptation") = None,
    dataset: Filter("--dataset", "dataset") = None,
    shots: Filter("--shots", "shots label, e.g. 10%") = None,
    status: Filter("--status", "status: done or failed") = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown, csv or json (any registered reporter)")] = "markdown",
) -> None:
    """List stored results (filters combine)."""
    ctx.obj = {"store": store}  # `results --store X export` means X for the subcommand too
    if ctx.invoked_subcommand is not None:
        return
    from gaia_bench.manager import get_registries

    reporter = get_registries().reporters.get(fmt)
    if reporter.render is None:
        raise UsageError(f"reporter '{fmt}' does not render result lists",
                         "use --format markdown, csv or json (or another reporter that renders results)")
    with open_store(store) as s:
        records = s.query(model=model, init=init, adaptation=adaptation, dataset=dataset, shots=shots, status=status)
    if not records:
        notice(f"no results match in {s.path}")
        return
    sys.stdout.write(reporter.render(records))


@results_app.command("export")
@handle_errors
def export(
    ctx: typer.Context,
    store: StoreOption = None,
    json_: Annotated[bool, typer.Option("--json", help="write JSON (the only export format; the default)")] = True,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default: stdout)")] = None,
    model: Filter("--model", "model") = None,
    dataset: Filter("--dataset", "dataset") = None,
    salvage: Annotated[bool, typer.Option("--salvage", help="from a damaged store: every record that still reads")] = False,
) -> None:
    """Export results as JSON, with full configs and provenance, to move them between stores."""
    from gaia_bench.manager import get_registries

    reporter = get_registries().reporters.get("json")  # the full records, as `results import` reads them
    if reporter.render is None:
        raise UsageError("reporter 'json' does not render result lists",
                         "enable the built-in reporters plugin (see GAIA_BENCH_DISABLE_PLUGINS)")
    path = store or (ctx.obj or {}).get("store")
    if salvage:
        from gaia_bench.cli.store_errors import salvage_records
        from gaia_bench.cli.common import default_store

        if model or dataset:
            raise UsageError("--salvage exports every record that still reads", "drop --model/--dataset")
        source = Path(path or default_store()).expanduser()
        if not source.is_file():
            raise UsageError(f"no results store at {source}", "pass --store with the damaged file")
        records, lost = salvage_records(source)
        notice(f"salvaged {len(records)} record(s) from {source}; {lost} did not read")
        text = reporter.render(records)
    else:
        with open_store(path) as s:
            text = reporter.render(s.query(model=model, dataset=dataset))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        notice(f"wrote {out}")


@results_app.command("import")
@handle_errors
def import_(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSON files from `gaia-bench results export --json` ('-' = stdin)")],
    store: StoreOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="overwrite jobs already in the store")] = False,
) -> None:
    """Import exported results; identical ones are skipped, conflicting ones reported and kept as they were.
    Every file is checked whole first: a file that breaks the schema imports nothing."""
    from gaia_bench.cli.exports import parse_export, read_export_file
    from gaia_bench.cli.exports import merge_into

    exports = [(("stdin", parse_export(sys.stdin.buffer.read(), "stdin")) if str(path) == "-"
                else (str(path), read_export_file(path))) for path in files]
    with open_store(store or (ctx.obj or {}).get("store"), write=True) as s:
        for name, (records, _) in exports:
            added, same, conflicts = merge_into(s, records, replace=replace)
            console.print(f"{name}: {added} imported, {same} already present")
            for job_id in conflicts:
                console.print(f"[yellow]conflict:[/] job {job_id} differs from the stored result; kept the stored one "
                              "(--replace to overwrite)")


def _extra_metrics(task, names: list[str], predictions, test, spec, record: dict) -> dict[str, float]:
    """The task's extra metrics ``names``; one that takes ``details`` (an opt-in argument, as a
    pluggy hookimpl's) gets the record's: what the job fitted and stored, e.g. a temperature."""
    import inspect

    out = {}
    for name in names:
        metric = task.extra_metrics[name]
        takes = "details" in inspect.signature(metric).parameters
        extra = {"details": record.get("details") or {}} if takes else {}
        out.update({k: float(v) for k, v in metric(predictions, test, spec, **extra).items()})
    return out


@results_app.command("rescore")
@handle_errors
def rescore(
    ctx: typer.Context,
    store: StoreOption = None,
    model: Filter("--model", "model") = None,
    init: Filter("--init", "init") = None,
    adaptation: Filter("--adapt", "adaptation") = None,
    dataset: Filter("--dataset", "dataset") = None,
    shots: Filter("--shots", "shots label, e.g. 10%") = None,
    metric: Annotated[list[str], typer.Option("--metric", help="add this metric to the records (repeat or "
                                              "comma-separate; see `gaia-bench tasks`)")] = [],  # noqa: B006
) -> None:
    """Recompute every metric from the stored predictions and check it against the record;
    --metric adds a metric to old results without running them again."""
    from gaia_bench.manager import get_registries
    from gaia_bench.predictions import load_predictions

    registries = get_registries()
    wanted = split_values(metric)
    rows, differ, missing, updated, not_applicable = [], 0, 0, [], []
    with open_store(store or (ctx.obj or {}).get("store"), write=True) as s:
        records = s.query(model=model, init=init, adaptation=adaptation, dataset=dataset, shots=shots, status="done")
        for record in records:
            task = registries.tasks.get(record["config"]["task"])
            unknown = [m for m in wanted if m not in task.extra_metrics and m not in {i.name for i in task.metrics}]
            if unknown:
                raise UsageError(f"task '{task.name}' has no metric {', '.join(unknown)}",
                                 f"choose from {', '.join([i.name for i in task.metrics] + list(task.extra_metrics))}")
            if not record.get("predictions"):
                missing += 1
                continue
            spec = registries.datasets.get(record["config"]["dataset"])
            predictions, test = load_predictions(s.path, record, task)
            got = task.evaluate(predictions, test, spec)
            stored_extra = [m for m in task.extra_metrics if m in record["metrics"] and m not in got]
            got.update(_extra_metrics(task, stored_extra, predictions, test, spec, record))
            for name, value in record["metrics"].items():
                if name in got:
                    same = float(got[name]) == value or (value != value and got[name] != got[name])  # NaN: NaN
                    differ += not same
                    rows.append((record["job_id"][:12], record["config"]["dataset"], name, f"{value:.4f}",
                                 f"{float(got[name]):.4f}", "yes" if same else "NO"))
            try:
                added = _extra_metrics(task, [m for m in wanted if m in task.extra_metrics], predictions, test, spec,
                                       record)
            except DataError as exc:  # e.g. calibration of k-NN votes: the other records still get theirs
                not_applicable.append(f"{record['job_id'][:12]}: {exc.message}")
                continue
            if added:
                updated.append({**record, "metrics": {**record["metrics"], **added}})
                rows.extend((record["job_id"][:12], record["config"]["dataset"], k, "-", f"{v:.4f}", "added")
                            for k, v in added.items())
        s.put_many(updated)
    if rows:
        from tabulate import tabulate

        console.print(tabulate(rows, headers=("job", "dataset", "metric", "stored", "rescored", "equal")))
    if missing:
        notice(f"{missing} result(s) have no stored predictions (run before predictions were kept; "
               "`gaia-bench run ... --force` reruns them)")
    if not_applicable:
        notice(f"{len(not_applicable)} result(s) cannot have --metric {','.join(wanted)} (first: {not_applicable[0]})")
    notice(f"{len(rows) - sum(r[-1] == 'added' for r in rows)} stored metric(s) rescored, {differ} differ; "
           f"{len(updated)} record(s) updated in {s.path}")
    if differ:
        raise typer.Exit(1)
