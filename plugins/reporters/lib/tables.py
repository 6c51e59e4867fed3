"""The leaderboard (:mod:`gaia_bench.plugins.reporters.lib.leaderboard`) as display grids: header, grouped columns, text
cells with sort values, notes; with the labels, number formats and notes every format shares.

Markdown, LaTeX and HTML render the same grids, so every format shows the same numbers with the
same marks (↓ for lower-is-better, ★ for the Pareto front) and the same notes (formulas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gaia_bench.plugins.reporters.lib.leaderboard import (
    ALPHA,
    KIND_ITEMS,
    KIND_SEEDS_ITEMS,
    KIND_T,
    SEED,
    Cell,
    Column,
    DataEfficiency,
    Leaderboard,
    MainTable,
    Section,
    SpeedAccuracy,
)
from gaia_bench.predictions import LEVEL, RESAMPLES

TASK_LABELS = {"classification": "CLS", "detection": "DET", "segmentation": "SEG", "depth": "DEPTH"}
ERR_FORMULA = (
    "error-rate reduction of an init = (err_base - err_init) / err_base, averaged over the datasets of a task "
    "type where both exist, paired by (model, adaptation, dataset, shots); err = 100 - score for "
    "higher-is-better metrics (scores in %), err = the metric itself for lower-is-better metrics (e.g. RMSE, MR)"
)
STD_NOTE = "mean ± sample standard deviation (ddof=1) over seeds; n = number of seeds"
LOWER_MARK = "↓"
FRONT_MARK = "★"
TIED_MARK = "≈"
T_MARK = "ᵗ"
CONFLICT_MARK = "‡"
CONFLICT_NOTE = (f"{CONFLICT_MARK} = another source has a different value for a seed of this cell (same job id): the "
                 "cell uses the first source's, the conflicts table lists both")
NA = "n/a"
CI_NOTE = (f"mean ± half the width of its {LEVEL * 100:g}% confidence interval (the interval itself, which need not be "
           "symmetric, is in the CSV and JSON)")
INTERVAL_KINDS = {
    KIND_SEEDS_ITEMS: ("several seeds: percentile bootstrap over seeds × test items from the stored predictions (each "
                       "resample draws the seeds with replacement and the test items, the same item draws for every "
                       f"row, as `gaia-bench compare` does; {LEVEL * 100:g}%, {RESAMPLES} resamples, seed {SEED})"),
    KIND_T: (f"{T_MARK} several seeds without stored predictions (results from before they were kept): Student t "
             f"interval of the mean over seeds ({LEVEL * 100:g}%)"),
}
MARK_NOTE = (f"bold = the column's best row (by mean); {TIED_MARK} = not distinguishable from it, tested as `gaia-bench "
             "compare --a BEST --b ROW` does: paired on seeds; one seed: McNemar's exact test for top-1, else the "
             "paired bootstrap over test items; several seeds: the larger p of the bootstrap over seeds × test items "
             "and the paired t-test; without stored predictions the paired t-test over seeds (one seed: no test, "
             f"counted as not distinguishable); Holm over the rows compared in the column, alpha {ALPHA:g}; "
             "no mark = worse than the best")
ERR_CI_NOTE = (f"[low, high] = {LEVEL * 100:g}% percentile bootstrap interval of the mean reduction: each resample draws "
               "the paired datasets with replacement and, for each, the baseline's and the init's resampled means at "
               "the same draw (seeds × test items where predictions are stored, seeds alone where only several seeds "
               f"are, the mean itself for one seed without predictions); {RESAMPLES} resamples, seed {SEED}")
TASK_MEAN_NOTE = ("task-type mean = mean of the row's dataset means of that task type (n/N when the row lacks some); "
                  "a task type mixing directions averages its higher-is-better datasets only")
FLOP_NOTE = "FLOPs counted by torch.utils.flop_counter.FlopCounterMode on one forward (a multiply-add = 2 FLOPs)"


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task.upper())


def fmt_number(value: float | None) -> str:
    """Two decimals for scores; up to three below 10, where small errors (depth RMSE 0.456) need them."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 10:
        return f"{value:.2f}"
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def fmt_cell(cell: Cell | None, interval: str = "std", show_n: bool = True) -> str:
    """``interval`` "std": ``mean`` for one seed, ``mean ± std (n=k)`` for several; "ci": ``mean ±
    half-width`` of the cell's confidence interval (``± n/a`` without one; ᵗ: a t interval over
    seeds). Published reference values: the number alone. ≈ follows a cell tied with its column's best."""
    if cell is None:
        return "-"
    if cell.provenance:
        return fmt_number(cell.mean)
    n = f" (n={cell.n})" if show_n else ""
    if interval == "std":
        text = fmt_number(cell.mean) if cell.n == 1 else f"{fmt_number(cell.mean)} ± {fmt_std(cell.std or 0.0)}{n}"
    elif cell.interval is None:
        text = f"{fmt_number(cell.mean)} ± {NA}{n}"
    else:
        mark = T_MARK if cell.interval.kind == KIND_T else ""
        text = f"{fmt_number(cell.mean)} ± {fmt_std(cell.interval.half_width)}{mark}{n}"
    return text + (f" {TIED_MARK}" if cell.mark == "tied" else "") + (f" {CONFLICT_MARK}" if cell.conflicts else "")


