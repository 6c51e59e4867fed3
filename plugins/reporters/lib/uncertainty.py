"""The leaderboard's uncertainty: every cell's interval, the rows of a column that are not
distinguishable from its best row, and the interval of each error-rate reduction.

Every statistic is `gaia-bench compare`'s (:mod:`.statistics`, :mod:`.comparison`): a cell of one
seed takes its record's bootstrap interval over test items; a cell of several seeds the
bootstrap over seeds × test items from the stored predictions (the same item draws for every
record of a test split, so cells are paired by construction), else Student's t over seeds. A
column's rows are compared with its best row exactly as compare compares two groups, Holm over
the rows compared in that column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gaia_bench.plugins.reporters.lib.leaderboard import (
    ALPHA,
    KIND_ITEMS,
    KIND_SEEDS_ITEMS,
    KIND_T,
    SEED,
    Cell,
    CellInterval,
    Column,
    ErrRow,
    MainTable,
    error_rate,
)
from gaia_bench.plugins.reporters.lib.resampling import RecordDraws
from gaia_bench.plugins.reporters.lib.statistics import mcnemar_exact, mean_t_interval, percentile_interval, seed_item_means
from gaia_bench.predictions import LEVEL, RESAMPLES

if TYPE_CHECKING:
    from gaia_bench.plugins.reporters.lib.comparison import ItemLevel
    from gaia_bench.plugins.reporters.lib.comparison import Pair as SeedPair

DrawsOf = Callable[[dict], "RecordDraws | None"]


def no_draws(record: dict) -> RecordDraws | None:
    """For records read without their stores (no stored predictions to resample)."""
    return None


def _stored_interval(record: dict) -> CellInterval | None:
    """A record's own interval of its primary metric (records since the prediction store)."""
    stored = record.get("interval") or {}
    bounds = (stored.get("metrics") or {}).get(record.get("primary_metric"))
    if not bounds or any(b is None for b in bounds):
        return None
    method = (f"{stored.get('method', 'bootstrap')}, {_pct(stored.get('level', LEVEL))}, "
              f"{stored.get('resamples', '?')} resamples, seed {stored.get('seed', '?')}")
    return CellInterval(float(bounds[0]), float(bounds[1]), KIND_ITEMS, method)


def _pct(level: float) -> str:
    return f"{float(level) * 100:.10g}%"


def item_draws(cell: Cell, draws_of: DrawsOf) -> np.ndarray | None:
    """Seeds × resamples: each seed's value on the shared item resamples, when every seed of the
    cell has stored predictions scored on the same test items; else None."""
    draws = [draws_of(r) for r in cell.records]
    if not draws or any(d is None for d in draws) or len({d.items for d in draws}) != 1:
        return None
    return np.stack([d.values for d in draws])


def mean_draws(cell: Cell, draws_of: DrawsOf) -> np.ndarray | None:
    """The bootstrap distribution of the cell's mean: over seeds × test items with stored
    predictions, over seeds alone without them; None for one seed without predictions."""
    per_seed = item_draws(cell, draws_of)
    if per_seed is None:
        if cell.n < 2:
            return None
        per_seed = np.repeat(np.asarray(cell.values, dtype=float)[:, None], RESAMPLES, axis=1)
    return seed_item_means(per_seed, SEED)


def cell_interval(cell: Cell, draws_of: DrawsOf) -> CellInterval | None:
    """The cell's interval (see the module docstring); None: one seed with no stored interval."""
    if cell.n == 1:
        stored = _stored_interval(cell.records[0]) if cell.records else None
        if stored is not None:
            return stored
    per_seed = item_draws(cell, draws_of)
    if per_seed is not None:
        low, high = percentile_interval(seed_item_means(per_seed, SEED), LEVEL)
        kind = KIND_ITEMS if cell.n == 1 else KIND_SEEDS_ITEMS
        return CellInterval(low, high, kind, f"percentile bootstrap over {'seeds × ' * (cell.n > 1)}test items, "
                            f"{_pct(LEVEL)}, {per_seed.shape[1]} resamples, seed {SEED}")
    if cell.n > 1:
        low, high = mean_t_interval(cell.values, LEVEL)
        return CellInterval(low, high, KIND_T, f"Student t interval of the mean over seeds, {_pct(LEVEL)}")
    return None


def annotate_cells(cells: Sequence[Cell], draws_of: DrawsOf) -> None:
    """Give every cell its interval and the bootstrap distribution of its mean."""
    for cell in cells:
        if cell.provenance:  # published numbers: nothing to resample
            continue
        cell.interval = cell_interval(cell, draws_of)
        cell.draws = mean_draws(cell, draws_of)


# --------------------------------------------------------------------------- not distinguishable from the best
def _by_seed(cell: Cell) -> dict[Any, dict]:
    out: dict[Any, dict] = {}
    for record in cell.records:
        out.setdefault(record["config"].get("seed"), record)
    return out


