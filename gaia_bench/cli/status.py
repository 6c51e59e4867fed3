"""`gaia-bench status`: a grid's progress from the store (what `run` planned, what finished, what
failed and why); `gaia-bench executors`: the executors and the options each takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gaia_bench.cli import app
from gaia_bench.cli.common import StoreOption, default_store, handle_errors, open_store
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError

Filter = lambda flag, what: Annotated[str | None, typer.Option(flag, help=f"only this {what} (* wildcards)")]  # noqa: E731

GROUPS = {
    "cell": ("model", "init", "adaptation", "dataset"),
    "model": ("model",),
    "init": ("init",),
    "adaptation": ("adaptation",),
    "dataset": ("dataset",),
    "shots": ("shots",),
}
STATES = ("pending", "done", "failed")


def _pick_grid(grids: list[dict], wanted: str) -> dict | None:
    if wanted == "all":
        return None
    if wanted == "latest":
        return grids[0]
    matches = [g for g in grids if g["grid"].startswith(wanted)]
    if len(matches) != 1:
        listed = ", ".join(g["grid"] for g in grids[:8]) + (" …" if len(grids) > 8 else "")
        raise UsageError(f"--grid {wanted} {'matches no' if not matches else 'matches more than one'} grid of this store",
                         f"use latest, all, or one of: {listed}")
    return matches[0]


@app.command()
@handle_errors
def status(
    store: StoreOption = None,
    grid: Annotated[str, typer.Option("--grid", help="latest (the last run planned), all, or a grid id (a prefix will do)")] = "latest",
    by: Annotated[str, typer.Option("--by", help="one row per: cell (model × init × adaptation × dataset), model, init, "
                                    "adaptation, dataset or shots")] = "cell",
    model: Filter("--model", "model") = None,
    init: Filter("--init", "init") = None,
    adaptation: Filter("--adapt", "adaptation") = None,
    dataset: Filter("--dataset", "dataset") = None,
    shots: Filter("--shots", "shots label, e.g. 10%") = None,
    show_failed: Annotated[int, typer.Option("--failed", help="list at most this many failed cells with their error and log")] = 20,
) -> None:
    """Show a grid's progress from the store: pending, done and failed cells, and why each failed.

    Results that jobs wrote after their run stopped are merged into the store first."""
    from gaia_bench.cli.run import result_files_dir, work_dir_for

    if by not in GROUPS:
        raise UsageError(f"--by {by} is not a grouping", "use one of: " + ", ".join(GROUPS))
    path = Path(store).expanduser() if store else default_store()
    if not path.is_file():
        raise UsageError(f"no results store at {path}", "run `gaia-bench run ...` first, or pass --store with an existing file")
    filters = {"model": model, "init": init, "adaptation": adaptation, "dataset": dataset, "shots": shots}
    with open_store(str(path), write=True) as s:
        spool = result_files_dir(work_dir_for(s.path))
        merged = s.merge_result_files(spool)
        if merged:
            notice(f"merged {merged} result(s) written by jobs after their run stopped (from {spool})")
        grids = s.grids()
        if not grids:
            records = s.query(**{k: v for k, v in filters.items()})
            done = sum(r["status"] == "done" for r in records)
            notice(f"no grid is recorded in {s.path} (its results come from runs before `gaia-bench status` existed, "
                   f"or were imported): {done} done, {len(records) - done} failed; `gaia-bench results` lists them")
            return
        chosen = _pick_grid(grids, grid)
        gid = chosen["grid"] if chosen else None
        counts: dict[tuple, dict[str, int]] = {}
        for *key, state, n in s.grid_counts(gid, GROUPS[by], **filters):
            row = counts.setdefault(tuple(key), dict.fromkeys(STATES, 0))
            row[state if state in ("done", "failed") else "pending"] += n
        failed = s.grid_records(gid, "failed", **filters)

    from gaia_bench.cli.progress import counts_table

    if chosen:
        console.print(f"grid [bold]{chosen['grid']}[/] · planned {chosen['created_at'][:19].replace('T', ' ')} UTC · "
                      f"{chosen['cells']} cell(s)\n  {escape(chosen['command'] or '')}", highlight=False, soft_wrap=True)
    else:
        console.print(f"all {len(grids)} grid(s) of {s.path}", highlight=False)
    rows = [(" / ".join(str(k) for k in key), c) for key, c in counts.items()]
    if not rows:
        notice("no cell matches the filters")
        return
    label = " / ".join(GROUPS[by])
    console.print(counts_table(rows, f"progress ({s.path})", group=label, states=STATES, max_rows=10**9))
    if failed and show_failed > 0:
        console.print(f"[red]{len(failed)} failed cell(s)[/]:", highlight=False)
        for rec in failed[:show_failed]:
            c = rec["config"]
            console.print(f"  job {rec['job_id']}: {c['model']} / {c['init']} / {c['adaptation']} / {c['dataset']} / "
                          f"{c['shots']} / seed {c['seed']}\n    error: {escape(str(rec.get('error', '')))[:300]}"
                          + (f"\n    log: {escape(str(rec['log']))}" if rec.get("log") else ""),
                          highlight=False, soft_wrap=True)
        if len(failed) > show_failed:
            console.print(f"  … and {len(failed) - show_failed} more (`gaia-bench results --status failed --format json` "
                          "has every error)", highlight=False)
    total = {st: sum(c[st] for c in counts.values()) for st in STATES}
    command = chosen["command"] if chosen else "gaia-bench run …"
    if total["pending"]:
        console.print(f"{total['pending']} cell(s) not finished: run the grid's command again to resume "
                      f"(`{escape(command)}`)", highlight=False, soft_wrap=True)
    if total["failed"]:
        console.print(f"{total['failed']} failed cell(s): add --retry-failed to rerun them", highlight=False)


@app.command()
@handle_errors
def executors() -> None:
    """List executors (how `gaia-bench run --executor` runs jobs) and the options each takes
    (`--executor-option NAME=VALUE`)."""
    from gaia_bench.manager import get_registries

    table = Table("executor", "description", "--max-parallel", "options (-X NAME=VALUE)")
    for name, spec in get_registries().executors.items():
        opts = "\n".join(f"{k}: {v}" for k, v in spec.options.items()) or "-"
        table.add_row(name, spec.description, "yes" if spec.parallel else "no", opts)
    console.print(table)
