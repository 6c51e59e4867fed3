"""Leaderboard aggregation: pure functions over stored result records (no torch, no I/O).

Records from several stores are merged (identical duplicates dropped, conflicting ones reported),
grouped into cells (model × init × adaptation × dataset at one shots setting, over seeds), and
summarized: per-task-type means, the error-rate reduction of every init against a baseline init
(the way INTERN reports its gains over CLIP-R50x16), data efficiency over shots, and the
speed/accuracy Pareto front against measured latency.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from gaia_bench.errors import UsageError
from gaia_bench.records import prefer
from gaia_bench.shots import parse_shot

if TYPE_CHECKING:
    import numpy as np

    from gaia_bench.plugins.reporters.lib.resampling import RecordDraws

TASK_ORDER = ("classification", "detection", "segmentation", "depth")
DEFAULT_SHOTS = "10%"  # GV-B's protocol: the main table's setting when several are equally common


def _task_rank(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def shot_order(record_or_label: dict | str) -> tuple[int, float]:
    """Sort key of a shots setting: fractions ascending, then k-shot (k/class) ascending."""
    if isinstance(record_or_label, dict):
        shots = record_or_label.get("shots") or {}
        fraction, per_class = shots.get("fraction"), shots.get("per_class")
        if fraction is None and per_class is None:
            return shot_order(record_or_label["config"]["shots"])
    else:
        spec = parse_shot(record_or_label)
        fraction, per_class = spec.fraction, spec.per_class
    return (0, float(fraction)) if per_class is None else (1, float(per_class))


# --------------------------------------------------------------------------- merging stores
@dataclass
class Conflict:
    """Records with one job id but different results, found in different sources."""

    job_id: str
    config: dict
    kept: str  # the source whose record the tables use (the first given)
    versions: list[dict] = field(default_factory=list)  # {source, status, primary_value, metrics}


@dataclass
class Merged:
    records: list[dict]
    identical_duplicates: int
    conflicts: list[Conflict]
    origins: dict[str, str] = field(default_factory=dict)  # job id -> the source its kept record came from


def numeric_summary(record: dict) -> str | None:
    """``AMD EPYC, AVX512, 2 threads``: the CPU, ATen's kernel level, the training's threads and any
    variable that overrode the kernels, from the record's ``environment.numerics`` (README
    "Reproducibility": what makes two machines differ in the last bits); None for an older record."""
    numerics = (record.get("environment") or {}).get("numerics")
    if not numerics:
        return None
    threads = ((record.get("details") or {}).get("numerics") or {}).get("threads", numerics.get("threads"))
    return ", ".join([str(numerics.get("cpu")), str(numerics.get("aten_capability")), f"{threads} threads",
                      *(f"{k}={v}" for k, v in (numerics.get("variables") or {}).items())])


def _version(source: str, record: dict) -> dict:
    return {"source": source, "status": record.get("status"), "primary_value": record.get("primary_value"),
            "metrics": record.get("metrics"), "numerics": numeric_summary(record)}


def merge_sources(sources: Sequence[tuple[str, Iterable[dict]]]) -> Merged:
    """Merge records from several sources by job id.

    Identical duplicates are dropped and a finished record replaces a failed attempt
    (:func:`gaia_bench.records.prefer`); two finished records with different metrics are a
    conflict: the first source's record is kept and both versions are reported, never averaged.
    """
    kept: dict[str, dict] = {}
    origin: dict[str, str] = {}
    conflicts: dict[str, Conflict] = {}
    identical = 0
    for source, records in sources:
        for record in records:
            job_id = record["job_id"]
            old = kept.get(job_id)
            verdict = prefer(old, record)
            if verdict == "new":
                kept[job_id], origin[job_id] = record, source
            elif verdict == "same":
                identical += 1
            elif verdict == "conflict" and record.get("status") == "done":  # two failed attempts are no conflict
                conflict = conflicts.get(job_id)
                if conflict is None:
                    conflict = conflicts[job_id] = Conflict(job_id, old["config"], origin[job_id],
                                                            [_version(origin[job_id], old)])
                conflict.versions.append(_version(source, record))
    return Merged(list(kept.values()), identical, list(conflicts.values()), origin)


def _record_order(record: dict) -> tuple:
    cfg = record["config"]
    return (*(str(cfg.get(k)) for k in ("model", "init", "adaptation", "dataset", "shots")),
            cfg.get("seed") if isinstance(cfg.get("seed"), int) else -1, record["job_id"])


def usable(records: Iterable[dict]) -> list[dict]:
    """Finished records that carry a primary value, in one fixed order (so seeds list the same way
    whichever store or file they came from), each labelled with its setting where that matters
    (see :func:`label_settings`)."""
    done = [r for r in records if r.get("status") == "done" and isinstance(r.get("primary_value"), (int, float))]
    return label_settings(sorted(done, key=_record_order))


# What defines a result besides its cell (model, init, adaptation, dataset, shots) and its seed.
SETTING_KEYS = ("image_size", "weights_id", "protocol")


def _setting(record: dict) -> dict[str, object]:
    cfg = record["config"]
    flat = {key: cfg.get(key) for key in SETTING_KEYS}
    flat.update({key: value for key, value in sorted((cfg.get("hyperparams") or {}).items())})
    return flat


def _show(value: object) -> str:
    if value is None:
        return "-"  # the key is not in that record's config
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 24 else text[:21] + "..."


def _show_setting(key: str, value: object) -> str:
    """Weights by what they are and a hash that tells them apart (published vs imitation); the rest by value."""
    from gaia_bench.plugins.reporters.lib.provenance import short_id

    return short_id(value) if key == "weights_id" and isinstance(value, str) else _show(value)


def label_settings(records: list[dict]) -> list[dict]:
    """Seeds of one setting are averaged; different settings never are. Where the records of one
    (model, init, adaptation, task) were run with more than one setting (image size, weights,
    hyper-parameters: e.g. `--hp budget=0` next to the defaults), each record gets a ``setting``
    label naming its values of the keys that differ, and becomes a row of its own."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        cfg = record["config"]
        groups.setdefault((*row_key(record), cfg.get("task")), []).append(record)
    labelled: dict[int, str] = {}
    for members in groups.values():
        settings = [_setting(r) for r in members]
        distinct = {json.dumps(s, sort_keys=True, default=str) for s in settings}
        if len(distinct) < 2:
            continue
        keys = sorted({k for s in settings for k in s})
        differing = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in settings}) > 1]
        labels = [", ".join(f"{k}={_show_setting(k, setting.get(k))}" for k in differing) for setting in settings]
        meaning: dict[str, set[str]] = defaultdict(set)
        for label, setting in zip(labels, settings):
            meaning[label].add(json.dumps(setting, sort_keys=True, default=str))
        if any(len(m) > 1 for m in meaning.values()):  # shortened too far: two settings would share a row
            labels = [", ".join(f"{k}={json.dumps(setting.get(k), sort_keys=True, default=str)}" for k in differing)
                      for setting in settings]
        for record, label in zip(members, labels):
            labelled[id(record)] = label
    return [{**r, "setting": labelled[id(r)]} if id(r) in labelled else r for r in records]


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Column:
    """One dataset column: its task type and primary metric (with direction)."""

    dataset: str
    task: str
    metric: str
    higher_is_better: bool

    @property
    def key(self) -> str:
        return f"{self.dataset}:{self.metric}"