def _item_level(pairs: Sequence[SeedPair], draws_of: DrawsOf) -> ItemLevel | None:
    """compare's item-level data of one row (best vs another row), when every record has draws of one test split."""
    from gaia_bench.plugins.reporters.lib.comparison import ItemLevel

    a = [draws_of(p.a) for p in pairs]
    b = [draws_of(p.b) for p in pairs]
    both = a + b
    if any(d is None for d in both) or len({d.items for d in both}) != 1:
        return None
    mcnemar = [mcnemar_exact(x.correct, y.correct) for x, y in zip(a, b)
               if x.correct is not None and y.correct is not None]
    return ItemLevel(np.stack([d.values for d in a]), np.stack([d.values for d in b]), mcnemar)


def mark_column(table: MainTable, column: Column, draws_of: DrawsOf, alpha: float = ALPHA) -> None:
    """The column's best row (by mean, in the metric's direction) gets mark ``best``; every other row
    is compared with it as `gaia-bench compare --a BEST --b ROW` would (paired on seeds, the same
    deciding test), Holm over those rows, and gets ``tied`` when not distinguishable from it."""
    # comparison's table formatting imports this module's constants (through tables): import it here
    from gaia_bench.plugins.reporters.lib.comparison import A_BETTER, B_BETTER, SAME, Group, decide, row_statistics
    from gaia_bench.plugins.reporters.lib.comparison import Pair as SeedPair

    rows = [r for r in table.rows if column in r.cells]
    if not rows:
        return
    sign = 1.0 if column.higher_is_better else -1.0
    best = max(rows, key=lambda r: sign * r.cells[column].mean)  # the first of equals: the ranking's
    best_cell = best.cells[column]
    best_cell.mark = "best"
    best_seeds = _by_seed(best_cell)
    compared, stats = [], []
    for row in rows:
        if row is best:
            continue
        cell = row.cells[column]
        mine = _by_seed(cell)
        shared = sorted((s for s in best_seeds if s in mine), key=lambda s: (str(type(s)), s))
        if not shared:
            cell.versus_best = {"test": "none", "verdict": "not distinguishable", "reason": "no seed in common with the best row"}
            cell.mark = "tied"
            continue
        pairs = [SeedPair(s, best_seeds[s], mine[s]) for s in shared]
        group = Group(dict(zip(("model", "init", "adaptation"), row.key)), pairs)
        compared.append(cell)
        stats.append(row_statistics(group, _item_level(pairs, draws_of), LEVEL, SEED))
    decide(stats, alpha)
    for cell, stat in zip(compared, stats):
        cell.mark = "tied" if stat.verdict == SAME else ""
        cell.versus_best = {"test": stat.test, "seeds": len(stat.seeds), "difference": stat.difference,
                            "p": _number(stat.p), "p_holm": _number(stat.p_holm),
                            "verdict": {A_BETTER: "worse", B_BETTER: "better"}.get(stat.verdict, "not distinguishable")}


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# --------------------------------------------------------------------------- error-rate reduction
def reduction_interval(cells: Sequence[tuple[Cell, Cell, bool]], level: float = LEVEL,
                       seed: int = SEED) -> CellInterval | None:
    """The interval of a mean error-rate reduction (in %) over paired (baseline, init) cells.

    Each resample draws the datasets with replacement (``default_rng([seed, 2])``) and, for every
    drawn dataset, takes both cells' resampled means at that resample (seeds × test items with
    stored predictions, seeds alone without them, the mean itself for one seed without them), so
    the baseline and the init stay paired on the same item and seed draws. None when nothing varies
    (one dataset whose cells have no draws).
    """
    n = len(cells)
    if n == 0 or (n < 2 and all(b.draws is None and i.draws is None for b, i, _ in cells)):
        return None
    reductions = np.empty((n, RESAMPLES))
    for d, (base, init, higher) in enumerate(cells):
        e_base = error_rate(_or_mean(base), higher)
        e_init = error_rate(_or_mean(init), higher)
        with np.errstate(divide="ignore", invalid="ignore"):
            reductions[d] = (e_base - e_init) / e_base
    drawn = np.random.default_rng([seed, 2]).integers(0, n, size=(RESAMPLES, n))
    boot = 100.0 * reductions[drawn, np.arange(RESAMPLES)[:, None]].mean(axis=1)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return None
    low, high = percentile_interval(boot, level)
    return CellInterval(low, high, "datasets", f"percentile bootstrap over datasets and seeds × test items, "
                        f"{_pct(level)}, {RESAMPLES} resamples, seed {seed}")


def _or_mean(cell: Cell) -> np.ndarray:
    return cell.draws if cell.draws is not None else np.full(RESAMPLES, cell.mean)


def annotate_reductions(rows: Sequence[ErrRow]) -> None:
    for row in rows:
        row.intervals = {task: reduction_interval(cells) for task, cells in row.cells.items()}


def annotate_table(table: MainTable, draws_of: DrawsOf, err: Sequence[ErrRow], alpha: float = ALPHA) -> None:
    """Intervals of every cell, the marks of every column, the intervals of the error-rate reductions."""
    annotate_cells([c for r in table.rows for c in r.cells.values()], draws_of)
    for column in table.columns:
        mark_column(table, column, draws_of, alpha)
    annotate_reductions(err)
