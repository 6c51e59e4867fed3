"""The two consoles (results on stdout, progress and messages on stderr) and rich progress."""

from __future__ import annotations

from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from gaia_bench.errors import GaiaBenchError

console = Console()
err_console = Console(stderr=True)


def print_error(exc: GaiaBenchError | str, hint: str | None = None) -> None:
    if isinstance(exc, GaiaBenchError):
        exc, hint = exc.message, exc.hint
    line = f"[bold red]error:[/] {exc}"
    if hint:
        line += f"\n  [yellow]fix:[/] {hint}"
    err_console.print(line, highlight=False, soft_wrap=True)


def notice(message: str) -> None:
    err_console.print(f"[cyan]›[/] {message}", highlight=False, soft_wrap=True)


class RichProgress:
    """Backs :class:`gaia_bench.jobs.Progress` with one live rich display: an overall job bar plus
    one bar for the current long step."""

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