def fmt_std(std: float) -> str:
    return f"{std:.2f}" if std >= 0.1 or std == 0 else f"{std:.2g}"


@dataclass(frozen=True)
class GridColumn:
    key: str  # stable machine name (HTML ?sort=KEY)
    label: str
    group: str = ""  # e.g. the task type, shown as a spanning header
    numeric: bool = False
    higher_is_better: bool = True


@dataclass(frozen=True)
class GridCell:
    text: str
    value: float | None = None  # what sorting compares; None = text
    strong: bool = False  # shown in bold (the best row of a column)


@dataclass
class Grid:
    id: str
    title: str
    columns: list[GridColumn]
    rows: list[list[GridCell]]
    notes: list[str] = field(default_factory=list)


def column_label(column: Column) -> str:
    return f"{column.dataset} {column.metric}" + ("" if column.higher_is_better else f" {LOWER_MARK}")


def _key_columns(*names: str) -> list[GridColumn]:
    return [GridColumn(n, n) for n in names]


def _text(*values: str) -> list[GridCell]:
    return [GridCell(v) for v in values]


def _num(value: float | None, text: str | None = None) -> GridCell:
    return GridCell(text if text is not None else fmt_number(value), value)


def _same_n(cells: list[Cell]) -> int | None:
    """The number of seeds when every measured cell has the same, else None."""
    counts = {c.n for c in cells if not c.provenance}
    return counts.pop() if len(counts) == 1 else None


def interval_notes(cells: list[Cell], interval: str) -> list[str]:
    """What the ± of these cells is, one line per kind of interval they hold."""
    measured = [c for c in cells if not c.provenance]
    if not measured:
        return []
    same = _same_n(measured)
    seeds = f"every cell has n = {same} seed{'s' * (same != 1)}" if same else "n = number of seeds"
    if interval == "std":
        return [f"{STD_NOTE.replace('; n = number of seeds', '')}; {seeds}"]
    kinds = {c.interval.kind for c in measured if c.interval is not None}
    notes = [f"{CI_NOTE}; {seeds}"]
    stored = sorted({c.interval.method for c in measured if c.interval is not None and c.interval.kind == KIND_ITEMS})
    if stored:
        notes.append("one seed: the record's own interval (" + "; ".join(stored) + ")")
    notes += [INTERVAL_KINDS[k] for k in (KIND_SEEDS_ITEMS, KIND_T) if k in kinds]
    if any(c.interval is None for c in measured):
        notes.append(f"{NA}: one seed without a stored interval (results from before intervals were kept)")
    return notes


