"""`gaia-bench select` without I/O: which candidates, each one's measured latency and transfer score,
the speed/accuracy Pareto front, and the recommendation under a latency budget.

A candidate is a backbone × init × input size (GAIA's "family of models of different speed and
accuracy"). Its latency is measured on the target device, not estimated from FLOPs (SM-NAS: the
model with the fewest FLOPs need not be the fastest). Its score is an ordinary result of the runner
(k-NN or a linear probe on cached features), so intervals and comparisons are the leaderboard's:
the cell interval of :mod:`.uncertainty`, and "not distinguishable from the best" as `gaia-bench
compare` decides it (paired on seeds and test items, Holm over the candidates compared).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gaia_bench.errors import UsageError
from gaia_bench.plugins.reporters.lib.leaderboard import Cell, Column, MainTable, Row, column_of, pareto_front
from gaia_bench.plugins.reporters.lib.uncertainty import DrawsOf, annotate_cells, mark_column
from gaia_bench.predictions import LEVEL

# Families of widths and depths tried when --candidates is not given; only those whose weights for
# the init are on this machine are used (tf_efficientnet_lite0-2 ship as pip packages).
DEFAULT_CANDIDATES = (
    "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "tf_efficientnet_lite3",
    "tf_efficientnet_lite4", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "mobilenetv3_small_050", "mobilenetv3_small_075", "mobilenetv3_small_100", "mobilenetv3_large_075",
    "mobilenetv3_large_100", "resnet18", "resnet26", "resnet34", "resnet50",
)
WILDCARDS = "*?["


def weights_here(backbone: Any, init: Any) -> bool:
    """Whether ``init`` can initialize ``backbone`` from this machine alone: its published weights
    for that init are on disk, or the init needs no weights at all (``random``)."""
    ref = backbone.published_weights.get(init.name)
    if ref is not None:
        return ref.locate() is not None
    return init.pretrain is None and init.supports(backbone)


def pattern_names(backbones: Any, pattern: str) -> list[str]:
    """Backbone names matching ``pattern`` as a bare name resolves: the single specs and the default
    zoo (the highest precedence); ``SOURCE:pattern`` matches that zoo's names."""
    source, sep, bare = pattern.rpartition(":")
    if sep:
        catalog = next((c for c in backbones.catalogs if c.source == source), None)
        if catalog is None:
            raise UsageError(f"--candidates {pattern}: no backbone zoo '{source}'",
                             "zoos: " + ", ".join(c.source for c in backbones.catalogs))
        return [f"{source}:{n}" for n in catalog.names() if fnmatch.fnmatchcase(n, bare)]
    top = max((c.precedence for c in backbones.catalogs), default=0)
    names = [s.name for s in backbones.single_specs()]
    names += [n for c in backbones.catalogs if c.precedence == top for n in c.names()]
    return sorted({n for n in names if fnmatch.fnmatchcase(n, pattern)})


def resolve_candidates(registries: Any, items: Sequence[str], init: Any) -> tuple[list[Any], list[str]]:
    """Backbone specs of ``--candidates`` (names, or patterns: :func:`pattern_names`),
    and the names left out because their weights are not here. Names given exactly are kept as
    they are (their job then says what is missing); patterns and the default families keep only the
    backbones whose weights are here."""
    names = [n.strip() for item in items for n in item.split(",") if n.strip()] or list(DEFAULT_CANDIDATES)
    exact = bool(items)
    chosen: dict[str, Any] = {}
    skipped: list[str] = []
    for name in names:
        if any(c in name for c in WILDCARDS):
            matched = pattern_names(registries.backbones, name)
            if not matched:
                raise UsageError(f"--candidates {name} matches no backbone",
                                 "see `gaia-bench models PATTERN` (SOURCE:PATTERN for a zoo other than timm)")
            for spec in (registries.backbones.get(n) for n in matched):
                if weights_here(spec, init):
                    chosen[spec.name] = spec
                else:
                    skipped.append(spec.name)
            continue
        if not exact and not registries.backbones.providers(name):
            continue  # a default family member no installed zoo has
        spec = registries.backbones.get(name)  # unknown: "did you mean"
        if exact or weights_here(spec, init):
            chosen[spec.name] = spec
        else:
            skipped.append(spec.name)
    return list(chosen.values()), list(dict.fromkeys(skipped))