# The leaderboard's statistics (:mod:`.uncertainty`)
SEED = 0  # the resamples' seed: the core's, so a one-seed cell's interval is its record's
ALPHA = 0.05  # the not-distinguishable marks, after Holm
KIND_ITEMS = "items"  # one seed: the bootstrap over test items (the record's own interval)
KIND_SEEDS_ITEMS = "seeds×items"  # several seeds: bootstrap over seeds × test items (stored predictions)
KIND_T = "t"  # several seeds without stored predictions: Student t over seeds


@dataclass(frozen=True)
class CellInterval:
    """A cell's confidence interval of its mean, and what kind it is (``KIND_*``)."""

    low: float
    high: float
    kind: str
    method: str  # in words, with its level and resamples

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass
class Cell:
    """One (row, column) result: the primary value of every seed, with where each came from."""

    values: list[float] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    configs: list[dict] = field(default_factory=list)
    provenance: list[dict] = field(default_factory=list)  # reference values only: where each was published
    records: list[dict] = field(default_factory=list, repr=False)
    # Filled in by :mod:`.uncertainty`: the interval, the bootstrap distribution of the mean (None:
    # nothing to resample), the column mark ("best", "tied" or "") and the test against the best row.
    interval: CellInterval | None = None
    draws: np.ndarray | None = field(default=None, repr=False)
    mark: str = ""
    versus_best: dict | None = None
    conflicts: list[str] = field(default_factory=list)  # its seeds' job ids that another source has other values for

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None for a single seed."""
        return statistics.stdev(self.values) if self.n > 1 else None

    def add(self, record: dict) -> None:
        self.values.append(float(record["primary_value"]))
        self.record_ids.append(record["job_id"])
        self.configs.append(record["config"])
        self.records.append(record)
        if "reference" in record:
            self.provenance.append(record["reference"])


RowKey = tuple[str, str, str]  # (model, init, adaptation)


def row_key(record: dict) -> RowKey:
    """(model, init, adaptation); the adaptation carries the record's setting label and a precision
    other than fp32 (``finetune [bf16]``: another cell, never averaged with the fp32 one), if any."""
    cfg = record["config"]
    adaptation = str(cfg.get("adaptation"))
    if labels := [str(label) for label in (record.get("setting"), cfg.get("precision")) if label]:
        adaptation = f"{adaptation} [{', '.join(labels)}]"
    return (str(cfg.get("model")), str(cfg.get("init")), adaptation)


def column_of(record: dict) -> Column:
    cfg = record["config"]
    return Column(str(cfg.get("dataset")), str(cfg.get("task") or "unknown"), str(record.get("primary_metric")),
                  bool(record.get("higher_is_better", True)))


def order_columns(columns: Iterable[Column], dataset_order: Sequence[str] = ()) -> list[Column]:
    """Task types in CLS, DET, SEG, DEPTH order; datasets in suite order, then by name."""
    position = {name: i for i, name in enumerate(dataset_order)}
    return sorted(set(columns), key=lambda c: (_task_rank(c.task), position.get(c.dataset, len(position)),
                                               c.dataset, c.metric))


@dataclass
class TaskMean:
    """The mean of a row's dataset means within one task type.

    When a task type mixes directions (e.g. mAP and MR for detection) only its higher-is-better
    datasets are averaged, since averaging a score with an error is meaningless."""

    value: float
    n_datasets: int
    of: int  # datasets of this task type in the table
    higher_is_better: bool


@dataclass
class Row:
    key: RowKey
    cells: dict[Column, Cell] = field(default_factory=dict)
    task_means: dict[str, TaskMean] = field(default_factory=dict)


@dataclass
class MainTable:
    shots: str
    columns: list[Column]
    rows: list[Row]

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.columns))

    def task_columns(self, task: str) -> list[Column]:
        return [c for c in self.columns if c.task == task]

    def task_direction(self, task: str) -> bool:
        """Whether the task-type mean is higher-is-better (False only if every dataset is lower-is-better)."""
        return any(c.higher_is_better for c in self.task_columns(task))


def _task_means(row: Row, table_columns: list[Column]) -> dict[str, TaskMean]:
    by_task: dict[str, list[Column]] = defaultdict(list)
    for column in table_columns:
        by_task[column.task].append(column)
    means = {}
    for task, columns in by_task.items():
        higher = any(c.higher_is_better for c in columns)
        counted = [c for c in columns if c.higher_is_better == higher]
        present = [row.cells[c].mean for c in counted if c in row.cells]
        if present:
            means[task] = TaskMean(statistics.fmean(present), len(present), len(counted), higher)
    return means


def _rank_key(row: Row, tasks: list[str]) -> tuple:
    """Rows ranked by their first task type's mean (best first), then by name."""
    for task in tasks:
        if task in row.task_means:
            mean = row.task_means[task]
            return (0, -mean.value if mean.higher_is_better else mean.value, row.key)
    return (1, 0.0, row.key)


