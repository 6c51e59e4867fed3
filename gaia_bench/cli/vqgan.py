"""`gaia-bench vqgan`: train the upstream pool's VQ-GAN once (cached), and show what it does.

The VQ-GAN is a plugin's (``gaia_bench.plugins.vqgan_tool`` by default); this module reaches it
through the plugin manager and knows nothing of the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gaia_bench.cli import app
from gaia_bench.cli.common import DataRootOption, handle_errors
from gaia_bench.cli.progress import RichProgress
from gaia_bench.console import console, notice
from gaia_bench.errors import PluginError

VQGAN_PLUGIN = "gaia_bench.plugins.vqgan_tool"

vqgan_app = typer.Typer(no_args_is_help=True, help="The upstream pool's VQ-GAN (used by the mf and vqgan-replay adaptations).")
app.add_typer(vqgan_app, name="vqgan")

UpstreamOption = Annotated[str, typer.Option("--upstream", help="a suite (its upstream pool) or an upstream pool's dataset name")]
StepsOption = Annotated[int | None, typer.Option("--steps", help="training steps (default: the adaptations' vqgan_steps)")]
CodebookOption = Annotated[int | None, typer.Option("--codebook", help="codebook size (default: the adaptations' vqgan_codebook)")]
SeedOption = Annotated[int, typer.Option("--seed", help="training seed (the adaptations use vqgan_seed, 0)")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")]


def _plugin() -> Any:
    from gaia_bench.manager import get_host

    host = get_host()
    plugin = host.pm.get_plugin(VQGAN_PLUGIN)
    if plugin is None:
        record = host.records.get(VQGAN_PLUGIN)
        why = f"broken: {record.error}" if record is not None and record.error else "disabled"
        raise PluginError(f"the VQ-GAN plugin {VQGAN_PLUGIN} is not loaded ({why})",
                          "check GAIA_BENCH_DISABLE_PLUGINS and `gaia-bench plugins`")
    return plugin


def _run(call, upstream: str, *args: Any, root: str | None, device: str, **kwargs: Any) -> Any:
    """``call(registries, upstream, data_root, *args, ...)`` with a rich progress display."""
    from gaia_bench.cli.run import resolve_device
    from gaia_bench.jobs import Progress
    from gaia_bench.manager import get_registries
    from gaia_bench.paths import data_root

    registries, resolved = get_registries(), resolve_device(device)
    with RichProgress() as rich:
        return call(registries, upstream, data_root(root), *args, device=resolved,
                    progress=Progress(start=rich.start, finish=rich.finish), log=rich.log, **kwargs)


def _summary_table(summary: dict) -> Table:
    storage = summary["storage"]
    table = Table("", "", title=f"VQ-GAN of {summary['pool']} (seed {summary['seed']})")
    cfg = summary["config"]
    rows = [
        ("steps / batch", f"{cfg['steps']} / {cfg['batch']}"),
        ("tokens / codebook", f"{storage['tokens_per_image']} per image / {cfg['codebook_size']} codes"),
        ("pool reconstruction", f"L1 {summary['pool_l1']:.4f}, PSNR {summary['pool_psnr_db']:.2f} dB"),
        ("codebook usage", f"{summary['pool_codes_used']} codes used, perplexity {summary['pool_perplexity']}"),
        ("pool as codes", f"{storage['codes_bytes']:,} B ({storage['bits_per_token']} bits/token)"),
        ("pool as JPEG (q90)", f"{storage['jpeg_q90_bytes']:,} B: {storage['compression_vs_jpeg']}x the codes"),
        ("pool as its files", f"{storage['image_files_bytes']:,} B: {storage['compression_vs_files']}x the codes"),
        ("trained in", f"{summary['train_seconds']:.1f} s"),
        ("cached at", summary["directory"]),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


@vqgan_app.command("train")
@handle_errors
def train(
    upstream: UpstreamOption = "mini",
    steps: StepsOption = None,
    codebook: CodebookOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    data_root: DataRootOption = None,
) -> None:
    """Train the VQ-GAN on the upstream pool once and cache it (a cached one is reused)."""
    summary = _run(_plugin().train, upstream, steps=steps, codebook=codebook, seed=seed, device=device, root=data_root)
    console.print(_summary_table(summary))


@vqgan_app.command("reconstruct")
@handle_errors
def reconstruct(
    images: Annotated[list[Path], typer.Argument(help="image files to encode and decode")],
    out: Annotated[Path, typer.Option("--out", help="the PNG grid to write (original | reconstruction per row)")] = Path("vqgan-reconstruction.png"),
    upstream: UpstreamOption = "mini",
    steps: StepsOption = None,
    codebook: CodebookOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    data_root: DataRootOption = None,
) -> None:
    """Encode IMAGES to code indices and decode them: writes a side-by-side PNG grid (the VQ-GAN is
    trained first when it is not cached)."""
    path, summary = _run(_plugin().reconstruct, upstream, images, out, steps=steps, codebook=codebook, seed=seed,
                         device=device, root=data_root)
    notice(f"wrote {path}: {len(images)} rows, original | reconstruction "
           f"(pool L1 {summary['pool_l1']:.4f}, {summary['pool_codes_used']} codes used)")
