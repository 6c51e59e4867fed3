"""`gaia-bench compare` without I/O: two groups of records paired into cells, each row's statistics
from arrays, Holm over the rows, verdicts, and the rendered report.

A row is one dataset (and shots, adaptation, model, ... when those vary): the records of side A and
side B that agree on every field except the ones ``--a`` and ``--b`` set to different values, one
pair per seed. Pairing is what makes the tests strong: both sides saw the same test items and, per
seed, the same training subset.

Which test decides a row's verdict (one test per row, chosen before looking at the data):

* one seed, stored predictions, top-1 classification: McNemar's exact test on the test items;
* one seed, stored predictions, any other metric: the paired bootstrap over test items;
* several seeds, stored predictions: the larger p-value of the hierarchical paired bootstrap
  (seeds × test items: it carries both the test-set and the seed-to-seed variation) and the paired
  t-test across seeds. The bootstrap alone is optimistic with few seeds: resampling 3 seeds
  underestimates their variance by a third and has 10 distinct draws, where the t distribution
  with 2 degrees of freedom widens the interval by the right amount. (Identical differences on
  every seed leave the t-test undefined: then the bootstrap alone.)
* no stored predictions (records from before the prediction store), several seeds: the paired
  t-test across seeds; one seed: no test, "not distinguishable".

The p-values of the deciding tests are Holm-adjusted over the rows; a row is "A better" or "B better"
when its adjusted p-value is below alpha, in the direction of its metric, else "not distinguishable".
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaia_bench.errors import DataError, UsageError
from gaia_bench.shots import parse_shot
from gaia_bench.plugins.reporters.lib.leaderboard import shot_order
from gaia_bench.plugins.reporters.lib.statistics import (
    McNemar,
    PairedT,
    holm,
    paired_bootstrap,
    paired_t,
    seeds_for_power,
)
from gaia_bench.plugins.reporters.lib.tables import fmt_number

PAIR_FIELDS = ("model", "init", "adaptation", "dataset", "task", "shots", "seed", "precision")
SAME_TEST_FIELDS = ("dataset_version", "protocol")  # two records with different values saw different items
ALIASES = {"adapt": "adaptation"}  # the name of `run`'s option
HP_PREFIX = "hp."  # hp.NAME selects by a resolved hyper-parameter (e.g. tsds hp.mode=random)
ROW_ORDER = ("model", "adaptation", "shots", "dataset")  # what varies fastest comes last

TEST_MCNEMAR = "McNemar exact"
TEST_ITEMS = "bootstrap over items"
TEST_SEEDS_ITEMS = "bootstrap over seeds × items"
TEST_SEEDS_BOTH = "bootstrap over seeds × items and paired t, the larger p"
TEST_T = "paired t over seeds"
TEST_NONE = "none"
INTERVAL_T = "t interval over seeds"
MAX_SEEDS = 1000  # --power: more than this is reported as "> 1000"
POWER = 0.8
A_BETTER, B_BETTER, SAME = "A better", "B better", "not distinguishable"


# ---------------------------------------------------------------- which records


@dataclass(frozen=True)
class Sides:
    """``--a`` / ``--b`` as filters: ``differing`` fields are set to different values on the two
    sides (the comparison); every other field given filters both sides alike."""

    a: dict[str, str]
    b: dict[str, str]
    shared: dict[str, str]
    differing: tuple[str, ...]

    def label(self, side: str) -> str:
        values = self.a if side == "a" else self.b
        return ",".join(f"{f}={values[f]}" for f in self.differing if f in values)


def parse_side(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``FIELD=VALUE`` items, repeated or comma-separated, into one value per field."""
    hint = (f"e.g. {flag} init=imagenet; fields: {', '.join(PAIR_FIELDS)}, {HP_PREFIX}NAME (a hyper-parameter); "
            "values may use * wildcards")
    parsed: dict[str, str] = {}
    for value in values or []:
        for part in value.split(","):
            name, sep, wanted = (s.strip() for s in part.partition("="))
            name = ALIASES.get(name, name)
            if not sep or not name or not wanted:
                raise UsageError(f"{flag} '{part}' is not FIELD=VALUE", hint)
            if name not in PAIR_FIELDS and not (name.startswith(HP_PREFIX) and len(name) > len(HP_PREFIX)):
                raise UsageError(f"{flag} cannot select by '{name}'", hint)
            if name in parsed and parsed[name] != wanted:
                raise UsageError(f"{flag} sets {name} twice ({parsed[name]}, {wanted})",
                                 f"give one value per field; compare two values with {flag} {name}=X and the other side {name}=Y")
            parsed[name] = normal_value(name, wanted)
    if not parsed:
        raise UsageError(f"{flag} selects nothing", hint)
    return parsed


