"""The two consoles: results on stdout, progress and messages on stderr."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def notice(message: str) -> None:
    err_console.print(f"[cyan]›[/] {message}", highlight=False, soft_wrap=True)
