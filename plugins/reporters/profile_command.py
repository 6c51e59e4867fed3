"""`gaia-bench profile`: parameters, FLOPs, latency, throughput and peak memory of backbones over batch
sizes, precisions and memory layouts, stored for the leaderboard."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from gaia_bench import hookimpl
from gaia_bench.cli.common import StoreOption, check_precision, default_store, handle_errors, split_values
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError
from gaia_bench.plugins.reporters.lib.profiles import DTYPES, FLOP_CONVENTION, PRECISION, profile_backbone, save_profile

PLUGIN_ORDER = 630
SHORT = {stored: flag for flag, stored in DTYPES.items()}  # stored precision -> what --precision says


def _mode(profile: dict) -> str:
    """The precision, ``+cl`` when channels-last: how the forwards ran."""
    precision = SHORT.get(profile.get("precision", PRECISION), profile.get("precision"))
    return f"{precision}{'+cl' if profile.get('channels_last') else ''}"


def profile_tables(profiles: list[dict]) -> tuple[Table, Table]:
    """What each backbone is (parameters, FLOPs) and how fast it ran in each mode, as two narrow
    tables: one wide table wrapped the model names at 80 columns. The device is in the titles."""
    devices = sorted({f"{p['device']}: {p['device_name']}, {p['threads']} threads" for p in profiles})
    where = "; ".join(devices)
    models = Table("model", "px", "params (M)", "GFLOPs / image", title="backbones", box=box.SIMPLE_HEAD)
    for name, size in dict.fromkeys((p["model"], p["input_size"]) for p in profiles):
        p = next(q for q in profiles if (q["model"], q["input_size"]) == (name, size))
        models.add_row(name, str(size), f"{p['params'] / 1e6:.3f}", f"{p['gflops_per_image']:.4g}")
    speed = Table(title=f"throughput ({where})", box=box.SIMPLE_HEAD, pad_edge=False)
    speed.add_column("model", no_wrap=True)
    for header in ("mode", "batch", "img/s", "ms/step", "ms/img", "peak MiB"):
        speed.add_column(header, justify="left" if header == "mode" else "right", no_wrap=True)
    for p in profiles:
        peak = p.get("peak_memory_mb")
        speed.add_row(p["model"], _mode(p), str(p["batch_size"]), f"{p['throughput_ips']:.1f}", f"{p['latency_ms']:.2f}",
                      f"{p['latency_ms'] / p['batch_size']:.3f}", "-" if peak is None else f"{peak:.0f}")
    return models, speed


def _positive_ints(values: list[str], flag: str) -> list[int]:
    out = []
    for value in split_values(values):
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{flag} {value!r} is not a positive integer", f"e.g. {flag} 1,8,32")
        out.append(int(value))
    return out


@handle_errors
def profile(
    model: Annotated[list[str], typer.Option("--model", help="backbone(s) to measure (repeat or comma-separate)")],
    input_size: Annotated[int | None, typer.Option("--input-size", help="square input in pixels (default: the backbone's own)")] = None,
    batch_sizes: Annotated[list[str], typer.Option("--batch-sizes", "--batch-size", help="images per forward: one, or "
                                                   "a sweep (repeat or comma-separate, e.g. 1,8,32)")] = ["1"],  # noqa: B006
    precision: Annotated[list[str], typer.Option("--precision", help="fp32, bf16, fp16 (autocast of the forward): "
                                                 "repeat or comma-separate to compare")] = ["fp32"],  # noqa: B006
    channels_last: Annotated[bool, typer.Option("--channels-last", help="weights and inputs in channels-last layout")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
    repeats: Annotated[int, typer.Option("--repeats", help="timed forwards; the median is reported")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed forwards first")] = 3,
    store: StoreOption = None,
) -> None:
    """Measure parameters, FLOPs (counted on a real forward), latency, throughput and peak memory on
    this device for every batch size and precision asked, store them beside the results, and print them."""
    from gaia_bench.devices import resolve_device
    from gaia_bench.manager import get_registries

    for name, value, low in (("--repeats", repeats, 1), ("--warmup", warmup, 0)):
        if value < low:
            raise UsageError(f"{name} {value} is too small", f"use {name} {max(low, 1)} or more")
    if input_size is not None and input_size < 8:
        raise UsageError(f"--input-size {input_size} is too small", "use 32 or more (e.g. the backbone's own, 224)")
    batches = _positive_ints(batch_sizes, "--batch-sizes")
    names = split_values(model)
    registries = get_registries()
    specs = [registries.backbones.get(n) for n in names]  # unknown names fail before any measuring
    resolved = resolve_device(device)
    precisions = [check_precision(p, resolved) for p in split_values(precision)]
    path = store or str(default_store())
    measured = []
    for spec in specs:
        for mode in precisions:
            for batch in batches:
                notice(f"profiling {spec.name} on {resolved}: batch {batch}, {mode}{', channels-last' if channels_last else ''}")
                result = profile_backbone(spec, input_size=input_size or spec.input_size, batch_size=batch,
                                          device=resolved, repeats=repeats, warmup=warmup, precision=mode,
                                          channels_last=channels_last)
                save_profile(path, result)
                measured.append(result)
    for table in profile_tables(measured):
        console.print(table)
    memory = measured[0]["peak_memory_note"]
    console.print(f"{FLOP_CONVENTION}. Latency: median over {repeats} forwards after {warmup} warm-up runs; "
                  f"ms/step is one forward of the batch, ms/img that over the batch. Peak memory: {memory}. "
                  f"Stored in {path}.", highlight=False)


@hookimpl
def register_commands(cli):
    cli.command()(profile)
