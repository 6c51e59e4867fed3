"""Leaderboard plots (matplotlib, Agg): data efficiency and speed/accuracy, as PNG bytes.

PNG bytes rather than files, so the HTML page can inline them (base64) and the directory writer
can save the same images beside the tables.
"""

from __future__ import annotations

import io
import math

from gaia_bench.plugins.reporters.lib.leaderboard import Cell, DataEfficiency, RowKey, SpeedAccuracy
from gaia_bench.plugins.reporters.lib.tables import task_label
from gaia_bench.predictions import LEVEL

_DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def _label(key: RowKey) -> str:
    return " / ".join(key)


def _grid(n: int, width: float, height: float):
    plt = _pyplot()
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _error_bars(cells: list[Cell], interval: str) -> list[list[float]]:
    """Below and above each mean: the std over seeds, or the distances to the interval's ends (0 without)."""
    if interval == "std":
        return [[c.std or 0.0 for c in cells]] * 2
    below = [c.mean - c.interval.low if c.interval is not None else 0.0 for c in cells]
    above = [c.interval.high - c.mean if c.interval is not None else 0.0 for c in cells]
    return [[max(0.0, v) for v in below], [max(0.0, v) for v in above]]


def plot_data_efficiency(eff: DataEfficiency, title: str, interval: str = "ci") -> bytes | None:
    """One panel per dataset: the primary metric (mean with its interval, or ± std over seeds) against
    shots, one line per row."""
    if not eff.rows or len(eff.shots) < 2:
        return None
    columns = list(dict.fromkeys(r.column for r in eff.rows))
    keys = list(dict.fromkeys(r.key for r in eff.rows))
    colors = _pyplot().get_cmap("tab10")
    fig, axes = _grid(len(columns), 4.6, 3.4)
    for ax, column in zip(axes, columns):
        for row in (r for r in eff.rows if r.column == column):
            xs = [i for i, s in enumerate(eff.shots) if s in row.cells]
            cells = [row.cells[eff.shots[i]] for i in xs]
            ax.errorbar(xs, [c.mean for c in cells], yerr=_error_bars(cells, interval), marker="o", capsize=3,
                        color=colors(keys.index(row.key) % 10), label=_label(row.key))
        ax.set_xticks(range(len(eff.shots)), eff.shots)
        ax.set_xlabel("shots (training data kept)")
        ax.set_ylabel(column.metric + ("" if column.higher_is_better else " (lower is better)"))
        ax.set_title(f"{column.dataset} ({task_label(column.task)})")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), bbox_to_anchor=(0.5, -0.02 - 0.04 * math.ceil(len(labels) / 3)))
    what = "mean ± std over seeds" if interval == "std" else f"mean and its {LEVEL * 100:g}% confidence interval"
    fig.suptitle(f"{title}: data efficiency ({what})")
    fig.tight_layout()
    return _png(fig)


def plot_speed_accuracy(speed: SpeedAccuracy, directions: dict[str, bool], title: str) -> bytes | None:
    """One panel per task type: task-type mean against measured latency; the Pareto front joined and starred."""
    tasks = [t for t in speed.tasks if any(r.profile and t in r.task_means for r in speed.rows)]
    if not tasks:
        return None
    fig, axes = _grid(len(tasks), 5.2, 3.8)
    for ax, task in zip(axes, tasks):
        rows = [r for r in speed.rows if r.profile and task in r.task_means]
        lat = [float(r.profile["latency_ms"]) for r in rows]
        acc = [r.task_means[task].value for r in rows]
        front = sorted((x, y) for x, y, r in zip(lat, acc, rows) if r.on_front.get(task))
        ax.scatter(lat, acc, color="tab:blue", zorder=2, label="rows")
        if front:
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="tab:red", alpha=0.6, zorder=1)
            ax.scatter([x for x, _ in front], [y for _, y in front], marker="*", s=180, color="tab:red", zorder=3,
                       label="Pareto front")
        for x, y, r in zip(lat, acc, rows):
            ax.annotate(_label(r.key), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if max(lat) / max(min(lat), 1e-9) > 20:
            ax.set_xscale("log")
        batch = {r.profile["batch_size"] for r in rows}
        ax.set_xlabel(f"latency, ms per batch of {batch.pop() if len(batch) == 1 else 'B'} (lower is better)")
        better = directions.get(task, True)
        ax.set_ylabel(f"{task_label(task)} mean" + ("" if better else " (lower is better)"))
        ax.set_title(f"{task_label(task)}: accuracy vs latency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        ax.margins(x=0.25, y=0.15)
    fig.suptitle(f"{title}: speed / accuracy")
    fig.tight_layout()
    return _png(fig)