def normal_value(name: str, value: str) -> str:
    """A shots value as the store writes it (``0.1`` -> ``10%``); other values as given."""
    return parse_shot(value).label if name == "shots" and "*" not in value else value


def split_sides(a: Mapping[str, str], b: Mapping[str, str]) -> Sides:
    """Which fields the comparison is about (set differently on both sides) and which filter both."""
    hps = sorted({f for f in (*a, *b) if f.startswith(HP_PREFIX)})
    # A hyper-parameter named on one side only selects that side: the other side's adaptation may
    # not have it (tsds hp.mode=random against finetune).
    def differs(f: str) -> bool:
        return a[f] != b[f] if f in a and f in b else f in hps

    differing = tuple(f for f in (*PAIR_FIELDS, *hps) if (f in a or f in b) and differs(f))
    if not differing:
        raise UsageError("--a and --b select the same results",
                         "give one field different values on the two sides, e.g. --a init=imagenet --b init=gaia")
    shared = {f: v for side in (a, b) for f, v in side.items() if f not in differing}
    return Sides({f: a[f] for f in differing if f in a}, {f: b[f] for f in differing if f in b}, shared, differing)


def field_value(record: Mapping[str, Any], name: str) -> Any:
    """A config field, or with ``hp.NAME`` the job's resolved hyper-parameter (None when it has none:
    an optional one left unset)."""
    config = record.get("config") or {}
    if name.startswith(HP_PREFIX):
        return (config.get("hyperparams") or {}).get(name[len(HP_PREFIX):])
    return (config.get(name) or "fp32") if name == "precision" else config.get(name)  # fp32 cells have none


def matches(record: Mapping[str, Any], filters: Mapping[str, str | Sequence[str]]) -> bool:
    """Every field matches one of its patterns (* wildcards, as the store's filters)."""
    for name, patterns in filters.items():
        raw = field_value(record, name)
        values = {str(raw), json.dumps(raw)} if name.startswith(HP_PREFIX) else {str(raw)}  # hp: True or true
        if not any(fnmatch.fnmatchcase(v, str(p)) for v in values for p in ([patterns] if isinstance(patterns, str) else patterns)):
            return False
    return True


@dataclass
class Pair:
    """One seed of a row: A's and B's record of the same cell."""

    seed: Any
    a: dict
    b: dict


@dataclass
class Group:
    """The records of one row: the fields they share (``key``) and one pair per seed."""

    key: dict[str, Any]
    pairs: list[Pair]

    @property
    def task(self) -> str:
        return str(field_value(self.pairs[0].a, "task"))


@dataclass
class Pairing:
    groups: list[Group]
    only_a: list[dict]  # records of cells that B lacks
    only_b: list[dict]
    paired_on: tuple[str, ...]


def _describe(record: Mapping[str, Any], names: Sequence[str]) -> str:
    return " ".join(f"{n}={field_value(record, n)}" for n in names)


