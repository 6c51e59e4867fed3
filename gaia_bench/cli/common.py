"""Shared CLI plumbing: the error-to-exit-code decorator and option types."""

from __future__ import annotations

import errno
import functools
from typing import Annotated, Any, Callable, TypeVar

import typer

from gaia_bench.console import err_console, print_error
from gaia_bench.errors import GaiaBenchError, UnknownNameError

F = TypeVar("F", bound=Callable[..., Any])

StoreOption = Annotated[str | None, typer.Option("--store", help="results database (default: ~/.cache/gaia-bench/results.db or $GAIA_BENCH_STORE)")]
DataRootOption = Annotated[str | None, typer.Option("--data-root", help="where datasets live (default: ~/.cache/gaia-bench/data or $GAIA_BENCH_DATA)")]


def handle_errors(fn: F) -> F:
    """Turn user-caused errors into one 'error: … fix: …' message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GaiaBenchError as exc:
            print_error(exc)
            if isinstance(exc, UnknownNameError):
                _mention_broken_plugins()
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                print_error(f"disk full: {exc.filename or exc}", "free some space or point the path at another disk; finished results are kept")
                raise typer.Exit(1) from None
            raise

    return wrapper  # type: ignore[return-value]


def _mention_broken_plugins() -> None:
    """A name nobody registered may belong to a plugin that failed to load: say which, and why."""
    from gaia_bench.manager import get_host

    for record in get_host().plugins():
        if not record.ok:
            err_console.print(f"  [yellow]note:[/] plugin {record.name} ({record.distribution}) failed to load and "
                              f"registered nothing: {record.error} (`gaia-bench plugins`)", highlight=False,
                              soft_wrap=True)


def open_store(path: str | None, *, write: bool = False):
    """The results store as a context manager whose SQLite errors are told in one line; ``write``:
    refuse a damaged store (see gaia_bench/cli/store_errors.py)."""
    from gaia_bench.cli.store_errors import open_store as opened

    return opened(path, write=write)