def mark_notes(cells: list[Cell]) -> list[str]:
    tested = [c.versus_best for c in cells if c.versus_best is not None]
    if not tested:
        return []
    untested = sum(v["test"] == "none" for v in tested)
    return [MARK_NOTE + (f"; {untested} of {len(tested)} comparisons had no test" if untested else "")]


def main_grid(section: Section, grid_id: str, interval: str = "ci", reference: bool = False) -> Grid:
    from gaia_bench.plugins.reporters.lib.provenance import FLAG_NOTE, KIND_NOTE, row_origin

    table: MainTable = section.table
    columns = ([GridColumn("reference", "reference")] if reference else []) + _key_columns("model", "init", "adaptation")
    columns.append(GridColumn("weights", "weights"))
    columns += [GridColumn(c.key, column_label(c), task_label(c.task), True, c.higher_is_better) for c in table.columns]
    for task in table.tasks:
        better = table.task_direction(task)
        columns.append(GridColumn(f"mean:{task}", f"{task_label(task)} mean" + ("" if better else f" {LOWER_MARK}"),
                                  "mean", True, better))
    all_cells = [c for row in table.rows for c in row.cells.values()]
    show_n = _same_n(all_cells) is None
    rows, flagged, searches = [], False, {}
    for row in table.rows:
        cells = []
        if reference:
            sources = {f"{p.get('label', p.get('set'))} @{str(p.get('commit', ''))[:7]}"
                       for cell in row.cells.values() for p in cell.provenance}
            found = {(c.task, p["search"]["label"]): p["search"] for c, cell in row.cells.items()
                     for p in cell.provenance if p.get("search")}
            searches.update({label: s for (_, label), s in found.items()})
            marks = "; ".join(f"{task_label(t)} searched: {label}" for t, label in sorted(found))
            cells.append(GridCell(", ".join(sorted(sources)) + (f" ({marks})" if marks else "") or "reference"))
        cells += _text(*row.key)
        origin = row_origin(row)
        flagged |= bool(origin.flag)
        cells.append(GridCell(origin.label + (f" {origin.flag}" if origin.flag else "")))
        for c in table.columns:
            cell = row.cells.get(c)
            cells.append(GridCell(fmt_cell(cell, interval, show_n), cell.mean, cell.mark == "best") if cell else GridCell("-"))
        for task in table.tasks:
            mean = row.task_means.get(task)
            if mean is None:
                cells.append(GridCell("-"))
            else:
                count = "" if mean.n_datasets == mean.of else f" ({mean.n_datasets}/{mean.of})"
                cells.append(_num(mean.value, fmt_number(mean.value) + count))
        rows.append(cells)
    what = f"reference results ({section.name}): published single numbers, no interval" if reference else "results measured here"
    notes = [f"{what}; shots {table.shots}; each cell is the dataset's primary metric"]
    notes += interval_notes(all_cells, interval) + mark_notes(all_cells)
    notes += [f"{LOWER_MARK} marks lower-is-better metrics", TASK_MEAN_NOTE, KIND_NOTE + " (details: the provenance table)"]
    notes += [f"searched: {label}: {s.get('description', '')} ({s.get('source', '')})" for label, s in sorted(searches.items())]
    if flagged:
        notes.append(FLAG_NOTE)
    if any(c.conflicts for c in all_cells):
        notes.append(CONFLICT_NOTE)
    return Grid(grid_id, f"{'Reference' if reference else 'Main'} table ({table.shots})", columns, rows, notes)


def fmt_interval(interval, decimals: int = 1) -> str:
    """``[low, high]``, or n/a."""
    if interval is None or math.isnan(interval.low):
        return NA
    return f"[{interval.low:.{decimals}f}, {interval.high:.{decimals}f}]"


