"""`gaia-bench leaderboard`: publishable tables and plots from one or several results stores."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gaia_bench import hookimpl
from gaia_bench.cli.common import default_store, handle_errors, open_store
from gaia_bench.console import console, err_console, notice
from gaia_bench.errors import UnknownNameError, UsageError
from gaia_bench.plugins.reporters.lib.tables import CONFLICT_MARK, Grid

PLUGIN_ORDER = 620

_EXPORT_HINT = "pass a file written by `gaia-bench results export --json` or a leaderboard's results.json"


def _read_store(path: str) -> tuple[list[dict], list[dict]]:
    from gaia_bench.plugins.reporters.lib.profiles import load_profiles

    if not Path(path).expanduser().is_file():
        raise UsageError(f"no results store at {path}", "run `gaia-bench run ...` first, or pass --store with an existing file")
    with open_store(path) as store:
        records = store.query()
    return records, load_profiles(path)


def _read_import(path: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """Records, profiles and reference sets of an exported file (the last two only in a results.json)."""
    from gaia_bench.cli.exports import read_export_file
    from gaia_bench.plugins.reporters.lib.references import parse_reference_set

    records, extras = read_export_file(path, _EXPORT_HINT)
    refs = [parse_reference_set(json.dumps(r), f"{path} (reference set #{i})")
            for i, r in enumerate(extras.get("reference_sets", []))]
    return records, list(extras.get("profiles", [])), refs


def _suite_datasets(suite: str, reference_sets: list[dict]) -> list[str]:
    """The suite's datasets in order: a registered suite's, else those of a reference set declaring it."""
    from gaia_bench.manager import get_registries

    suites = get_registries().suites
    if suite in suites:
        return list(suites.get(suite).datasets)
    for ref in reference_sets:
        if ref.get("suite") == suite:
            return [d["name"] for d in ref.get("datasets", [])]
    try:
        suites.get(suite)
    except UnknownNameError as exc:
        raise UsageError(exc.message, f"{exc.hint}; or name a reference set that declares it, e.g. --references gvb") from None
    return []


def _rebuild_command(out: Path, suite: str, shots: str, baseline: str | None, title: str | None, interval: str,
                     calibration: bool = False) -> str:
    parts = ["gaia-bench", "leaderboard", "--import", str(out / "results.json"), "--suite", suite, "--shots", shots]
    if interval != "ci":
        parts += ["--interval", interval]
    if calibration:
        parts += ["--calibration"]
    if baseline:
        parts += ["--baseline", baseline]
    if title:
        parts += ["--title", title]
    return " ".join(shlex.quote(p) for p in parts + ["--out", str(out)])


def _fold(word: str, width: int) -> list[str]:
    """``word`` broken after its hyphens into lines of at most ``width`` cells ("fashion-mnist-lt" ->
    "fashion-", "mnist-lt"); a part wider than ``width`` stays whole."""
    from rich.cells import cell_len

    lines = [""]
    for part in re.split(r"(?<=-)", word):
        if lines[-1] and cell_len(lines[-1] + part) > width:
            lines.append("")
        lines[-1] += part
    return lines


def _terminal_table(grid: Grid, width: int, legend: str | None = None) -> Table:
    """A grid for the terminal, fitted to ``width`` (80 columns show a few datasets unwrapped): key
    columns the same on every row move into the title, cells lose their inner spaces, headers break
    onto lines; then, while too wide, what loses nothing goes first (dataset names in the headers
    break after their hyphens, a task type's mean over its only dataset column goes), then the
    weights column (its † joins the init) and then the per-dataset columns (the task means stay;
    the files have everything). ``legend``, when given, is the caption's first line."""
    from rich import box
    from rich.cells import cell_len

    columns = list(grid.columns)
    texts = [[c.text.replace(" ± ", "±").replace(" ≈", "≈") for c in row] for row in grid.rows]
    keys = [i for i, c in enumerate(columns) if not c.numeric]
    constant = [i for i in keys if len({row[i] for row in texts}) == 1 and columns[i].key not in ("init", "weights")]
    fixed = " · ".join(f"{columns[i].label} {texts[0][i]}" for i in constant)
    shown = [i for i in range(len(columns)) if i not in constant]
    folded = False

    def header(i: int) -> str:
        c = columns[i]
        words = c.label.split(" ") if c.group == "mean" else [w for w in [c.group, *c.label.split(" ")] if w]
        if folded and c.numeric:
            cells = max([cell_len(row[i]) for row in texts] + [cell_len(c.group)])
            words = [line for w in words for line in _fold(w, cells)]
        return "\n".join(words)

    def natural(indices: list[int], pad: int = 0) -> int:
        """Width with ``pad`` spaces each side of a column (none at the table's edges) and a 1-space rule."""
        return sum(max([cell_len(line) for line in header(i).split("\n")] + [cell_len(row[i]) for row in texts])
                   for i in indices) + (1 + 2 * pad) * (len(indices) - 1)

    if natural(shown, 1) > width:
        folded = True
        per_task = Counter(columns[i].group for i in shown if columns[i].numeric and columns[i].group != "mean")
        shown = [i for i in shown if not (columns[i].key.startswith("mean:")
                                          and per_task[columns[i].label.split(" ")[0]] == 1)]
    weights = next((i for i in shown if columns[i].key == "weights"), None)
    if weights is not None and natural(shown, 1) > width:
        init = next((i for i in shown if columns[i].key == "init"), None)
        for row in texts:
            flag = row[weights].rpartition(" ")[2] if row[weights].endswith("†") else ""
            if init is not None and flag:
                row[init] += flag
        shown.remove(weights)
    caption = legend
    if natural(shown) > width:
        shown = [i for i in shown if not columns[i].numeric or columns[i].key.startswith("mean:")]
        caption = "per-dataset columns: see the written files"
    table = Table(title=grid.title + (f" ({fixed})" if fixed else ""), caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 1 if natural(shown, 1) <= width else 0), show_edge=False,
                  pad_edge=False)
    for i in shown:
        table.add_column(header(i), justify="right" if columns[i].numeric else "left", no_wrap=True, overflow="fold")
    for row, cells in zip(texts, grid.rows):
        table.add_row(*[f"[bold]{escape(row[i])}[/]" if cells[i].strong else escape(row[i]) for i in shown])
    return table


