"""Shared CLI plumbing: the error-to-exit-code decorator, option types and the parsers of
multi-value options (``--shots``, ``--seed``, ``--hp KEY=VALUE``)."""

from __future__ import annotations

import errno
import functools
import json
import os
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Sequence, TypeVar

import typer
from rich.markup import escape

from gaia_bench.console import console, err_console
from gaia_bench.devices import PRECISIONS
from gaia_bench.errors import GaiaBenchError, UnknownNameError, UsageError
from gaia_bench.paths import cache_home
from gaia_bench.shots import SHOTS_HELP, ShotSpec, parse_shot

F = TypeVar("F", bound=Callable[..., Any])

StoreOption = Annotated[str | None, typer.Option("--store", help="results database (default: ~/.cache/gaia-bench/results.db or $GAIA_BENCH_STORE)")]
DataRootOption = Annotated[str | None, typer.Option("--data-root", help="where datasets live (default: ~/.cache/gaia-bench/data or $GAIA_BENCH_DATA)")]
OFFLINE_VARIABLES = ("GAIA_BENCH_OFFLINE", "HF_HUB_OFFLINE")  # what --offline sets for this command


def _offline(ctx: typer.Context, offline: bool) -> bool:
    """``--offline``: set the variables every download path reads, in this process and so in every
    process it starts (pool workers, submitit cells, DDP ranks), until the command ends."""
    if offline:
        saved = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
        os.environ.update(dict.fromkeys(OFFLINE_VARIABLES, "1"))

        def restore() -> None:  # one process may run several commands (tests, notebooks)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

        ctx.call_on_close(restore)
    return offline


OfflineOption = Annotated[bool, typer.Option(
    "--offline", callback=_offline, help="never download: weights or data not on this machine are an error naming "
    "them (sets GAIA_BENCH_OFFLINE=1 and HF_HUB_OFFLINE=1 for this command and the processes it starts)")]


def split_values(values: Iterable[str] | None) -> list[str]:
    """The values of an option that takes several, repeated or comma-separated or both (one grammar
    for every command), blanks dropped."""
    return [part.strip() for value in values or () for part in str(value).split(",") if part.strip()]


def follow_columns() -> None:
    """Size both consoles from ``$COLUMNS`` as it is now: Rich reads it once, at import, and one
    process may run many commands (tests, notebooks, ``CliRunner``)."""
    columns = os.environ.get("COLUMNS", "")
    for each in (console, err_console):
        each.width = int(columns) if columns.isdigit() else None


def print_error(exc: GaiaBenchError | str, hint: str | None = None) -> None:
    if isinstance(exc, GaiaBenchError):
        exc, hint = exc.message, exc.hint
    line = f"[bold red]error:[/] {escape(str(exc))}"  # messages quote user input: `[0.1]`, `gaia-bench[mlflow]`
    if hint:
        line += f"\n  [yellow]fix:[/] {escape(hint)}"
    err_console.print(line, highlight=False, soft_wrap=True)


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


def default_store() -> Path:
    """--store, else GAIA_BENCH_STORE, else <cache home>/results.db."""
    env = os.environ.get("GAIA_BENCH_STORE")
    return Path(env).expanduser() if env else cache_home() / "results.db"


def feature_cache_dir() -> Path:
    """Where `run` caches features (unless --no-cache): GAIA_BENCH_FEATURES, else <cache home>/features."""
    env = os.environ.get("GAIA_BENCH_FEATURES")
    return Path(env).expanduser() if env else cache_home() / "features"


def open_store(path: str | None, *, write: bool = False):
    """The results store as a context manager whose SQLite errors are told in one line; ``write``:
    refuse a damaged store (see gaia_bench/cli/store_errors.py)."""
    from gaia_bench.cli.store_errors import open_store as opened

    return opened(path, write=write)


def parse_shots(values: Iterable[str]) -> list[ShotSpec]:
    """Parse repeated and comma-separated --shots values, keeping order, dropping repeats."""
    specs: list[ShotSpec] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                raise UsageError(f"empty value in --shots '{value}'", f"use {SHOTS_HELP}")
            spec = parse_shot(part)
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise UsageError("--shots is empty", f"use {SHOTS_HELP}")
    return specs


def parse_seeds(values: list[str]) -> list[int]:
    """``--seed`` values, repeated or comma-separated like every other multi-value option."""
    seeds: list[int] = []
    for part in (p.strip() for v in values for p in str(v).split(",")):
        if not part:
            continue
        try:
            seeds.append(int(part))
        except ValueError:
            raise UsageError(f"--seed {part!r} is not an integer", "e.g. --seed 0,1,2 or --seed 0 --seed 1") from None
    return list(dict.fromkeys(seeds)) or [0]


def parse_overrides(items: Sequence[str], option: str = "--hp", example: str = "det_max_iters=200") -> dict[str, Any]:
    """``KEY=VALUE`` strings (of ``option``) to a dict; VALUE is read as JSON (``0.01``, ``[1, 2]``,
    ``true``) and kept as a string when it is not JSON."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {item!r} is not KEY=VALUE", f"e.g. {option} {example}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def check_precision(precision: str, device: str) -> str:
    """``--precision`` checked against the device. fp16 on a CPU is refused: CPUs compute it no faster than
    fp32 and it needs loss scaling, while bf16 keeps fp32's range and is what CPUs accelerate."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown --precision '{precision}'", "use fp32, bf16 or fp16")
    if precision == "fp16" and device.partition(":")[0] == "cpu":
        raise UsageError("--precision fp16 is for GPUs, not --device cpu", "use --precision bf16 on a CPU")
    return precision