def err_grid(section: Section, grid_id: str) -> Grid:
    tasks = section.table.tasks
    columns = _key_columns("init", "model", "adaptation", "baseline")
    columns += [GridColumn(f"err:{t}", task_label(t), "ERR %", True) for t in tasks]
    rows = []
    for err in section.err:
        cells = _text(err.init, err.model, err.adaptation, err.baseline)
        for task in tasks:
            pct, pairs = err.percent(task), err.pairs.get(task, [])
            text = f"{pct:.1f} {fmt_interval(err.intervals.get(task))} (n={len(pairs)})" if pct is not None else "-"
            cells.append(_num(pct, text) if pct is not None else GridCell("-"))
        rows.append(cells)
    notes = [ERR_FORMULA, ERR_CI_NOTE, f"baseline init: {section.baseline}; shots {section.table.shots}; "
             "n = paired datasets; model 'all' pools every paired model and adaptation of an init"]
    if not rows:
        notes.append(f"no init other than the baseline ({section.baseline}) shares a model and adaptation with it")
    return Grid(grid_id, f"Error-rate reduction vs {section.baseline}", columns, rows, notes)


def efficiency_grid(eff: DataEfficiency, interval: str = "ci") -> Grid:
    columns = _key_columns("model", "init", "adaptation", "dataset", "metric")
    columns += [GridColumn(f"shots:{s}", s, "shots", True) for s in eff.shots]
    all_cells = [c for row in eff.rows for c in row.cells.values()]
    show_n = _same_n(all_cells) is None
    rows = []
    for row in eff.rows:
        metric = row.column.metric + ("" if row.column.higher_is_better else f" {LOWER_MARK}")
        cells = _text(*row.key, row.column.dataset, metric)
        cells += [_num(row.cells[s].mean, fmt_cell(row.cells[s], interval, show_n)) if s in row.cells else GridCell("-")
                  for s in eff.shots]
        rows.append(cells)
    notes = ["primary metric at every shots setting (fractions ascending, then k per class)", *interval_notes(all_cells, interval)]
    if "0%" in eff.shots:
        from gaia_bench.plugins.reporters.lib.efficiency import ZERO_SHOT_NOTE

        notes.append(ZERO_SHOT_NOTE)
    notes += [CONFLICT_NOTE] if any(c.conflicts for c in all_cells) else []
    return Grid("efficiency", "Data efficiency", columns, rows, notes)


def curve_grid(board: Leaderboard) -> Grid:
    from gaia_bench.plugins.reporters.lib.efficiency import AUC_RULE, REACH_RULE

    analysis = board.efficiency_analysis
    reach = f"reaches {analysis.baseline}@100%"
    columns = _key_columns("model", "init", "adaptation", "dataset", "metric", "fractions")
    columns += [GridColumn("auc", "AUC (log)", numeric=True), GridColumn("reach", reach)]
    rows = []
    for c in analysis.curves:
        metric = c.column.metric + ("" if c.column.higher_is_better else f" {LOWER_MARK}")
        rows.append([*_text(*c.key, c.column.dataset, metric, f"{c.fractions[0]}–{c.fractions[-1]} ({len(c.fractions)})"),
                     _num(c.auc) if c.auc is not None else GridCell("-"), GridCell(c.reach or "-")])
    notes = [AUC_RULE, REACH_RULE + f"; baseline init: {analysis.baseline}; '-': the baseline has no 100% result there"]
    return Grid("curves", "Data efficiency: area under the curve, data needed", columns, rows, notes)


def agreement_grid(board: Leaderboard) -> Grid:
    from gaia_bench.plugins.reporters.lib.efficiency import TAU_RULE, fmt_tau

    columns = _key_columns("task", "dataset", "shots", "rows")
    columns.append(GridColumn("tau", "Kendall τ [CI]", numeric=True))
    rows = []
    for a in board.efficiency_analysis.agreements:
        tau = a.tau.tau
        rows.append([*_text(task_label(a.task), a.dataset, f"{a.shots[0]} vs {a.shots[1]}", str(len(a.rows))),
                     GridCell(fmt_tau(a.tau), None if math.isnan(tau) else tau)])
    notes = [TAU_RULE, "no interval: some cell has nothing to resample (one seed without stored predictions)"]
    return Grid("rank-agreement", "Does the ranking hold across shot fractions?", columns, rows, notes)


