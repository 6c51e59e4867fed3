"""`gaia-bench profile`: parameters, FLOPs, latency and throughput of backbones, stored for the leaderboard."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gaia_bench import hookimpl
from gaia_bench.cli.common import StoreOption, default_store, handle_errors, split_values
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError

PLUGIN_ORDER = 630


def profile_table(profiles: list[dict]) -> Table:
    table = Table("model", "input", "device", "params (M)", "GFLOPs / image", "batch", "latency ms (median)",
                  "throughput img/s", title="backbone profiles")
    for p in profiles:
        table.add_row(p["model"], f"{p['input_size']}²", f"{p['device']} ({p['device_name']}, {p['threads']} threads)",
                      f"{p['params'] / 1e6:.3f}", f"{p['gflops_per_image']:.4g}", str(p["batch_size"]),
                      f"{p['latency_ms']:.2f}", f"{p['throughput_ips']:.1f}")
    return table


@handle_errors
def profile(
    model: Annotated[list[str], typer.Option("--model", help="backbone(s) to measure (repeat or comma-separate)")],
    input_size: Annotated[int | None, typer.Option("--input-size", help="square input in pixels (default: the backbone's own)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per forward for latency and throughput")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
    repeats: Annotated[int, typer.Option("--repeats", help="timed forwards; the median is reported")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed forwards first")] = 3,
    store: StoreOption = None,
) -> None:
    """Measure parameters, FLOPs (counted on a real forward), latency and throughput on this device,
    store them beside the results, and print them."""
    from gaia_bench.devices import resolve_device
    from gaia_bench.manager import get_registries
    from gaia_bench.plugins.reporters.lib.profiles import FLOP_CONVENTION, profile_backbone, save_profile

    for name, value, low in (("--batch-size", batch_size, 1), ("--repeats", repeats, 1), ("--warmup", warmup, 0)):
        if value < low:
            raise UsageError(f"{name} {value} is too small", f"use {name} {max(low, 1)} or more")
    if input_size is not None and input_size < 8:
        raise UsageError(f"--input-size {input_size} is too small", "use 32 or more (e.g. the backbone's own, 224)")
    names = split_values(model)
    registries = get_registries()
    specs = [registries.backbones.get(n) for n in names]  # unknown names fail before any measuring
    resolved = resolve_device(device)
    path = store or str(default_store())
    measured = []
    for spec in specs:
        notice(f"profiling {spec.name} on {resolved}")
        result = profile_backbone(spec, input_size=input_size or spec.input_size, batch_size=batch_size,
                                  device=resolved, repeats=repeats, warmup=warmup)
        save_profile(path, result)
        measured.append(result)
    console.print(profile_table(measured))
    console.print(f"{FLOP_CONVENTION}. Latency: median over {repeats} forwards after {warmup} warm-up runs. "
                  f"Stored in {path}.", highlight=False, soft_wrap=True)


@hookimpl
def register_commands(cli):
    cli.command()(profile)