def pair_records(records: Sequence[dict], sides: Sides, common: Mapping[str, Sequence[str]]) -> Pairing:
    """Pair the finished records of A and B on every field but the differing ones.

    ``common`` filters both sides (``--dataset``, ``--shots``, ...). A record on both sides (wildcards
    that overlap) and two records of one side in one cell (e.g. runs with different ``--hp``) are
    errors: either would make the pairing ambiguous.
    """
    paired_on = tuple(f for f in PAIR_FIELDS if f not in sides.differing) + SAME_TEST_FIELDS
    chosen = [r for r in records if r.get("status") == "done" and matches(r, {**sides.shared, **common})]
    side_a = [r for r in chosen if matches(r, sides.a)]
    side_b = [r for r in chosen if matches(r, sides.b)]
    both = {r["job_id"] for r in side_a} & {r["job_id"] for r in side_b}
    if both:
        raise UsageError(f"--a and --b both match job {sorted(both)[0]} ({len(both)} jobs in all)",
                         "make the two sides' values exclusive (check * wildcards)")
    cells: list[dict[tuple, dict]] = []
    for flag, side in (("--a", side_a), ("--b", side_b)):
        by_key: dict[tuple, dict] = {}
        for record in side:
            key = tuple(field_value(record, f) for f in paired_on)
            if key in by_key:
                raise UsageError(f"{flag} has two results for one cell ({_describe(record, paired_on)}: jobs "
                                 f"{by_key[key]['job_id']} and {record['job_id']}, e.g. different --hp)",
                                 f"narrow {flag} with FIELD=VALUE, or keep such runs in separate --store files")
            by_key[key] = record
        cells.append(by_key)
    by_a, by_b = cells
    grouped: dict[tuple, Group] = {}
    group_fields = [f for f in paired_on if f != "seed"]
    for key, rec_a in by_a.items():
        if key not in by_b:
            continue
        gkey = {f: field_value(rec_a, f) for f in group_fields}
        group = grouped.setdefault(tuple(gkey.values()), Group(gkey, []))
        group.pairs.append(Pair(field_value(rec_a, "seed"), rec_a, by_b[key]))
    groups = sorted(grouped.values(), key=_row_order)
    for group in groups:
        group.pairs.sort(key=lambda p: (str(type(p.seed)), p.seed))
    return Pairing(groups, [r for k, r in by_a.items() if k not in by_b], [r for k, r in by_b.items() if k not in by_a],
                   paired_on)


def _row_order(group: Group) -> tuple:
    out: list[Any] = []
    for name in ROW_ORDER:
        value = group.key.get(name)
        out.append(shot_order(str(value)) if name == "shots" and value is not None else str(value))
    return tuple(out) + tuple(str(v) for v in group.key.values())


# ---------------------------------------------------------------- statistics of a row


@dataclass
class ItemLevel:
    """A row's per-item data: ``a[s, r]``, ``b[s, r]``: the metric of seed s on item resample r (the
    same resamples for both sides and every seed); McNemar per seed for classification, else empty."""

    a: np.ndarray
    b: np.ndarray
    mcnemar: list[McNemar] = field(default_factory=list)


@dataclass
class Row:
    key: dict[str, Any]
    metric: str
    higher_is_better: bool
    seeds: list[Any]
    differences: list[float]  # A - B per seed
    a_mean: float
    b_mean: float
    difference: float  # mean over seeds of A - B on the full test set
    low: float
    high: float
    interval: str  # what the interval resamples, or "" when there is none
    mcnemar: list[McNemar]
    t: PairedT
    test: str
    p: float
    p_holm: float = math.nan
    verdict: str = SAME
    seeds_needed: int | None = None  # --power; None with power_checked: more than MAX_SEEDS
    power_checked: bool = False

    @property
    def sd_of_differences(self) -> float:
        """Seed-to-seed standard deviation of A - B (ddof 1); NaN with one seed."""
        return float(np.std(self.differences, ddof=1)) if len(self.differences) > 1 else math.nan


def _metric_of(group: Group) -> tuple[str, bool]:
    metrics = {(r.get("primary_metric"), bool(r.get("higher_is_better", True))) for p in group.pairs for r in (p.a, p.b)}
    if len(metrics) != 1:
        raise DataError(f"the results for {_describe(group.pairs[0].a, list(group.key))} have different primary "
                        f"metrics ({', '.join(sorted(str(m) for m, _ in metrics))})",
                        "compare results of one dataset version (narrow --a/--b or --store)")
    return metrics.pop()