@handle_errors
def leaderboard(
    suite: Annotated[str, typer.Option("--suite", help="which datasets: a registered suite (mini, ...) or a reference set's (gvb)")] = "mini",
    store: Annotated[list[str] | None, typer.Option("--store", help="results store to read (repeat to merge several; default: the default store)")] = None,
    import_: Annotated[list[Path] | None, typer.Option("--import", help="exported results JSON to merge (repeatable), e.g. a leaderboard's results.json")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory (default: leaderboards/<suite>)")] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="init the error-rate reduction is measured against (default: imagenet if present, else the first init)")] = None,
    shots: Annotated[str | None, typer.Option("--shots", help="shots of the main table (default: the most common, e.g. 10%)")] = None,
    title: Annotated[str | None, typer.Option("--title", help="page and table title")] = None,
    references: Annotated[list[str] | None, typer.Option("--references", help="include a published reference set by name, e.g. gvb (repeatable)")] = None,
    import_references: Annotated[list[Path] | None, typer.Option("--import-references", help="include a reference set file (repeatable)")] = None,
    interval: Annotated[str, typer.Option("--interval", help="what a cell's ± shows: ci (half its 95% confidence interval) or std (over seeds)")] = "ci",
    calibration: Annotated[bool, typer.Option("--calibration", help="add a table of ECE, NLL and Brier before and after temperature scaling (classification)")] = False,
) -> None:
    """Write the leaderboard (markdown, CSV, JSON, LaTeX, one HTML page, plots, results.json) from the results stores.

    Cells show mean ± half the 95% confidence interval (``--interval ci``: one seed, the record's
    bootstrap over test items; several seeds, the bootstrap over seeds × test items from the stored
    predictions, else a t interval over seeds) or ± the std over seeds (``--interval std``). Per
    column the best row is bold and the rows not distinguishable from it are marked ≈ (the paired
    tests of `gaia-bench compare`, Holm over the column). Also: error-rate reductions with
    intervals, long-tail buckets, data-efficiency areas and rank agreement, where the weights came from;
    every classification cell's calibration in leaderboard.json (``--calibration``: also as a table)."""
    from gaia_bench.plugins.reporters.lib.leaderboard import build_leaderboard, merge_sources
    from gaia_bench.manager import get_registries
    from gaia_bench.plugins.reporters.lib.references import as_records, load_reference_set, named_file
    from gaia_bench.plugins.reporters.lib.resampling import StoredDraws
    from gaia_bench.plugins.reporters.lib.tables import leaderboard_grids
    from gaia_bench.shots import parse_shot

    sources: list[tuple[str, list[dict]]] = []
    profiles: list[dict] = []
    reference_sets: list[dict] = []
    stores = list(store or []) or ([] if import_ else [str(default_store())])
    for path in stores:
        records, found = _read_store(path)
        sources.append((path, records))
        profiles += found
    for path in import_ or []:
        records, found, refs = _read_import(path)
        sources.append((str(path), records))
        profiles += found
        reference_sets += refs
    reference_sets += [load_reference_set(named_file(name)) for name in references or []]
    reference_sets += [load_reference_set(path) for path in import_references or []]
    unique: dict[str, dict] = {}
    for ref in reference_sets:  # a set named twice (e.g. in results.json and by --references) counts once
        unique.setdefault(ref.get("name", ""), ref)

    merged = merge_sources(sources)
    for conflict in merged.conflicts:
        versions = ", ".join(f"{v['source']}: {v['primary_value']}" for v in conflict.versions)
        err_console.print(f"[yellow]warning:[/] job {conflict.job_id} has different results in different sources "
                          f"({versions}); the tables use {conflict.kept}'s, not an average, and mark its cell "
                          f"{CONFLICT_MARK} (the conflicts table says which machine made each)",
                          highlight=False, soft_wrap=True)
    draws = StoredDraws(merged.origins)
    board = build_leaderboard(
        merged, suite=suite, dataset_order=_suite_datasets(suite, list(unique.values())),
        references=[r for ref in unique.values() for r in as_records(ref)], reference_sets=list(unique.values()),
        profiles=profiles, shots=parse_shot(shots).label if shots else None, baseline=baseline, title=title,
        interval=interval, draws=draws,
    )
    board.prediction_files, board.prediction_problems = draws.files(board.records), dict(draws.problems)
    out_dir = out or Path("leaderboards") / suite
    board.calibration = calibration
    board.rebuild = _rebuild_command(out_dir, suite, board.shots, baseline, title, interval, calibration)
    writers = [r for _, r in get_registries().reporters.items() if r.write_leaderboard is not None]
    if not writers:
        raise UsageError("no installed reporter writes leaderboards",
                         "enable the built-in leaderboard_formats plugin (see GAIA_BENCH_DISABLE_PLUGINS)")
    written = [path for writer in writers for path in writer.write_leaderboard(board, out_dir)]
    spread = "half the 95% CI" if interval == "ci" else "the std over seeds"
    legends = {"main": f"± {spread} · bold: column's best · ≈: not distinguishable from it",
               "err": "[95% CI] of the mean reduction over n datasets"}
    for grid in leaderboard_grids(board):
        if grid.id in legends and grid.rows:
            console.print(_terminal_table(grid, console.width, legends[grid.id]))
    if calibration and board.measured:
        from gaia_bench.plugins.reporters.lib.calibration_table import calibration_grid

        grid = calibration_grid(board, ("ece", "ece_ts", "temperature"))
        console.print(_terminal_table(grid, console.width, "lower is better; T: temperature; NLL, Brier: see the files"))
    notice(f"wrote {len(written)} files to {out_dir}: " + ", ".join(p.name for p in written))


@hookimpl
def register_commands(cli):
    cli.command()(leaderboard)
