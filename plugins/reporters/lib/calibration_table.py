"""Calibration beside accuracy: per main-table cell, the mean over seeds of ECE, NLL and Brier
before and after temperature scaling, and the temperatures, as the records store them
(:mod:`gaia_bench.tasks.types.lib.calibration`); cells whose scores are not probabilities show
"n/a" and the reason their records give. Shown in every cell of leaderboard.json, and as a table
with `gaia-bench leaderboard --calibration`."""

from __future__ import annotations

import statistics
from typing import Sequence

from gaia_bench.plugins.reporters.lib.leaderboard import Cell, Leaderboard
from gaia_bench.plugins.reporters.lib.tables import Grid, GridCell, GridColumn, _key_columns, _num, _text
from gaia_bench.tasks.types.lib.calibration import METRICS, RULE, SCALED

ORDER = tuple(name for pair in zip(METRICS, SCALED) for name in pair)  # ece, ece_ts, nll, nll_ts, ...
LABELS = {"ece": "ECE %", "nll": "NLL", "brier": "Brier"}
MISSING = ("'-' in every column: no calibration stored (results from before it was kept, or adaptations that do not calibrate); "
           "`gaia-bench results rescore --metric ece,nll,brier` adds the first three from stored logits")


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def cell_calibration(cell: Cell) -> dict | None:
    """What a cell's records say about calibration: per metric and for the temperature, the mean,
    std and values over the seeds that have it; or ``n/a`` with the reason; None: nothing stored."""
    reasons = {r.get("details", {}).get("calibration", {}).get("scores") for r in cell.records} - {None, "softmax logits"}
    out: dict = {}
    for name in ORDER:
        values = [v for r in cell.records if name in r.get("metrics", {}) and (v := float(r["metrics"][name])) == v]  # NaN: none
        if values:
            out[name] = _summary(values)
    temperatures = [float(t) for r in cell.records
                    if (t := r.get("details", {}).get("calibration", {}).get("temperature")) is not None]
    if temperatures:
        out["temperature"] = _summary(temperatures)
    if reasons and not out:
        return {"n/a": sorted(reasons)[0]}
    return out or None


def calibration_grid(board: Leaderboard, shown: Sequence[str] = (*ORDER, "temperature")) -> Grid:
    """Rows model x init x adaptation x classification dataset of the measured main table; columns
    ``shown`` (the terminal shows ECE and T only, to fit 80 columns)."""
    columns = _key_columns("model", "init", "adaptation", "dataset")
    for name in (n for n in ORDER if n in shown):
        base = name.removesuffix("_ts")
        columns.append(GridColumn(name, "after TS" if name.endswith("_ts") else "before", LABELS[base], True, False))
    if "temperature" in shown:
        columns.append(GridColumn("temperature", "T", "fitted", True))
    rows, reasons, missing, undetermined = [], {}, False, set()
    table = board.measured.table if board.measured else None
    for row in table.rows if table else []:
        for column in table.columns:
            if column.task != "classification" or column not in row.cells:
                continue
            found = cell_calibration(row.cells[column]) or {}
            cells = _text(*row.key, column.dataset)
            if "n/a" in found:
                reasons[row.key[2]] = found["n/a"]
                cells += [GridCell("n/a") for _ in range(len(columns) - 4)]
            else:
                missing |= not found
                undetermined |= {note for r in row.cells[column].records
                                 if (note := r.get("details", {}).get("calibration", {}).get("temperature_note"))}
                for name in (n for n in (*ORDER, "temperature") if n in shown):
                    value = found.get(name)
                    digits = 1 if name.startswith("ece") else 2 if name == "temperature" else 3
                    cells.append(_num(value["mean"], f"{value['mean']:.{digits}f}") if value else GridCell("-"))
            rows.append(cells)
    notes = [RULE + "; T: the fitted temperature; each the mean over seeds",
             *(f"{adaptation}: {reason}" for adaptation, reason in sorted(reasons.items()))]
    if missing:
        notes.append(MISSING)
    notes += [f"'-' after TS and for T: {note}" for note in sorted(undetermined)]
    if not rows:
        notes.append("no classification results in the main table")
    return Grid("calibration", f"Calibration ({board.shots}): before and after temperature scaling", columns, rows,
                notes)