def long_tail_grid(board: Leaderboard, interval: str = "ci") -> Grid:
    from gaia_bench.plugins.reporters.lib.long_tail import BUCKETS, RULE

    lt = board.long_tail
    columns = _key_columns("model", "init", "adaptation", "dataset")
    columns += [GridColumn(f"bucket:{b}", b, "accuracy", True) for b in BUCKETS]
    columns.append(GridColumn("worst", "worst class", "accuracy", True))
    all_cells = [c for r in lt.rows for c in [*r.buckets.values(), r.worst]]
    show_n = _same_n(all_cells) is None
    rows = []
    for r in lt.rows:
        cells = _text(*r.key, r.column.dataset)
        for cell in [*(r.buckets[b] for b in BUCKETS), r.worst]:
            cells.append(_num(cell.mean, fmt_cell(cell, "std", show_n)) if cell.n else GridCell("-"))
        rows.append(cells)
    notes = [RULE + ("" if show_n else "; n = seeds"), *(b.describe() for b in lt.datasets)]
    if lt.without_values:
        notes.append("no per-class values stored (results from before they were kept): " + ", ".join(lt.without_values))
    if not lt.datasets and not lt.without_values:
        notes.append("no long-tailed classification dataset in the main table")
    return Grid("long-tail", f"Long tail ({board.shots}): head / medium / tail classes", columns, rows, notes)


def provenance_grid(section: Section, grid_id: str = "provenance") -> Grid:
    """Where each row's weights came from and, once records say it, where its data came from."""
    from gaia_bench.plugins.reporters.lib.provenance import DATA_NOTE, FLAG_NOTE, KIND_NOTE, row_data, row_origin

    data = {row.key: row_data(row) for row in section.table.rows}
    with_data = any(label is not None for label in data.values())
    columns = _key_columns("model", "init", "adaptation", "weights", *(["data"] if with_data else []), "source")
    rows, flagged = [], False
    for row in section.table.rows:
        origin = row_origin(row)
        flagged |= bool(origin.flag)
        rows.append(_text(*row.key, origin.label + (f" {origin.flag}" if origin.flag else ""),
                          *([data[row.key] or "-"] if with_data else []), origin.detail))
    notes = [KIND_NOTE, *([DATA_NOTE] if with_data else []), *([FLAG_NOTE] if flagged else [])]
    return Grid(grid_id, f"Where each row's weights{' and data' if with_data else ''} came from", columns, rows, notes)


def speed_grid(speed: SpeedAccuracy, table: MainTable) -> Grid:
    columns = _key_columns("model", "init", "adaptation", "input", "device")
    columns += [GridColumn("params", "params (M)", numeric=True, higher_is_better=False),
                GridColumn("gflops", "GFLOPs / image", numeric=True, higher_is_better=False),
                GridColumn("latency", "latency ms", numeric=True, higher_is_better=False),
                GridColumn("throughput", "throughput img/s", numeric=True)]
    for task in speed.tasks:
        better = table.task_direction(task)
        columns.append(GridColumn(f"mean:{task}", "mean" + ("" if better else f" {LOWER_MARK}"), task_label(task), True, better))
        columns.append(GridColumn(f"pareto:{task}", "Pareto", task_label(task)))
    rows = []
    for row in speed.rows:
        p = row.profile
        cells = _text(*row.key)
        if p is None:
            cells += _text("-", "-", "-", "-", "-", "-")
        else:
            cells += _text(f"{p['input_size']}px, batch {p['batch_size']}", f"{p['device']} ({p.get('device_name', '')})")
            cells += [_num(p["params"] / 1e6, f"{p['params'] / 1e6:.3f}"), _num(p["gflops_per_image"], f"{p['gflops_per_image']:.4g}"),
                      _num(p["latency_ms"], f"{p['latency_ms']:.2f}"), _num(p["throughput_ips"], f"{p['throughput_ips']:.1f}")]
        for task in speed.tasks:
            mean = row.task_means.get(task)
            cells.append(_num(mean.value) if mean else GridCell("-"))
            cells.append(GridCell(FRONT_MARK if row.on_front.get(task) else ""))
        rows.append(cells)
    notes = [f"{FRONT_MARK} = on the Pareto front of that task type (no other row is both faster and more accurate)",
             "latency: median ms per forward of one batch after warm-up, from `gaia-bench profile`; throughput = batch / latency",
             FLOP_NOTE]
    if any(r.profile is None for r in speed.rows):
        notes.append("rows without a profile: run `gaia-bench profile --model MODEL --store STORE` and rebuild")
    return Grid("speed", "Speed / accuracy", columns, rows, notes)