def build_main_table(records: Iterable[dict], shots: str, dataset_order: Sequence[str] = ()) -> MainTable:
    """Rows model × init × adaptation, one column per dataset, cells over seeds at ``shots``."""
    rows: dict[RowKey, Row] = {}
    columns: set[Column] = set()
    for record in records:
        if record["config"].get("shots") != shots:
            continue
        column = column_of(record)
        columns.add(column)
        row = rows.setdefault(row_key(record), Row(row_key(record)))
        row.cells.setdefault(column, Cell()).add(record)
    ordered = order_columns(columns, dataset_order)
    for row in rows.values():
        row.task_means = _task_means(row, ordered)
    tasks = list(dict.fromkeys(c.task for c in ordered))
    return MainTable(shots, ordered, sorted(rows.values(), key=lambda r: _rank_key(r, tasks)))


def most_common_shots(records: Sequence[dict]) -> str | None:
    """The shots setting with the most records; ties go to GV-B's 10%, else to the smaller setting."""
    counts = Counter(r["config"].get("shots") for r in records)
    if not counts:
        return None
    order = {r["config"].get("shots"): shot_order(r) for r in records}
    return min(counts, key=lambda s: (-counts[s], s != DEFAULT_SHOTS, order[s]))


# --------------------------------------------------------------------------- error-rate reduction
def error_rate(value: float, higher_is_better: bool) -> float:
    """GV-B/INTERN error: 100 − score for a higher-is-better score in %, the metric itself otherwise."""
    return 100.0 - value if higher_is_better else value


