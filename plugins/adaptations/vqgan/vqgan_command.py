"""`gaia-bench vqgan` (added through ``register_commands``): train the upstream pool's VQ-GAN once
(cached), and show what it does: a side-by-side reconstruction grid. Light: torch is imported only
when a command runs, never when plugins are listed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Sequence

import typer
from rich.table import Table

from gaia_bench import hookimpl
from gaia_bench.cli.common import DataRootOption, OfflineOption, handle_errors
from gaia_bench.cli.progress import RichProgress
from gaia_bench.console import console, notice
from gaia_bench.errors import UsageError
from gaia_bench.api import Progress

PLUGIN_ORDER = 410

vqgan_app = typer.Typer(no_args_is_help=True, help="The upstream pool's VQ-GAN (used by the mf and vqgan-replay adaptations).")

UpstreamOption = Annotated[str, typer.Option("--upstream", help="a suite (its upstream pool) or an upstream pool's dataset name")]
StepsOption = Annotated[int | None, typer.Option("--steps", help="training steps (default: the adaptations' vqgan_steps)")]
CodebookOption = Annotated[int | None, typer.Option("--codebook", help="codebook size (default: the adaptations' vqgan_codebook)")]
SeedOption = Annotated[int, typer.Option("--seed", help="training seed (the adaptations use vqgan_seed, 0)")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")]


def config(steps: int | None = None, codebook: int | None = None):
    """The default VQ-GAN config with the CLI's overrides (same rules as the adaptations' --hp)."""
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_config import VQGAN_HYPERPARAMS
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import config_from_hyperparams

    return config_from_hyperparams({**VQGAN_HYPERPARAMS,
                                    **({"vqgan_steps": steps} if steps is not None else {}),
                                    **({"vqgan_codebook": codebook} if codebook is not None else {})})


def train_vqgan(registries: Any, upstream: str, data_root: Path, *, steps: int | None = None, codebook: int | None = None,
                seed: int = 0, device: str = "cpu", progress: Progress = Progress(),
                log: Callable[[str], None] = lambda m: None) -> dict:
    """The cached VQ-GAN's summary (trained first when missing)."""
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import get_or_train

    pool = registries.upstream_pool(upstream)
    trained = get_or_train(registries, pool, data_root, config(steps, codebook), seed, progress, device, log)
    return {**trained.summary, "directory": str(trained.directory)}


def reconstruct_images(registries: Any, upstream: str, data_root: Path, images: Sequence[Path], out: Path, *,
                       steps: int | None = None, codebook: int | None = None, seed: int = 0, device: str = "cpu",
                       progress: Progress = Progress(), log: Callable[[str], None] = lambda m: None) -> tuple[Path, dict]:
    """Write the original | reconstruction grid of ``images`` to ``out``; return it and the VQ-GAN summary."""
    from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import get_or_train, reconstruct_files

    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"no such image file: {', '.join(missing)}", "pass paths of existing image files")
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} is not a .png path", "e.g. --out grid.png")
    pool = registries.upstream_pool(upstream)
    trained = get_or_train(registries, pool, data_root, config(steps, codebook), seed, progress, device, log)
    return reconstruct_files(trained.model, [Path(p) for p in images], out), {**trained.summary,
                                                                             "directory": str(trained.directory)}


def _run(call, upstream: str, *args: Any, root: str | None, device: str, **kwargs: Any) -> Any:
    """``call(registries, upstream, data_root, *args, ...)`` with a rich progress display."""
    from gaia_bench.devices import resolve_device
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
    offline: OfflineOption = False,
) -> None:
    """Train the VQ-GAN on the upstream pool once and cache it (a cached one is reused)."""
    summary = _run(train_vqgan, upstream, steps=steps, codebook=codebook, seed=seed, device=device, root=data_root)
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
    offline: OfflineOption = False,
) -> None:
    """Encode IMAGES to code indices and decode them: writes a side-by-side PNG grid (the VQ-GAN is
    trained first when it is not cached)."""
    path, summary = _run(reconstruct_images, upstream, images, out, steps=steps, codebook=codebook, seed=seed,
                         device=device, root=data_root)
    notice(f"wrote {path}: {len(images)} rows, original | reconstruction "
           f"(pool L1 {summary['pool_l1']:.4f}, {summary['pool_codes_used']} codes used)")


@hookimpl
def register_commands(cli):
    cli.add_typer(vqgan_app, name="vqgan")
