"""Transfer against pretraining step (what `gaia-bench watch` writes): one curve per dataset ×
adaptation (× shots), each point a checkpoint's cell (its seeds) with the leaderboard's interval
(:func:`~gaia_bench.plugins.reporters.lib.uncertainty.cell_interval`: one seed, the record's own
bootstrap over test items; several, the bootstrap over seeds × test items), as a PNG, a markdown
table (a row per step, a column per curve) and a CSV (a row per point)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Sequence

from gaia_bench.plugins.reporters.lib.leaderboard import Cell
from gaia_bench.plugins.reporters.lib.uncertainty import DrawsOf, cell_interval
from gaia_bench.predictions import LEVEL


@dataclass(frozen=True)
class Checkpoint:
    step: int
    name: str  # the file's name, for the tables


@dataclass
class Curve:
    dataset: str
    adaptation: str
    shots: str
    metric: str
    higher_is_better: bool
    points: dict[Checkpoint, Cell] = field(default_factory=dict)

    def label(self, with_shots: bool) -> str:
        return f"{self.dataset} / {self.adaptation}" + (f" / {self.shots}" if with_shots else "")


def build_curves(evaluated: Sequence[tuple[Checkpoint, Sequence[dict]]], draws_of: DrawsOf) -> list[Curve]:
    """The curves of the finished records of each checkpoint, in order of first appearance; every
    point gets its interval."""
    curves: dict[tuple[str, str, str], Curve] = {}
    for checkpoint, records in sorted(evaluated, key=lambda e: (e[0].step, e[0].name)):
        for record in records:
            if record.get("status") != "done" or not isinstance(record.get("primary_value"), (int, float)):
                continue
            cfg = record["config"]
            key = (str(cfg["dataset"]), str(cfg["adaptation"]), str(cfg["shots"]))
            curve = curves.setdefault(key, Curve(*key, str(record["primary_metric"]),
                                                 bool(record.get("higher_is_better", True))))
            curve.points.setdefault(checkpoint, Cell()).add(record)
    for curve in curves.values():
        for cell in curve.points.values():
            cell.interval = cell_interval(cell, draws_of)
    return list(curves.values())


def _several_shots(curves: Sequence[Curve]) -> bool:
    return len({c.shots for c in curves}) > 1


def _checkpoints(curves: Sequence[Curve]) -> list[Checkpoint]:
    return sorted({p for c in curves for p in c.points}, key=lambda p: (p.step, p.name))


def _value(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    interval = f" [{cell.interval.low:.2f}, {cell.interval.high:.2f}]" if cell.interval is not None else ""
    return f"{cell.mean:.2f}{interval}"


def markdown_table(curves: Sequence[Curve], title: str) -> str:
    """A row per checkpoint, a column per curve: mean over seeds [its interval]."""
    shots = _several_shots(curves)
    header = ["step", "checkpoint", *(f"{c.label(shots)} ({c.metric}{'' if c.higher_is_better else ' ↓'})"
                                      for c in curves)]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for checkpoint in _checkpoints(curves):
        cells = [_value(c.points.get(checkpoint)) for c in curves]
        lines.append(f"| {checkpoint.step} | {checkpoint.name} | " + " | ".join(cells) + " |")
    seeds = sorted({c.n for curve in curves for c in curve.points.values()})
    lines += ["", f"mean over {'/'.join(map(str, seeds)) or 0} seed(s) [its {LEVEL * 100:g}% confidence interval: "
              "one seed, the bootstrap over test items; several, over seeds × test items]; ↓ lower is better"]
    return "\n".join(lines) + "\n"


def csv_table(curves: Sequence[Curve]) -> str:
    """A row per point: step, checkpoint, dataset, adaptation, shots, metric, mean, interval, seeds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "checkpoint", "dataset", "adaptation", "shots", "metric", "higher_is_better", "mean",
                     "ci_low", "ci_high", "interval", "seeds"])
    for curve in curves:
        for checkpoint, cell in sorted(curve.points.items(), key=lambda p: (p[0].step, p[0].name)):
            interval = cell.interval
            writer.writerow([checkpoint.step, checkpoint.name, curve.dataset, curve.adaptation, curve.shots,
                             curve.metric, curve.higher_is_better, f"{cell.mean:.6g}",
                             "" if interval is None else f"{interval.low:.6g}",
                             "" if interval is None else f"{interval.high:.6g}",
                             "" if interval is None else interval.method, cell.n])
    return out.getvalue()


def plot(curves: Sequence[Curve], title: str) -> bytes | None:
    """The primary metric against pretraining step: a line per curve (colour: dataset; line and
    marker: adaptation) and its interval as a band; None when nothing is evaluated yet."""
    from matplotlib.ticker import MaxNLocator

    from gaia_bench.plugins.reporters.lib.leaderboard_plots import _png, _pyplot

    if not any(c.points for c in curves):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 4.6))
    colors = plt.get_cmap("tab10")
    datasets = list(dict.fromkeys(c.dataset for c in curves))
    adaptations = list(dict.fromkeys(c.adaptation for c in curves))
    shots = _several_shots(curves)
    for curve in curves:
        points = sorted(curve.points.items(), key=lambda p: (p[0].step, p[0].name))
        steps = [p.step for p, _ in points]
        color, style = colors(datasets.index(curve.dataset) % 10), adaptations.index(curve.adaptation)
        ax.plot(steps, [c.mean for _, c in points], color=color, linestyle=("-", "--", ":", "-.")[style % 4],
                marker="osD^v"[style % 5], label=f"{curve.label(shots)}{'' if curve.higher_is_better else ' (↓)'}")
        banded = [(s, c.interval) for s, (_, c) in zip(steps, points) if c.interval is not None]
        if banded:
            ax.fill_between([s for s, _ in banded], [iv.low for _, iv in banded], [iv.high for _, iv in banded],
                            color=color, alpha=0.12, linewidth=0)
    metrics = sorted({c.metric for c in curves})
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("pretraining step")
    ax.set_ylabel(metrics[0] if len(metrics) == 1 else "primary metric (↓: lower is better)")
    ax.set_title(f"{title}\n(bands: {LEVEL * 100:g}% confidence intervals)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _png(fig)


def summary_rows(curves: Sequence[Curve]) -> list[tuple[str, str, str, str]]:
    """For the terminal, whatever the number of checkpoints: per curve, its first and last
    checkpoint's value and its best one (in the metric's direction) with the step; the metric is
    named where the curves have several."""
    shots, metrics = _several_shots(curves), len({c.metric for c in curves}) > 1
    rows = []
    for curve in curves:
        points = sorted(curve.points.items(), key=lambda p: (p[0].step, p[0].name))
        sign = 1.0 if curve.higher_is_better else -1.0
        best = max(points, key=lambda p: sign * p[1].mean)

        def show(point: tuple[Checkpoint, Cell]) -> str:
            cell = point[1]
            half = f"±{cell.interval.half_width:.1f}" if cell.interval is not None else ""
            return f"{cell.mean:.1f}{half} @{point[0].step}"

        metric = f" ({curve.metric})" if metrics else ""
        rows.append((f"{curve.label(shots)}{metric}{'' if curve.higher_is_better else ' ↓'}",
                     show(points[0]), show(points[-1]), show(best)))
    return rows