def conflict_grid(board: Leaderboard) -> Grid:
    columns = _key_columns("job_id", "model", "init", "dataset", "shots", "seed", "kept", "versions")
    rows = []
    for c in board.conflicts:
        cfg = c.config
        versions = "; ".join(f"{v['source']}: {fmt_number(v['primary_value'])}"
                             + (f" ({v['numerics']})" if v.get("numerics") else "") for v in c.versions)
        rows.append(_text(c.job_id, str(cfg.get("model")), str(cfg.get("init")), str(cfg.get("dataset")),
                          str(cfg.get("shots")), str(cfg.get("seed")), c.kept, versions))
    notes = ["same job id, different metrics in different sources: reported, never averaged; "
             f"the tables use the first source's record and mark its cells {CONFLICT_MARK}",
             "in brackets: the CPU, ATen's kernel level and threads each version ran with (README \"Reproducibility\": "
             "detection and depth cells differ across instruction sets)"]
    return Grid("conflicts", "Conflicting duplicates", columns, rows, notes)


def leaderboard_grids(board: Leaderboard) -> list[Grid]:
    """Every table of the leaderboard, in page order."""
    grids = []
    if board.measured:
        grids += [main_grid(board.measured, "main", board.interval), err_grid(board.measured, "err")]
    if board.efficiency.rows:
        grids.append(efficiency_grid(board.efficiency, board.interval))
    analysis = board.efficiency_analysis
    if analysis is not None and analysis.curves:
        grids.append(curve_grid(board))
    if analysis is not None and analysis.agreements:
        grids.append(agreement_grid(board))
    if board.long_tail is not None and (board.long_tail.rows or board.long_tail.without_values):
        grids.append(long_tail_grid(board))
    if board.calibration and board.measured:
        from gaia_bench.plugins.reporters.lib.calibration_table import calibration_grid

        grids.append(calibration_grid(board))
    if board.measured:
        grids.append(provenance_grid(board.measured))
    if board.speed and board.measured:
        grids.append(speed_grid(board.speed, board.measured.table))
    if board.references:
        grids += [main_grid(board.references, "references", board.interval, reference=True),
                  err_grid(board.references, "references-err")]
        grids[-1].title = f"Reference error-rate reduction vs {board.references.baseline}"
    if board.conflicts:
        grids.append(conflict_grid(board))
    return grids


def summary_lines(board: Leaderboard) -> list[str]:
    """What a reader needs before the tables: scope, duplicates, conflicts, the rebuild command."""
    lines = [f"suite {board.suite}; main table at shots {board.shots}; {len(board.records)} results measured here"]
    if board.identical_duplicates:
        lines.append(f"{board.identical_duplicates} identical duplicate record(s) across sources were counted once")
    if board.conflicts:
        lines.append(f"{len(board.conflicts)} conflicting duplicate(s): see the conflicts table")
    for ref in board.reference_sets:
        src = ref.get("source", {})
        lines.append(f"reference rows ({ref.get('label', ref.get('name'))}): {src.get('repo')} {src.get('file')} "
                     f"@ {src.get('commit')}, table '{src.get('table')}' (published numbers, not measured here)")
    if board.prediction_problems:
        first = next(iter(board.prediction_problems.values()))
        lines.append(f"{len(board.prediction_problems)} result(s) with stored predictions that could not be read "
                     f"(first: {first}); their cells use the seed-level intervals")
    if board.rebuild:
        lines.append(f"rebuild: `{board.rebuild}`")
    return lines