def row_statistics(group: Group, items: ItemLevel | None, level: float = 0.95, seed: int = 0) -> Row:
    """A row's difference, interval and tests; ``items`` None: seed-level statistics only."""
    metric, higher = _metric_of(group)
    a_values = np.array([p.a["primary_value"] for p in group.pairs], dtype=float)
    b_values = np.array([p.b["primary_value"] for p in group.pairs], dtype=float)
    difference = float(np.mean(a_values - b_values))
    t = paired_t(a_values, b_values, level)
    n_seeds = len(group.pairs)
    if items is not None:
        if items.a.shape[0] != n_seeds:
            raise ValueError(f"item-level data for {items.a.shape[0]} seeds, the row has {n_seeds}")
        boot = paired_bootstrap(items.a, items.b, seed=seed, level=level, observed=difference)
        low, high = boot.low, boot.high
        interval = TEST_SEEDS_ITEMS if n_seeds > 1 else TEST_ITEMS
        if n_seeds == 1 and group.task == "classification" and metric == "top1" and items.mcnemar:
            test, p = TEST_MCNEMAR, items.mcnemar[0].p_value
        elif n_seeds > 1 and not math.isnan(t.p_value):
            test, p = TEST_SEEDS_BOTH, max(boot.p_value, t.p_value)
        else:
            test, p = interval, boot.p_value
        mcnemar = list(items.mcnemar)
    else:
        low, high = t.low, t.high
        interval = INTERVAL_T if n_seeds > 1 and not math.isnan(t.low) else ""
        test, p = (TEST_T, t.p_value) if n_seeds > 1 else (TEST_NONE, math.nan)
        mcnemar = []
    return Row(dict(group.key), metric, higher, [p.seed for p in group.pairs], (a_values - b_values).tolist(),
               float(np.mean(a_values)), float(np.mean(b_values)), difference, low, high, interval, mcnemar, t, test, p)


def decide(rows: Sequence[Row], alpha: float) -> None:
    """Holm over the rows' deciding p-values, then each row's verdict at ``alpha``."""
    for row, adjusted in zip(rows, holm([r.p for r in rows])):
        row.p_holm = float(adjusted)
        if not adjusted < alpha:  # NaN (no test) included
            row.verdict = SAME
        else:
            row.verdict = A_BETTER if (row.difference > 0) == row.higher_is_better else B_BETTER


