"""The two consoles: results on stdout, progress and messages on stderr."""

from __future__ import annotations

from rich.console import Console

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