def reduction(err_base: float, err_init: float) -> float:
    """Relative error-rate reduction, a fraction (0.25 = 25% fewer errors than the baseline)."""
    return (err_base - err_init) / err_base


@dataclass(frozen=True)
class Pair:
    model: str
    adaptation: str
    dataset: str
    metric: str
    err_base: float
    err_init: float

    @property
    def reduction(self) -> float:
        return reduction(self.err_base, self.err_init)


@dataclass
class ErrRow:
    """Mean error-rate reduction of ``init`` over ``baseline``, per task type, in percent."""

    init: str
    model: str  # "all" for the pooled row of an init
    adaptation: str
    baseline: str
    pairs: dict[str, list[Pair]] = field(default_factory=dict)  # task -> paired datasets
    cells: dict[str, list[tuple[Cell, Cell, bool]]] = field(default_factory=dict, repr=False)  # (baseline, init, higher) per pair
    intervals: dict[str, CellInterval | None] = field(default_factory=dict)  # task -> its interval (:mod:`.uncertainty`)

    def percent(self, task: str) -> float | None:
        pairs = self.pairs.get(task)
        return 100.0 * statistics.fmean(p.reduction for p in pairs) if pairs else None


def error_rate_reductions(table: MainTable, baseline: str) -> list[ErrRow]:
    """One row per (init, model, adaptation) with a baseline row of the same model and adaptation,
    plus a pooled row per init (model "all") when it was paired under several models/adaptations.
    A dataset whose baseline error is 0 cannot be reduced relatively and is left out."""
    rows = {r.key: r for r in table.rows}
    detailed: list[ErrRow] = []
    for (model, init, adaptation), row in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        base = rows.get((model, baseline, adaptation))
        if init == baseline or base is None:
            continue
        err_row = ErrRow(init, model, adaptation, baseline)
        for column in table.columns:
            if column in row.cells and column in base.cells:
                e_base = error_rate(base.cells[column].mean, column.higher_is_better)
                if e_base == 0:
                    continue
                e_init = error_rate(row.cells[column].mean, column.higher_is_better)
                err_row.pairs.setdefault(column.task, []).append(
                    Pair(model, adaptation, column.dataset, column.metric, e_base, e_init))
                err_row.cells.setdefault(column.task, []).append(
                    (base.cells[column], row.cells[column], column.higher_is_better))
        if err_row.pairs:
            detailed.append(err_row)
    out: list[ErrRow] = []
    for init in dict.fromkeys(r.init for r in detailed):
        mine = [r for r in detailed if r.init == init]
        if len(mine) > 1:
            pooled = ErrRow(init, "all", "all", baseline)
            for r in mine:
                for task, pairs in r.pairs.items():
                    pooled.pairs.setdefault(task, []).extend(pairs)
                    pooled.cells.setdefault(task, []).extend(r.cells[task])
            out.append(pooled)
        out.extend(mine)
    return out


# --------------------------------------------------------------------------- data efficiency
@dataclass
class EfficiencyRow:
    key: RowKey
    column: Column
    cells: dict[str, Cell] = field(default_factory=dict)  # shots label -> cell


@dataclass
class DataEfficiency:
    shots: list[str]  # ordered: fractions ascending, then k-shot
    rows: list[EfficiencyRow]


def data_efficiency(records: Iterable[dict], dataset_order: Sequence[str] = ()) -> DataEfficiency:
    """The primary metric of every (model, init, adaptation, dataset) at every shots setting."""
    rows: dict[tuple[RowKey, Column], EfficiencyRow] = {}
    order: dict[str, tuple[int, float]] = {}
    for record in records:
        label = record["config"].get("shots")
        order[label] = shot_order(record)
        key, column = row_key(record), column_of(record)
        row = rows.setdefault((key, column), EfficiencyRow(key, column))
        row.cells.setdefault(label, Cell()).add(record)
    columns = order_columns({c for _, c in rows}, dataset_order)
    ranked = sorted(rows.values(), key=lambda r: (columns.index(r.column), r.key))
    return DataEfficiency(sorted(order, key=order.__getitem__), ranked)