@dataclass
class Candidate:
    """One backbone × init × input size: its profile, its score over seeds and where it stands."""

    model: str
    init: str
    input_size: int
    profile: dict | None = None
    job_ids: list[str] = field(default_factory=list)  # its scoring jobs, one per seed
    cell: Cell | None = None  # the scores (None: no job finished)
    errors: list[str] = field(default_factory=list)
    within_budget: bool = False
    on_front: bool = False
    finetuned: Cell | None = None  # --finetune-top: the fine-tuned scores

    @property
    def label(self) -> str:
        return f"{self.model} @{self.input_size}"

    @property
    def latency(self) -> float:
        return float(self.profile["latency_ms"]) if self.profile else math.inf


def fastest(candidates: Sequence[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: c.latency)


def fill_cells(candidates: Sequence[Candidate], records: dict[str, dict | None], attribute: str = "cell",
               jobs_of: Callable[[Candidate], list[str]] = lambda c: c.job_ids) -> None:
    """Each candidate's cell (``attribute``) from the finished records of its jobs; errors kept."""
    for candidate in candidates:
        cell = Cell()
        for job_id in jobs_of(candidate):
            record = records.get(job_id)
            if record is None:
                continue
            if record.get("status") == "done":
                cell.add(record)
            else:
                candidate.errors.append(str(record.get("error")))
        setattr(candidate, attribute, cell if cell.n else None)


def rank(candidates: Sequence[Candidate], attribute: str, draws_of: DrawsOf) -> list[Candidate]:
    """Intervals of the cells in ``attribute``, then the candidates within the budget ranked best
    first, the best marked ``best`` and those not distinguishable from it ``tied`` (compare's
    paired test, Holm over them)."""
    scored = [c for c in candidates if getattr(c, attribute) is not None]
    annotate_cells([getattr(c, attribute) for c in scored], draws_of)
    eligible = [c for c in scored if c.within_budget]
    if not eligible:
        return []
    column = column_of(getattr(eligible[0], attribute).records[0])
    sign = 1.0 if column.higher_is_better else -1.0
    ordered = sorted(eligible, key=lambda c: (-sign * getattr(c, attribute).mean, c.latency))
    rows = [Row((c.label, c.init, getattr(c, attribute).configs[0]["adaptation"]), {column: getattr(c, attribute)})
            for c in ordered]
    mark_column(MainTable(getattr(ordered[0], attribute).configs[0]["shots"], [column], rows), column, draws_of)
    return ordered


def mark_front(candidates: Sequence[Candidate]) -> None:
    """Pareto front over every scored candidate (within the budget or not): latency against score."""
    scored = [c for c in candidates if c.cell is not None and c.profile is not None]
    if not scored:
        return
    higher = column_of(scored[0].cell.records[0]).higher_is_better
    for candidate, flag in zip(scored, pareto_front([(c.latency, c.cell.mean) for c in scored], higher)):
        candidate.on_front = flag


# ---------------------------------------------------------------- text


def metric_of(candidates: Sequence[Candidate]) -> Column | None:
    cell = next((c.cell for c in candidates if c.cell is not None), None)
    return column_of(cell.records[0]) if cell is not None else None


def fmt_score(cell: Cell | None) -> str:
    if cell is None:
        return "failed"
    half = f" ±{cell.interval.half_width:.2f}" if cell.interval is not None else ""
    return f"{cell.mean:.2f}{half}"


MARKS = {"best": "best", "tied": "≈best"}  # a cell's mark (uncertainty.mark_column) as the tables show it


def notes_of(candidate: Candidate) -> str:
    """``best`` / ``≈best``, ``★`` (on the front), ``over``: where the candidate stands."""
    marks = (MARKS.get(candidate.cell.mark, "") if candidate.cell else "", "★" if candidate.on_front else "",
             "" if candidate.within_budget else "over")
    return " ".join(m for m in marks if m)


def table_rows(candidates: Sequence[Candidate]) -> list[list[str]]:
    """One row per candidate, fastest first: model, px, ms, GFLOPs, M params, score, notes."""
    rows = []
    for c in sorted(candidates, key=lambda c: (c.latency, c.label)):
        p = c.profile or {}
        rows.append([c.model, str(c.input_size), f"{c.latency:.2f}" if p else "-",
                     f"{p['gflops_per_image']:.3g}" if p else "-", f"{p['params'] / 1e6:.2f}" if p else "-",
                     fmt_score(c.cell), notes_of(c)])
    return rows


def finetune_rows(ranked: Sequence[Candidate]) -> list[list[str]]:
    """One row per fine-tuned candidate, best first: model, px, ms, probe score, fine-tuned score, mark."""
    return [[c.model, str(c.input_size), f"{c.latency:.2f}", fmt_score(c.cell), fmt_score(c.finetuned),
             MARKS.get(c.finetuned.mark, "") if c.finetuned else ""] for c in ranked]


def _versus(cell: Cell) -> str:
    v = cell.versus_best or {}
    p = v.get("p_holm")
    return f"{v.get('test', 'no test')}, Holm p {'-' if p is None else f'{p:.2g}'}"


def _interval(cell: Cell) -> str:
    i = cell.interval
    return f"{cell.mean:.2f} [{i.low:.2f}, {i.high:.2f}]" if i is not None else f"{cell.mean:.2f} (no interval)"


def recommendation_lines(ranked: Sequence[Candidate], attribute: str, metric: str, batch: int,
                         what: str = "recommended") -> list[str]:
    """The best candidate within the budget with its interval, and the runner-up when the two are
    not distinguishable."""
    if not ranked:
        return [f"{what}: none (no candidate within the budget has a finished result)"]
    best, cell = ranked[0], getattr(ranked[0], attribute)
    lines = [f"{what}: {best.label} px, {best.init}: {metric} {_interval(cell)} "
             f"({LEVEL * 100:g}% CI), {best.latency:.2f} ms per batch of {batch}"]
    if len(ranked) > 1:
        second, other = ranked[1], getattr(ranked[1], attribute)
        if other.mark == "tied":
            lines.append(f"runner-up, not distinguishable from it: {second.label} px: {metric} {_interval(other)}, "
                         f"{second.latency:.2f} ms ({_versus(other)})")
        else:
            lines.append(f"the runner-up ({second.label} px, {other.mean:.2f}) is worse ({_versus(other)})")
    return lines


# ---------------------------------------------------------------- files


def _cell_dict(cell: Cell | None) -> dict | None:
    if cell is None:
        return None
    interval = cell.interval
    return {"mean": cell.mean, "seeds": [cfg.get("seed") for cfg in cell.configs], "job_ids": cell.record_ids,
            "ci_low": interval.low if interval else None, "ci_high": interval.high if interval else None,
            "interval": interval.method if interval else None, "mark": cell.mark, "versus_best": cell.versus_best}


def report_json(candidates: Sequence[Candidate], settings: dict, recommendation: list[str]) -> str:
    """Everything the command printed, with each candidate's full profile and result ids."""
    doc = {**settings, "recommendation": recommendation, "candidates": [
        {"model": c.model, "init": c.init, "input_size": c.input_size, "within_budget": c.within_budget,
         "on_front": c.on_front, "latency_ms": c.profile and c.profile["latency_ms"], "profile": c.profile,
         "score": _cell_dict(c.cell), "finetuned": _cell_dict(c.finetuned), "errors": c.errors}
        for c in sorted(candidates, key=lambda c: (c.latency, c.label))]}
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def plot(candidates: Sequence[Candidate], budget_ms: float, metric: str, title: str) -> bytes | None:
    """Score (with its interval) against measured latency; the Pareto front joined, the budget as a
    vertical line, the recommended candidate circled."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [c for c in candidates if c.cell is not None and c.profile is not None]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for inside, color, label in ((True, "tab:blue", "within budget"), (False, "tab:gray", "over budget")):
        group = [c for c in scored if c.within_budget == inside]
        if group:
            low = [c.cell.mean - c.cell.interval.low if c.cell.interval else 0.0 for c in group]
            high = [c.cell.interval.high - c.cell.mean if c.cell.interval else 0.0 for c in group]
            ax.errorbar([c.latency for c in group], [c.cell.mean for c in group], yerr=[low, high], fmt="o",
                        color=color, capsize=3, label=label)
    front = sorted((c.latency, c.cell.mean) for c in scored if c.on_front)
    ax.step([x for x, _ in front], [y for _, y in front], where="post", color="tab:red", alpha=0.6, label="Pareto front")
    best = [c for c in scored if c.cell.mark == "best"]
    if best:
        ax.scatter([best[0].latency], [best[0].cell.mean], s=260, facecolors="none", edgecolors="tab:green",
                   linewidths=2, label="recommended", zorder=3)
    for c in scored:
        ax.annotate(c.label, (c.latency, c.cell.mean), textcoords="offset points", xytext=(5, 4), fontsize=7)
    slowest = max(c.latency for c in scored)
    if budget_ms <= 2 * slowest:  # a budget far right of every candidate would squash them into one column
        ax.axvline(budget_ms, color="tab:orange", linestyle="--", label=f"budget {budget_ms:g} ms")
    else:
        title += f" (budget {budget_ms:g} ms, off the right edge)"
    if slowest / max(min(c.latency for c in scored), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency, median ms per batch (lower is better)")
    ax.set_ylabel(f"{metric} (mean, {LEVEL * 100:g}% CI)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