def add_power(rows: Sequence[Row], delta: float, alpha: float) -> None:
    """Seeds a paired t-test needs to detect ``delta`` at each row's observed seed-to-seed sd."""
    for row in rows:
        sd = row.sd_of_differences
        if math.isnan(sd):
            continue
        row.power_checked = True
        row.seeds_needed = seeds_for_power(sd, delta, alpha, POWER, MAX_SEEDS)


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    sides: Sides
    pairing: Pairing
    rows: list[Row]
    level: float
    alpha: float
    resamples: int
    seed: int
    delta: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Key fields that vary between rows (shown per row); the others are said once above."""
        names = [n for n in self.rows[0].key if n not in SAME_TEST_FIELDS] if self.rows else []
        varying = [n for n in names if len({str(r.key[n]) for r in self.rows}) > 1 and n != "task"]
        return ["dataset"] + [n for n in varying if n != "dataset"]

    def constant_fields(self) -> dict[str, Any]:
        shown = set(self.columns) | {"task", *SAME_TEST_FIELDS}
        return {n: v for n, v in (self.rows[0].key.items() if self.rows else ())
                if n not in shown and (n, v) != ("precision", "fp32")}  # the default goes without saying


def fmt_p(p: float) -> str:
    """Two significant digits, at most 6 characters; the verdict lines say which side of alpha."""
    if math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def _decimals(row: Row) -> int:
    """As the scores: two decimals on a scale of tens (%), three below (RMSE 0.456)."""
    return 2 if max(abs(row.a_mean), abs(row.b_mean)) >= 10 else 3


def _fmt_diff(value: float, decimals: int) -> str:
    return "-" if math.isnan(value) else ("+" if value >= 0 else "−") + f"{abs(value):.{decimals}f}"


def _fmt_interval(row: Row) -> str:
    d = _decimals(row)
    return "-" if math.isnan(row.low) else f"[{_fmt_diff(row.low, d)}, {_fmt_diff(row.high, d)}]"


def _fmt_mcnemar(row: Row, alpha: float) -> str:
    if not row.mcnemar:
        return "-"
    if len(row.mcnemar) == 1:
        return fmt_p(row.mcnemar[0].p_value)
    return f"{sum(m.p_value < alpha for m in row.mcnemar)}/{len(row.mcnemar)}"


def _fmt_seeds_needed(row: Row) -> str:
    if not row.power_checked:
        return "-"
    return f">{MAX_SEEDS}" if row.seeds_needed is None else str(row.seeds_needed)


def _name(row: Row, columns: Sequence[str]) -> list[str]:
    out = [str(row.key.get(c)) for c in columns]
    out[0] += "" if row.higher_is_better else " ↓"
    return out


def table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells of the report's table, shared by the terminal and markdown; the McNemar
    and t-test columns only when some row has that test."""
    with_mcnemar = any(r.mcnemar for r in report.rows)
    with_t = any(len(r.seeds) > 1 for r in report.rows)
    headers = [*report.columns, "A", "B", "A−B", f"{_pct(report.level)} CI", *["McNemar"] * with_mcnemar,
               *["t-test"] * with_t, "Holm p", *([] if report.delta is None else [f"seeds Δ{report.delta:g}"])]
    rows = []
    for row in report.rows:
        cells = [*_name(row, report.columns), fmt_number(row.a_mean), fmt_number(row.b_mean), _fmt_diff(row.difference, _decimals(row)),
                 _fmt_interval(row), *[_fmt_mcnemar(row, report.alpha)] * with_mcnemar,
                 *[fmt_p(row.t.p_value)] * with_t, fmt_p(row.p_holm), *[_fmt_seeds_needed(row)] * (report.delta is not None)]
        rows.append(cells)
    return headers, rows


def _pct(level: float) -> str:
    return f"{level * 100:.10g}%"


def title_lines(report: Report) -> list[str]:
    """What is compared, on what, and with how many seeds, above the table."""
    fixed = [str(v) for v in report.constant_fields().values() if v is not None]
    seeds = sorted({len(r.seeds) for r in report.rows})
    fixed.append(f"{seeds[0]} seed{'s' * (seeds[0] != 1)}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]} seeds")
    paired_on = [f for f in report.pairing.paired_on if f not in (*SAME_TEST_FIELDS, "task")]
    return [f"A: {report.sides.label('a')}   B: {report.sides.label('b')}   ({' · '.join(fixed)})",
            f"paired on {', '.join(paired_on)}"]


def verdict_lines(report: Report) -> list[str]:
    """One line per row: the verdict, the test that decided it and its Holm-adjusted p-value."""
    lines = []
    for row in report.rows:
        name = " ".join(_name(row, report.columns))
        if row.test == TEST_NONE:
            lines.append(f"{name}: {row.verdict} (no test: one seed, no stored predictions)")
        else:
            p = fmt_p(row.p_holm)
            lines.append(f"{name}: {row.verdict} (Holm p {'< 0.001' if p.startswith('<') else '= ' + p}; {row.test})")
    return lines