# --------------------------------------------------------------------------- speed / accuracy
def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[bool]:
    """For (latency, accuracy) points: True where no other point is at least as fast and at least as
    accurate while strictly better in one of the two (lower latency, better accuracy)."""
    sign = 1.0 if higher_is_better else -1.0
    flags = []
    for i, (lat_i, acc_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i and sign * acc_j >= sign * acc_i and (lat_j < lat_i or sign * acc_j > sign * acc_i)
            for j, (lat_j, acc_j) in enumerate(points) if j != i
        )
        flags.append(not dominated)
    return flags


def pick_profile(profiles: Sequence[dict], model: str, input_size: int | None = None) -> dict | None:
    """The latest profile of ``model``, preferring those measured at the results' input size, and in
    float32 and the default layout (a `profile --precision`/`--channels-last` sweep is another mode)."""
    from gaia_bench.plugins.reporters.lib.profiles import PRECISION

    mine = [p for p in profiles if p.get("model") == model]
    if plain := [p for p in mine if p.get("precision", PRECISION) == PRECISION and not p.get("channels_last")]:
        mine = plain
    if input_size is not None and any(p.get("input_size") == input_size for p in mine):
        mine = [p for p in mine if p.get("input_size") == input_size]
    return max(mine, key=lambda p: p.get("measured_at", ""), default=None)


@dataclass
class SpeedRow:
    key: RowKey
    profile: dict | None
    task_means: dict[str, TaskMean]
    on_front: dict[str, bool] = field(default_factory=dict)  # task -> on that task's Pareto front


@dataclass
class SpeedAccuracy:
    tasks: list[str]
    rows: list[SpeedRow]


def _input_size(row: Row) -> int | None:
    sizes = {cfg.get("image_size") for cell in row.cells.values() for cfg in cell.configs}
    return sizes.pop() if len(sizes) == 1 else None


def speed_accuracy(table: MainTable, profiles: Sequence[dict]) -> SpeedAccuracy:
    """Each row's task-type means beside its model's measured latency; Pareto front per task type."""
    rows = [SpeedRow(r.key, pick_profile(profiles, r.key[0], _input_size(r)), r.task_means) for r in table.rows]
    for task in table.tasks:
        measured = [r for r in rows if r.profile is not None and task in r.task_means]
        points = [(float(r.profile["latency_ms"]), r.task_means[task].value) for r in measured]
        for r, flag in zip(measured, pareto_front(points, table.task_direction(task))):
            r.on_front[task] = flag
    return SpeedAccuracy(table.tasks, rows)


# --------------------------------------------------------------------------- the whole leaderboard
@dataclass
class Section:
    """The tables of one kind of rows: results measured here, or published references."""

    name: str  # "measured" or a reference set's label
    table: MainTable
    baseline: str | None
    err: list[ErrRow]


INTERVALS = ("ci", "std")  # what a cell's ± shows: half its confidence interval, or the std over seeds


@dataclass
class Leaderboard:
    title: str
    suite: str
    shots: str
    measured: Section | None
    references: Section | None
    efficiency: DataEfficiency
    speed: SpeedAccuracy | None
    conflicts: list[Conflict]
    identical_duplicates: int
    records: list[dict]  # the measured records the tables were built from
    profiles: list[dict]
    reference_sets: list[dict]
    rebuild: str = ""
    interval: str = "ci"
    long_tail: Any = None  # :class:`.long_tail.LongTail` of the measured main table
    efficiency_analysis: Any = None  # :class:`.efficiency.EfficiencyAnalysis`
    # set by the command from its StoredDraws: job id -> why its predictions went unused / the file its draws came from
    prediction_problems: dict[str, str] = field(default_factory=dict)
    prediction_files: dict[str, Path] = field(default_factory=dict)
    calibration: bool = False  # set by the command (--calibration): add the calibration table


def _pick_baseline(inits: list[str], requested: str | None) -> str | None:
    if requested in inits:
        return requested
    if "imagenet" in inits:
        return "imagenet"
    return inits[0] if inits else None


def _section(name: str, records: list[dict], shots: str, dataset_order: Sequence[str], baseline: str | None) -> Section:
    table = build_main_table(records, shots, dataset_order)
    chosen = _pick_baseline(sorted({r.key[1] for r in table.rows}), baseline)
    return Section(name, table, chosen, error_rate_reductions(table, chosen) if chosen else [])


