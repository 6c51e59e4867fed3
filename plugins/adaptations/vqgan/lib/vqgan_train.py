"""Training the VQ-GAN of :mod:`gaia_bench.plugins.adaptations.vqgan.lib.vqgan` once per upstream pool, and its cache.

Losses (generator side): L1 + ``l2_weight`` x L2 reconstruction, a feature (perceptual) loss from a
frozen registered backbone (``perceptual_model`` with ``perceptual_init``'s weights: the unit-
normalised activations of its finest pyramid levels, LPIPS-style, without LPIPS's learned weights,
which would need a download), the codebook's commitment loss, and, after ``disc_start_share`` of
the steps (the reconstruction must be roughly right before a discriminator can help), the hinge
adversarial loss of a patch discriminator weighted by ``disc_weight``.

Codebook usage is tracked over the last 100 steps and over the whole pool at the end (codes used,
perplexity): a VQ-GAN whose tokens collapse onto a few codes cannot re-represent anything.

The trained model lives in ``<cache home>/vqgan/<key>/`` where the key hashes the config, the pool
(name and version), the seed and the perceptual network's weights id; the same directory holds the
pool encoded as code indices (``codes.pt``, what ``vqgan-replay`` replays) and ``summary.json``.
Everything is deterministic given the seed (one seeded generator, run under ``fork_rng``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from gaia_bench.api import DatasetSpec, InitContext, Samples
from gaia_bench.errors import DataError, UsageError
from gaia_bench.api import Progress
from gaia_bench.jobs import prepared_data_dir
from gaia_bench.paths import cache_home
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan import (
    VQGAN,
    PatchDiscriminator,
    hinge_d_loss,
    hinge_g_loss,
    to_model_range,
    to_unit_range,
)
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_config import VQGANConfig

FORMAT = "gaia-bench-vqgan-v1"
USAGE_WINDOW = 100


@dataclass(frozen=True)
class UpstreamImages:
    """The labelled images of an upstream pool: pixels (uint8 ``[N, 3, S, S]``) and labels over the
    union of its sources' classes (``"source/class"``: sources name their classes differently)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[Path]


def resolve_upstream(registries: Any, name: str) -> DatasetSpec:
    """``mini`` (a suite: its declared upstream pool) or a pool's own dataset name."""
    return registries.upstream_pool(name)


def load_image(path: Path, size: int) -> np.ndarray:
    """An image file as uint8 ``[3, size, size]`` (RGB, bilinear resize)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((size, size), Image.BILINEAR)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}", "replace or delete the file") from exc
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_upstream(dataset: DatasetSpec, root: Path, size: int) -> UpstreamImages:
    """Every labelled source of the pool (its ``splits``), read through the dataset's own loader."""
    pixels, labels, classes, paths = [], [], [], []
    for source in sorted(dataset.splits or [dataset.train_split]):
        samples: Samples = dataset.load(root, source)
        offset = len(classes)
        classes += [f"{source}/{c}" for c in samples.classes]
        for sample in samples.samples:
            pixels.append(load_image(sample.path, size))
            labels.append(offset + int(sample.target))
            paths.append(sample.path)
    if not pixels:
        raise DataError(f"upstream pool '{dataset.name}' has no labelled images under {root}",
                        f"run `gaia-bench datasets prepare {dataset.name} --force`")
    return UpstreamImages(torch.from_numpy(np.stack(pixels)), torch.tensor(labels), classes, paths)


