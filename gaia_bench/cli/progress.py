"""What the terminal shows while a grid runs: the progress bars (:class:`RichProgress`, the rich
backing of :class:`gaia_bench.api.Progress`), the live table of a run's cells (pending / running /
done / failed), and the counts table that `gaia-bench status` prints from the store."""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gaia_bench.console import err_console


class RichProgress:
    """One live rich display: an overall job bar plus one bar for the current long step."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=False,
        )
        self._step: int | None = None
        self.jobs: int | None = None

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def start_jobs(self, total: int) -> None:
        self.jobs = self.progress.add_task("jobs", total=total)

    def job_started(self, description: str) -> None:
        if self.jobs is not None:
            self.progress.update(self.jobs, description=f"job: {description}")

    def job_finished(self) -> None:
        if self.jobs is not None:
            self.progress.advance(self.jobs)

    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        self.finish()
        self._step = self.progress.add_task(f"  {description}", total=total)
        step = self._step
        return lambda n: self.progress.advance(step, n)

    def finish(self) -> None:
        if self._step is not None:
            self.progress.remove_task(self._step)
            self._step = None

    def log(self, message: str) -> None:
        self.progress.console.print(message, highlight=False, soft_wrap=True)


STATES = ("pending", "running", "done", "failed")
_STYLE = {"pending": "", "running": "cyan", "done": "green", "failed": "red"}
MAX_ROWS = 12  # groups shown one per row; the rest are summed into one row


def counts_table(rows: Sequence[tuple[str, dict[str, int]]], title: str, group: str = "dataset",
                 states: Sequence[str] = STATES, max_rows: int = MAX_ROWS) -> Table:
    """One row per group (label, {state: count}) plus a total row; groups past ``max_rows`` are summed."""
    table = Table(group, *[f"[{_STYLE[s]}]{s}[/]" if _STYLE.get(s) else s for s in states], "cells", title=title)
    shown = list(rows[:max_rows])
    rest = rows[max_rows:]
    if rest:
        summed = {s: sum(c.get(s, 0) for _, c in rest) for s in states}
        shown.append((f"… {len(rest)} more", summed))
    total = {s: sum(c.get(s, 0) for _, c in rows) for s in states}
    for label, counts in shown:
        table.add_row(label, *[str(counts.get(s, 0)) for s in states], str(sum(counts.get(s, 0) for s in states)))
    if len(rows) > 1:
        table.add_row("[bold]total[/]", *[f"[bold]{total[s]}[/]" for s in states], f"[bold]{sum(total.values())}[/]",
                      end_section=True)
    return table


class GridMonitor:
    """Counts the cells of a run by state and group, drawn live (with the progress bars below)."""

    def __init__(self, cells: Iterable[tuple[str, str]], progress: RichProgress, title: str) -> None:
        """``cells``: (job id, group label) of every cell to run, all pending at first."""
        self.group: dict[str, str] = {}
        self.state: dict[str, str] = {}
        self.counts: dict[str, dict[str, int]] = {}
        for job_id, label in cells:
            self.group[job_id] = label
            self.state[job_id] = "pending"
            self.counts.setdefault(label, dict.fromkeys(STATES, 0))["pending"] += 1
        self.progress = progress
        self.title = title
        self.started = time.monotonic()
        self._live = Live(get_renderable=self._render, console=err_console, refresh_per_second=4)

    def set(self, job_id: str, state: str) -> None:
        """Move a cell to ``state`` (one of STATES); unknown job ids are ignored."""
        old = self.state.get(job_id)
        if old is None or old == state or state not in STATES:
            return
        counts = self.counts[self.group[job_id]]
        counts[old] -= 1
        counts[state] += 1
        self.state[job_id] = state

    def finished(self, record: dict) -> None:
        self.set(record["job_id"], "done" if record.get("status") == "done" else "failed")

    def totals(self) -> dict[str, int]:
        return {s: sum(c[s] for c in self.counts.values()) for s in STATES}

    def table(self) -> Table:
        elapsed = time.monotonic() - self.started
        rows = sorted(((label, dict(c)) for label, c in list(self.counts.items())), key=lambda r: r[0])
        return counts_table(rows, f"{self.title} · {elapsed:.0f} s")

    def _render(self) -> Group:
        return Group(self.table(), self.progress.progress)

    def __enter__(self) -> GridMonitor:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)
