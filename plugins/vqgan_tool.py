"""What `gaia-bench vqgan` calls: train (or find) the cached VQ-GAN of an upstream pool, and write a
side-by-side reconstruction grid. A plugin module of its own so the CLI reaches the VQ-GAN through
the plugin manager (it can be disabled like any plugin), and light: torch is imported only when a
command runs, never when plugins are listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from gaia_bench.errors import UsageError
from gaia_bench.jobs import Progress


def config(steps: int | None = None, codebook: int | None = None):
    """The default VQ-GAN config with the CLI's overrides (same rules as the adaptations' --hp)."""
    from gaia_bench.plugins.vqgan_config import VQGAN_HYPERPARAMS
    from gaia_bench.plugins.vqgan_train import config_from_hyperparams

    return config_from_hyperparams({**VQGAN_HYPERPARAMS,
                                    **({"vqgan_steps": steps} if steps is not None else {}),
                                    **({"vqgan_codebook": codebook} if codebook is not None else {})})


def train(registries: Any, upstream: str, data_root: Path, *, steps: int | None = None, codebook: int | None = None,
          seed: int = 0, device: str = "cpu", progress: Progress = Progress(),
          log: Callable[[str], None] = lambda m: None) -> dict:
    """The cached VQ-GAN's summary (trained first when missing)."""
    from gaia_bench.plugins.vqgan_train import get_or_train, resolve_upstream

    pool = resolve_upstream(registries, upstream)
    trained = get_or_train(registries, pool, data_root, config(steps, codebook), seed, progress, device, log)
    return {**trained.summary, "directory": str(trained.directory)}


def reconstruct(registries: Any, upstream: str, data_root: Path, images: Sequence[Path], out: Path, *,
                steps: int | None = None, codebook: int | None = None, seed: int = 0, device: str = "cpu",
                progress: Progress = Progress(), log: Callable[[str], None] = lambda m: None) -> tuple[Path, dict]:
    """Write the original | reconstruction grid of ``images`` to ``out``; return it and the VQ-GAN summary."""
    from gaia_bench.plugins.vqgan_train import get_or_train, reconstruct_files, resolve_upstream

    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"no such image file: {', '.join(missing)}", "pass paths of existing image files")
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} is not a .png path", "e.g. --out grid.png")
    pool = resolve_upstream(registries, upstream)
    trained = get_or_train(registries, pool, data_root, config(steps, codebook), seed, progress, device, log)
    return reconstruct_files(trained.model, [Path(p) for p in images], out), {**trained.summary,
                                                                             "directory": str(trained.directory)}
