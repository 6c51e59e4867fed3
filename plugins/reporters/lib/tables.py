"""The leaderboard (:mod:`gaia_bench.plugins.reporters.lib.leaderboard`) as display grids: header, grouped columns, text
cells with sort values, notes; with the labels, number formats and notes every format shares.

Markdown, LaTeX and HTML render the same grids, so every format shows the same numbers with the
same marks (↓ for lower-is-better, ★ for the Pareto front) and the same notes (formulas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gaia_bench.plugins.reporters.lib.leaderboard import Cell, Column, DataEfficiency, Leaderboard, MainTable, Section, SpeedAccuracy

TASK_LABELS = {"classification": "CLS", "detection": "DET", "segmentation": "SEG", "depth": "DEPTH"}
ERR_FORMULA = (
    "error-rate reduction of an init = (err_base - err_init) / err_base, averaged over the datasets of a task "
    "type where both exist, paired by (model, adaptation, dataset, shots); err = 100 - score for "
    "higher-is-better metrics (scores in %), err = the metric itself for lower-is-better metrics (e.g. RMSE, MR)"
)
STD_NOTE = "mean ± sample standard deviation (ddof=1) over seeds; n = number of seeds"
LOWER_MARK = "↓"
FRONT_MARK = "★"
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


def fmt_cell(cell: Cell | None) -> str:
    """``mean`` for one seed, ``mean ± std (n=k)`` for several."""
    if cell is None:
        return "-"
    if cell.n == 1:
        return fmt_number(cell.mean)
    return f"{fmt_number(cell.mean)} ± {fmt_std(cell.std or 0.0)} (n={cell.n})"


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


def main_grid(section: Section, grid_id: str, reference: bool = False) -> Grid:
    table: MainTable = section.table
    columns = ([GridColumn("reference", "reference")] if reference else []) + _key_columns("model", "init", "adaptation")
    columns += [GridColumn(c.key, column_label(c), task_label(c.task), True, c.higher_is_better) for c in table.columns]
    for task in table.tasks:
        better = table.task_direction(task)
        columns.append(GridColumn(f"mean:{task}", f"{task_label(task)} mean" + ("" if better else f" {LOWER_MARK}"),
                                  "mean", True, better))
    rows = []
    for row in table.rows:
        cells = []
        if reference:
            sources = {f"{p.get('label', p.get('set'))} @{str(p.get('commit', ''))[:7]}"
                       for cell in row.cells.values() for p in cell.provenance}
            cells.append(GridCell(", ".join(sorted(sources)) or "reference"))
        cells += _text(*row.key)
        cells += [_num(row.cells[c].mean, fmt_cell(row.cells[c])) if c in row.cells else GridCell("-")
                  for c in table.columns]
        for task in table.tasks:
            mean = row.task_means.get(task)
            if mean is None:
                cells.append(GridCell("-"))
            else:
                count = "" if mean.n_datasets == mean.of else f" ({mean.n_datasets}/{mean.of})"
                cells.append(_num(mean.value, fmt_number(mean.value) + count))
        rows.append(cells)
    what = f"reference results ({section.name})" if reference else "results measured here"
    notes = [f"{what}; shots {table.shots}; each cell is the dataset's primary metric, {STD_NOTE}",
             f"{LOWER_MARK} marks lower-is-better metrics", TASK_MEAN_NOTE]
    return Grid(grid_id, f"{'Reference' if reference else 'Main'} table ({table.shots})", columns, rows, notes)


def err_grid(section: Section, grid_id: str) -> Grid:
    tasks = section.table.tasks
    columns = _key_columns("init", "model", "adaptation", "baseline")
    columns += [GridColumn(f"err:{t}", task_label(t), "ERR %", True) for t in tasks]
    rows = []
    for err in section.err:
        cells = _text(err.init, err.model, err.adaptation, err.baseline)
        for task in tasks:
            pct, pairs = err.percent(task), err.pairs.get(task, [])
            cells.append(_num(pct, f"{pct:.1f} (n={len(pairs)})") if pct is not None else GridCell("-"))
        rows.append(cells)
    notes = [ERR_FORMULA, f"baseline init: {section.baseline}; shots {section.table.shots}; "
             "n = paired datasets; model 'all' pools every paired model and adaptation of an init"]
    if not rows:
        notes.append(f"no init other than the baseline ({section.baseline}) shares a model and adaptation with it")
    return Grid(grid_id, f"Error-rate reduction vs {section.baseline}", columns, rows, notes)


def efficiency_grid(eff: DataEfficiency) -> Grid:
    columns = _key_columns("model", "init", "adaptation", "dataset", "metric")
    columns += [GridColumn(f"shots:{s}", s, "shots", True) for s in eff.shots]
    rows = []
    for row in eff.rows:
        metric = row.column.metric + ("" if row.column.higher_is_better else f" {LOWER_MARK}")
        cells = _text(*row.key, row.column.dataset, metric)
        cells += [_num(row.cells[s].mean, fmt_cell(row.cells[s])) if s in row.cells else GridCell("-") for s in eff.shots]
        rows.append(cells)
    notes = ["primary metric at every shots setting (fractions ascending, then k per class); " + STD_NOTE]
    return Grid("efficiency", "Data efficiency", columns, rows, notes)


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
        versions = "; ".join(f"{v['source']}: {fmt_number(v['primary_value'])}" for v in c.versions)
        rows.append(_text(c.job_id, str(cfg.get("model")), str(cfg.get("init")), str(cfg.get("dataset")),
                          str(cfg.get("shots")), str(cfg.get("seed")), c.kept, versions))
    notes = ["same job id, different metrics in different sources: reported, never averaged; "
             "the tables use the first source's record"]
    return Grid("conflicts", "Conflicting duplicates", columns, rows, notes)


def leaderboard_grids(board: Leaderboard) -> list[Grid]:
    """Every table of the leaderboard, in page order."""
    grids = []
    if board.measured:
        grids += [main_grid(board.measured, "main"), err_grid(board.measured, "err")]
    if board.efficiency.rows:
        grids.append(efficiency_grid(board.efficiency))
    if board.speed and board.measured:
        grids.append(speed_grid(board.speed, board.measured.table))
    if board.references:
        grids += [main_grid(board.references, "references", reference=True), err_grid(board.references, "references-err")]
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
    if board.rebuild:
        lines.append(f"rebuild: `{board.rebuild}`")
    return lines
