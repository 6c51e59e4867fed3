"""Data efficiency as analysis: the area under each row's curve of score against shot fraction,
the smallest fraction at which a row reaches the baseline init's score on 100% of the data, and
whether the ranking of the rows holds from one fraction to another (Kendall's tau with a
bootstrap interval).

Only fraction settings (1%, 10%, 100%) form a curve; k-per-class settings are left out, and so is
0% (zero-shot: no training image, its own row), which has no place on a log axis. The area
is the trapezoid rule over log10 of the fraction, divided by the width of that log range: the
curve's mean score in the metric's own units, where 1%→10% weighs as much as 10%→100% (over a
linear axis the last decade would be 90% of the area). Areas compare only over the same fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from gaia_bench.plugins.reporters.lib.leaderboard import Column, DataEfficiency, EfficiencyRow, RowKey
from gaia_bench.plugins.reporters.lib.statistics import KendallTau, kendall_tau_with_ci
from gaia_bench.predictions import LEVEL
from gaia_bench.shots import parse_shot

FULL = "100%"
ZERO_SHOT_NOTE = "0%: zero-shot (class names and prompt templates, no training image; `--adapt zero-shot`)"
NOT_REACHED = "not reached"
AUC_RULE = ("AUC = trapezoid rule over log10(shot fraction), divided by the log range: the curve's mean score in the "
            "metric's units (1%→10% weighs as much as 10%→100%); fractions only, compared over the same fractions")
REACH_RULE = ("reaches baseline@100% = the smallest fraction whose mean score is at least the baseline init's mean "
              "at 100% of the data (same model, adaptation and dataset; at most, for lower-is-better metrics)")
TAU_RULE = ("Kendall tau-b between the rows' rankings at two fractions (rows present at both), with the "
            f"{LEVEL * 100:g}% percentile bootstrap interval from each cell's resampled mean (seeds × test items with "
            "stored predictions, seeds alone without; the same draws for every row, so rankings stay paired); "
            "mean = the task type's mean over its datasets")


def fraction_of(label: str) -> float | None:
    """A shots label's fraction (``10%`` -> 0.1); None for k per class."""
    spec = parse_shot(label)
    return None if spec.per_class is not None else float(spec.fraction)


@dataclass
class Curve:
    key: RowKey
    column: Column
    fractions: list[str]  # the fraction settings the row has, ascending
    auc: float | None  # None below two fractions
    reach: str | None  # the first fraction reaching the baseline's 100% score, NOT_REACHED, or None (no baseline at 100%)


@dataclass
class RankAgreement:
    task: str
    dataset: str  # a dataset, or "mean" for the task type's mean over its datasets
    shots: tuple[str, str]
    rows: list[RowKey]
    tau: KendallTau  # resamples 0: no interval (a cell with nothing to resample)


@dataclass
class EfficiencyAnalysis:
    baseline: str | None
    curves: list[Curve]
    agreements: list[RankAgreement]


def area(fractions: list[float], scores: list[float]) -> float | None:
    """Mean score over the log10-fraction range by the trapezoid rule; None below two fractions."""
    if len(fractions) < 2:
        return None
    xs = np.log10(np.asarray(fractions, dtype=float))
    ys = np.asarray(scores, dtype=float)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / (xs[-1] - xs[0]))


def _curve(row: EfficiencyRow, fractions: list[str], target: float | None) -> Curve:
    mine = [s for s in fractions if s in row.cells]
    means = [row.cells[s].mean for s in mine]
    reach = None
    if target is not None:
        sign = 1.0 if row.column.higher_is_better else -1.0
        reach = next((s for s, m in zip(mine, means) if sign * m >= sign * target), NOT_REACHED)
    return Curve(row.key, row.column, mine, area([fraction_of(s) for s in mine], means), reach)


def _tau(x: list[float], y: list[float], xr: list[np.ndarray | None], yr: list[np.ndarray | None]) -> KendallTau:
    if any(d is None for d in [*xr, *yr]):
        empty = np.empty((0, len(x)))
        return kendall_tau_with_ci(x, y, empty, empty, LEVEL)
    return kendall_tau_with_ci(x, y, np.stack(xr, axis=1), np.stack(yr, axis=1), LEVEL)


def _agreements(eff: DataEfficiency, fractions: list[str]) -> list[RankAgreement]:
    by_column: dict[Column, dict[RowKey, EfficiencyRow]] = {}
    for row in eff.rows:
        by_column.setdefault(row.column, {})[row.key] = row
    out: list[RankAgreement] = []
    for a, b in combinations(fractions, 2):
        tasks: dict[str, list[Column]] = {}
        for column, rows in by_column.items():
            entries = [k for k, r in rows.items() if a in r.cells and b in r.cells]
            if len(entries) < 2:
                continue
            tasks.setdefault(column.task, []).append(column)
            ca, cb = [rows[k].cells[a] for k in entries], [rows[k].cells[b] for k in entries]
            tau = _tau([c.mean for c in ca], [c.mean for c in cb], [c.draws for c in ca], [c.draws for c in cb])
            out.append(RankAgreement(column.task, column.dataset, (a, b), entries, tau))
        for task, columns in tasks.items():
            same_direction = [c for c in columns if c.higher_is_better == columns[0].higher_is_better]
            common = [k for k in by_column[same_direction[0]]
                      if all(k in by_column[c] and a in by_column[c][k].cells and b in by_column[c][k].cells
                             for c in same_direction)]
            if len(same_direction) < 2 or len(common) < 2:
                continue
            x, y, xr, yr = [], [], [], []
            for key in common:
                for fraction, values, draws in ((a, x, xr), (b, y, yr)):
                    cells = [by_column[c][key].cells[fraction] for c in same_direction]
                    values.append(float(np.mean([c.mean for c in cells])))
                    draws.append(None if any(c.draws is None for c in cells) else np.mean([c.draws for c in cells], axis=0))
            out.append(RankAgreement(task, "mean", (a, b), common, _tau(x, y, xr, yr)))
    return out


def analyse(eff: DataEfficiency, baseline: str | None) -> EfficiencyAnalysis:
    """Curves of every row with two fractions or more and the rank agreements between fractions."""
    fractions = [s for s in eff.shots if fraction_of(s)]  # neither k per class (None) nor 0% (zero-shot)
    keyed = {(r.key, r.column): r for r in eff.rows}
    curves = []
    for row in eff.rows:
        if sum(s in row.cells for s in fractions) < 2:
            continue
        base = keyed.get(((row.key[0], baseline, row.key[2]), row.column)) if baseline else None
        target = base.cells[FULL].mean if base is not None and FULL in base.cells else None
        curves.append(_curve(row, fractions, target))
    return EfficiencyAnalysis(baseline, curves, _agreements(eff, fractions) if len(fractions) > 1 else [])


def fmt_tau(tau: KendallTau) -> str:
    if math.isnan(tau.tau):
        return "-"
    text = f"{tau.tau:+.2f}"
    return text + (f" [{tau.low:+.2f}, {tau.high:+.2f}]" if tau.resamples and not math.isnan(tau.low) else "")