def note_lines(report: Report) -> list[str]:
    """How to read the table, cells left out, and rows without item-level data, one line each."""
    intervals = list(dict.fromkeys(("paired percentile " if r.interval != INTERVAL_T else "") + r.interval
                                   for r in report.rows if r.interval))
    resampled = any(r.interval in (TEST_ITEMS, TEST_SEEDS_ITEMS) for r in report.rows)
    lines = [f"A−B: mean over seeds of the primary metric's difference (↓: lower is better); {_pct(report.level)} CI: "
             + ("; ".join(intervals) or "none (one seed, no stored predictions)")
             + (f" ({report.resamples} resamples, seed {report.seed})" if resampled else "") + "."]
    tests = ["McNemar: exact test of top-1 on the test items (several seeds: how many have p < "
             f"{report.alpha:g})"] * any(r.mcnemar for r in report.rows)
    tests += ["t-test: paired across seeds"] * any(len(r.seeds) > 1 for r in report.rows)
    lines.append("; ".join(tests + [f"Holm p: the deciding test's p-value, Holm-adjusted over {len(report.rows)} "
                                    f"rows; verdicts at alpha {report.alpha:g}."]))
    if report.delta is not None:
        lines.append(f"seeds Δ{report.delta:g}: seeds a paired t-test needs to detect a difference of "
                     f"{report.delta:g} (power {POWER:g}, alpha {report.alpha:g}) at the observed "
                     "seed-to-seed sd of A−B.")
    only_a, only_b = report.pairing.only_a, report.pairing.only_b
    if only_a or only_b:
        names = [f for f in report.pairing.paired_on if f not in (*SAME_TEST_FIELDS, "task")]
        lines.append(f"not compared: {len(only_a)} cells only in A, {len(only_b)} only in B "
                     f"(e.g. {_describe((only_a or only_b)[0], names)}).")
    return lines + report.notes


def render_text(report: Report, markdown: bool) -> str:
    from tabulate import tabulate

    headers, rows = table(report)
    body = tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple", disable_numparse=True)
    bullet = "- " if markdown else ""
    parts = [*title_lines(report), "", body, "", *[bullet + v for v in verdict_lines(report)], "",
             *[bullet + n for n in note_lines(report)]]
    return "\n".join(parts) + "\n"


def _json_number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def row_dict(row: Row) -> dict[str, Any]:
    return {
        **row.key, "metric": row.metric, "higher_is_better": row.higher_is_better, "seeds": row.seeds,
        "a": row.a_mean, "b": row.b_mean, "difference": row.difference,
        "ci_low": _json_number(row.low), "ci_high": _json_number(row.high), "interval": row.interval,
        "mcnemar": [{"seed": s, "b01": m.b01, "b10": m.b10, "p": m.p_value} for s, m in zip(row.seeds, row.mcnemar)],
        "paired_t": {"t": _json_number(row.t.t), "p": _json_number(row.t.p_value), "n": row.t.n},
        "sd_of_differences": _json_number(row.sd_of_differences),
        "test": row.test, "p": _json_number(row.p), "p_holm": _json_number(row.p_holm), "verdict": row.verdict,
        **({"seeds_needed": row.seeds_needed, "seeds_needed_more_than": MAX_SEEDS if row.seeds_needed is None else None}
           if row.power_checked else {}),
    }


def render_json(report: Report) -> str:
    doc = {
        "a": report.sides.a, "b": report.sides.b, "filters": report.sides.shared,
        "paired_on": list(report.pairing.paired_on), "level": report.level, "alpha": report.alpha,
        "resamples": report.resamples, "seed": report.seed, "power_delta": report.delta,
        "only_a": len(report.pairing.only_a), "only_b": len(report.pairing.only_b),
        "rows": [row_dict(r) for r in report.rows], "notes": note_lines(report),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render_csv(report: Report) -> str:
    """One line per row; McNemar as ``b01:b10:p`` per seed, separated by spaces."""
    out = io.StringIO()
    dicts = [row_dict(r) for r in report.rows]
    for d in dicts:
        d["seeds"] = " ".join(str(s) for s in d["seeds"])
        d["mcnemar"] = " ".join(f"{m['b01']}:{m['b10']}:{m['p']:.6g}" for m in d["mcnemar"])
        t = d.pop("paired_t")
        d["t"], d["t_p"] = t["t"], t["p"]
    names = list(dict.fromkeys(k for d in dicts for k in d))
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dicts)
    return out.getvalue()