# --------------------------------------------------------------------------- perceptual loss
class FeatureLoss(torch.nn.Module):
    """Distance between unit-normalised activations of a frozen network's finest pyramid levels."""

    def __init__(self, backbone: torch.nn.Module, mean: Sequence[float], std: Sequence[float], levels: int,
                 input_size: int) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.levels = levels
        self.input_size = input_size

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(to_unit_range(images), size=self.input_size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        trunk = getattr(self.backbone, "trunk", None)
        if hasattr(trunk, "forward_intermediates"):  # timm: stop after the levels compared (much cheaper)
            maps = trunk.forward_intermediates(x, indices=list(range(self.levels)), intermediates_only=True, stop_early=True)
        else:
            maps = self.backbone.pyramid(x)[: self.levels]
        return [m / (m.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-6) for m in maps]

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_maps = self._features(real)
        return sum((f - r).pow(2).sum(dim=1).mean() for f, r in zip(self._features(fake), real_maps))

    def train(self, mode: bool = True):  # noqa: D102 - the frozen network stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self


def perceptual_network(registries: Any, config: VQGANConfig, init_context: InitContext | None = None
                       ) -> tuple[FeatureLoss, str]:
    """The frozen feature network and its weights id (part of the cache key); ``init_context``
    is what its init is told (the VQ-GAN's pool and data root)."""
    spec = registries.backbones.get(config.perceptual_model)
    init = registries.inits.get(config.perceptual_init)
    init_context = init_context or InitContext()
    weights_id = init.weights_id(spec, init_context)
    backbone = init.initialize(spec, init_context)
    if not backbone.has_pyramid:
        raise UsageError(f"perceptual network '{spec.name}' gives no feature maps",
                         "choose a CNN backbone for perceptual_model")
    return FeatureLoss(backbone, spec.mean, spec.std, config.perceptual_levels, config.image_size), weights_id


# --------------------------------------------------------------------------- cache
def cache_key(config: VQGANConfig, pool: DatasetSpec, seed: int, perceptual_weights: str) -> str:
    blob = json.dumps({"format": FORMAT, "config": config.as_dict(), "pool": pool.name, "pool_version": pool.version,
                       "seed": seed, "perceptual_weights": perceptual_weights}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def vqgan_dir(key: str) -> Path:
    return cache_home() / "vqgan" / key


@dataclass
class TrainedVQGAN:
    """A trained VQ-GAN from the cache, the pool encoded as codes, and what training measured."""

    model: VQGAN
    directory: Path
    summary: dict

    def codes(self) -> dict:
        return torch.load(self.directory / "codes.pt", weights_only=True)


def _load(directory: Path) -> TrainedVQGAN:
    summary = json.loads((directory / "summary.json").read_text())
    model = VQGAN(VQGANConfig.from_dict(summary["config"]))
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    return TrainedVQGAN(model.eval(), directory, summary)


def _usage(counts: torch.Tensor) -> dict[str, float]:
    total = counts.sum().item()
    probs = counts.float() / max(total, 1)
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum().item()
    return {"codes_used": int((counts > 0).sum()), "perplexity": round(math.exp(entropy), 2)}


def _batches(n: int, batch: int, steps: int, generator: torch.Generator):
    pool: list[int] = []
    for _ in range(steps):
        while len(pool) < min(batch, n):
            pool.extend(torch.randperm(n, generator=generator).tolist())
        yield pool[: min(batch, n)]
        del pool[: min(batch, n)]


def train_vqgan(images: torch.Tensor, config: VQGANConfig, feature_loss: FeatureLoss, seed: int,
                progress: Progress = Progress(), device: str = "cpu",
                on_step: Callable[[int, dict], None] | None = None) -> tuple[VQGAN, dict]:
    """Train on uint8 ``images`` ``[N, 3, S, S]``; return the model and its history/summary."""
    disc_start = round(config.disc_start_share * config.steps)
    history: list[dict] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model, disc = VQGAN(config).to(device), PatchDiscriminator(config.disc_channels).to(device)
        feature_loss = feature_loss.to(device)
        opt_g = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(0.5, 0.9))
        window = torch.zeros(config.codebook_size, dtype=torch.long)
        recent: list[torch.Tensor] = []
        advance = progress.start(f"vqgan: training ({config.steps} steps)", config.steps)
        model.train()
        for step, batch in enumerate(_batches(len(images), config.batch, config.steps, generator)):
            x = to_model_range(images[batch].float().div(255.0)).to(device)
            recon, indices, commit = model(x)
            l1 = (recon - x).abs().mean()  # in [-1, 1] units
            l2 = (recon - x).pow(2).mean()
            perceptual = feature_loss(recon, x)
            loss = l1 + config.l2_weight * l2 + config.perceptual_weight * perceptual + commit
            adversarial = d_loss = torch.zeros(())
            if step >= disc_start:
                adversarial = hinge_g_loss(disc(recon))
                loss = loss + config.disc_weight * adversarial
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            if step >= disc_start:
                d_loss = hinge_d_loss(disc(x), disc(recon.detach()))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            counts = torch.bincount(indices.flatten().cpu(), minlength=config.codebook_size)
            recent.append(counts)
            window += counts
            if len(recent) > USAGE_WINDOW:
                window -= recent.pop(0)
            entry = {"step": step + 1, **{k: round(v.item(), 5) for k, v in (
                ("l1", l1), ("l2", l2), ("perceptual", perceptual), ("commit", commit), ("g_adv", adversarial),
                ("d_loss", d_loss))}, **_usage(window)}
            if on_step:
                on_step(step + 1, entry)
            if (step + 1) % max(1, config.steps // 50) == 0 or step + 1 == config.steps:
                history.append(entry)
            advance(1)
        progress.finish()
    model.eval()
    return model.cpu(), {"history": history, "disc_start_step": disc_start}


def evaluate_pool(model: VQGAN, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, dict]:
    """Encode the whole pool: code indices (int16) and reconstruction L1 / PSNR / codebook usage."""
    codes, l1, mse = [], 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = to_model_range(images[start : start + batch].float().div(255.0))
            indices = model.encode_indices(x)
            recon = model.decode_indices(indices)
            codes.append(indices.to(torch.int16))
            l1 += (to_unit_range(recon) - to_unit_range(x)).abs().mean(dim=(1, 2, 3)).sum().item()
            mse += (to_unit_range(recon) - to_unit_range(x)).pow(2).mean(dim=(1, 2, 3)).sum().item()
    all_codes = torch.cat(codes)
    counts = torch.bincount(all_codes.flatten().long(), minlength=model.config.codebook_size)
    n = len(images)
    return all_codes, {"pool_l1": round(l1 / n, 5), "pool_psnr_db": round(10 * math.log10(1.0 / max(mse / n, 1e-12)), 2),
                       **{f"pool_{k}": v for k, v in _usage(counts).items()}}


def storage_bytes(upstream: UpstreamImages, codes: torch.Tensor, codebook_size: int) -> dict[str, Any]:
    """The pool's size as image files on disk, as JPEG (quality 90, native size: GAIA's pool is
    JPEG), and as bit-packed code indices (``ceil(log2(codebook_size))`` bits per token)."""
    from PIL import Image

    files = sum(p.stat().st_size for p in upstream.paths)
    jpeg = 0
    for path in upstream.paths:
        buffer = io.BytesIO()
        with Image.open(path) as img:
            img.convert("RGB").save(buffer, format="JPEG", quality=90)
        jpeg += buffer.tell()
    bits = max(1, math.ceil(math.log2(codebook_size)))
    packed = math.ceil(codes.numel() * bits / 8)
    return {"n_images": len(upstream.paths), "image_files_bytes": files, "jpeg_q90_bytes": jpeg,
            "codes_bytes": packed, "bits_per_token": bits, "tokens_per_image": int(codes[0].numel()),
            "compression_vs_jpeg": round(jpeg / packed, 2), "compression_vs_files": round(files / packed, 2)}


def get_or_train(registries: Any, pool: DatasetSpec, data_root: Path, config: VQGANConfig, seed: int,
                 progress: Progress = Progress(), device: str = "cpu", log: Callable[[str], None] = lambda m: None
                 ) -> TrainedVQGAN:
    """The cached VQ-GAN for (config, pool, seed), trained and cached first when missing."""
    feature_loss, weights_id = perceptual_network(registries, config,
                                                  InitContext(upstream=pool, data_root=data_root, progress=progress))
    directory = vqgan_dir(cache_key(config, pool, seed, weights_id))
    if (directory / "summary.json").exists():
        log(f"vqgan: cached at {directory}")
        return _load(directory)
    root = prepared_data_dir(data_root, pool)
    upstream = load_upstream(pool, root, config.image_size)
    log(f"vqgan: training on {len(upstream.pixels)} images of {pool.name} ({config.steps} steps)")
    start = time.perf_counter()
    model, trained = train_vqgan(upstream.pixels, config, feature_loss, seed, progress, device)
    seconds = time.perf_counter() - start
    codes, quality = evaluate_pool(model, upstream.pixels)
    summary = {"format": FORMAT, "config": config.as_dict(), "pool": pool.name, "pool_version": pool.version,
               "seed": seed, "perceptual_weights": weights_id, "train_seconds": round(seconds, 2),
               "parameters": sum(p.numel() for p in model.parameters()), **quality,
               "storage": storage_bytes(upstream, codes, config.codebook_size), **trained}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "model.pt.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(directory / "model.pt")
    torch.save({"indices": codes, "labels": upstream.labels, "classes": upstream.classes},
               directory / "codes.pt")
    (directory / "summary.json.tmp").write_text(json.dumps(summary, indent=1))
    (directory / "summary.json.tmp").replace(directory / "summary.json")  # last: marks the entry complete
    log(f"vqgan: pool L1 {quality['pool_l1']}, PSNR {quality['pool_psnr_db']} dB, "
        f"{quality['pool_codes_used']}/{config.codebook_size} codes used; cached at {directory}")
    return TrainedVQGAN(model, directory, summary)


def reconstruct_files(model: VQGAN, paths: Sequence[Path], out: Path, scale: int = 4) -> Path:
    """A PNG grid: one row per image, original | reconstruction (each ``scale`` x enlarged)."""
    from PIL import Image

    size = model.config.image_size
    originals = torch.from_numpy(np.stack([load_image(Path(p), size) for p in paths]))
    recon = to_unit_range(model.reconstruct(to_model_range(originals.float().div(255.0))))
    recon = (recon * 255).round().to(torch.uint8)
    cell, gap = size * scale, 4
    grid = Image.new("RGB", (2 * cell + 3 * gap, len(paths) * (cell + gap) + gap), (255, 255, 255))
    for row, (a, b) in enumerate(zip(originals, recon)):
        for col, pixels in enumerate((a, b)):
            tile = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST)
            grid.paste(tile, (gap + col * (cell + gap), gap + row * (cell + gap)))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


# --------------------------------------------------------------------------- for adaptations
def config_from_hyperparams(hp: dict[str, Any]) -> VQGANConfig:
    """The VQ-GAN a job uses: the defaults with its ``vqgan_*`` hyper-parameters (they are part of
    the job id, so a different VQ-GAN is a different job)."""
    from dataclasses import replace

    if int(hp["vqgan_steps"]) < 1 or int(hp["vqgan_codebook"]) < 2:
        raise UsageError(f"vqgan_steps={hp['vqgan_steps']}, vqgan_codebook={hp['vqgan_codebook']} are too small",
                         "use --hp vqgan_steps=N (N >= 1) and --hp vqgan_codebook=K (K >= 2)")
    return replace(VQGANConfig(), steps=int(hp["vqgan_steps"]), codebook_size=int(hp["vqgan_codebook"]))


def vqgan_for_job(ctx, hp: dict[str, Any]) -> tuple[TrainedVQGAN, float]:
    """The job's VQ-GAN from the cache (trained first when missing) and the seconds this took."""
    registries = ctx.job.registries
    pool = ctx.upstream_pool(str(hp["upstream"]))
    start = time.perf_counter()
    trained = get_or_train(registries, pool, ctx.session.data_root, config_from_hyperparams(hp), int(hp["vqgan_seed"]),
                           ctx.progress, ctx.device)
    return trained, time.perf_counter() - start