def build_leaderboard(
    merged: Merged,
    *,
    suite: str,
    dataset_order: Sequence[str] = (),
    references: Sequence[dict] = (),
    reference_sets: Sequence[dict] = (),
    profiles: Sequence[dict] = (),
    shots: str | None = None,
    baseline: str | None = None,
    title: str | None = None,
    interval: str = "ci",
    draws: Callable[[dict], RecordDraws | None] | None = None,
) -> Leaderboard:
    """Everything the output formats show.

    Measured records outside ``dataset_order`` (the suite's datasets, when given) are left out;
    ``references`` (records of published values, with a ``reference`` block) keep their own
    datasets and get a section of their own, with their own baseline when ``baseline`` is not
    among their inits. ``interval``: what the cells' ± shows (:data:`INTERVALS`); ``draws``: a
    record's primary metric on the shared item resamples, from its stored predictions
    (:class:`.resampling.StoredDraws`), None without.
    """
    from gaia_bench.plugins.reporters.lib.efficiency import analyse
    from gaia_bench.plugins.reporters.lib.long_tail import long_tail
    from gaia_bench.plugins.reporters.lib.uncertainty import annotate_cells, annotate_reductions, annotate_table, no_draws

    if interval not in INTERVALS:
        raise UsageError(f"--interval {interval} is not one of {', '.join(INTERVALS)}",
                         "ci: half the width of the confidence interval; std: the standard deviation over seeds")
    measured = usable(merged.records)
    if dataset_order:
        wanted = set(dataset_order)
        measured = [r for r in measured if r["config"].get("dataset") in wanted]
    refs = usable(references)
    if not measured and not refs:
        raise UsageError(f"no finished results for the datasets of suite '{suite}'",
                         f"run some first (`gaia-bench run --suite {suite}`), or pass --store / --import")
    both = [*measured, *refs]
    known_inits = sorted({str(r["config"].get("init")) for r in both})
    if baseline is not None and baseline not in known_inits:
        raise UsageError(f"--baseline {baseline}: no result has that init", "choose one of: " + ", ".join(known_inits))
    chosen_shots = shots or most_common_shots(measured) or most_common_shots(refs)
    if not any(r["config"].get("shots") == chosen_shots for r in both):
        present = sorted({r["config"].get("shots") for r in both}, key=shot_order)
        raise UsageError(f"--shots {chosen_shots}: no result at that setting", "choose one of: " + ", ".join(present))
    mine = _section("measured", measured, chosen_shots, dataset_order, baseline) if measured else None
    ref_order = [d["name"] for s in reference_sets for d in s.get("datasets", [])]
    label = " + ".join(s.get("label", s.get("name", "reference")) for s in reference_sets) or "reference"
    theirs = _section(label, refs, chosen_shots, ref_order, baseline) if refs else None
    if theirs:
        annotate_reductions(theirs.err)  # published single numbers: the bootstrap over datasets alone
    speed = speed_accuracy(mine.table, profiles) if mine else None
    used_profiles = list({id(r.profile): r.profile for r in speed.rows if r.profile}.values()) if speed else []
    draws_of = draws or no_draws
    if prepare := getattr(draws_of, "prepare", None):  # StoredDraws: every record's draws in one pass
        prepare(measured)
    if mine:
        annotate_table(mine.table, draws_of, mine.err)
    efficiency = data_efficiency(measured, dataset_order)
    annotate_cells([c for row in efficiency.rows for c in row.cells.values()], draws_of)
    if conflicted := {c.job_id for c in merged.conflicts}:  # the cells built on them say so
        for row in [*(mine.table.rows if mine else []), *efficiency.rows]:
            for cell in row.cells.values():
                cell.conflicts = [job_id for job_id in cell.record_ids if job_id in conflicted]
    return Leaderboard(
        title=title or f"gaia-bench leaderboard: {suite} suite",
        suite=suite,
        shots=chosen_shots,
        measured=mine if mine and mine.table.rows else None,
        references=theirs if theirs and theirs.table.rows else None,
        efficiency=efficiency,
        speed=speed,
        conflicts=merged.conflicts,
        identical_duplicates=merged.identical_duplicates,
        records=measured,
        profiles=used_profiles,
        reference_sets=list(reference_sets),
        interval=interval,
        long_tail=long_tail(mine.table) if mine else None,
        efficiency_analysis=analyse(efficiency, mine.baseline if mine else None),
    )
