"""The VQ-GAN: it learns (reconstruction error falls within a few steps, more than one code is
used), its codes round-trip, and `gaia-bench vqgan train / reconstruct` cache it and write a PNG."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gaia_bench.manager import get_registries
from gaia_bench.jobs import prepared_data_dir
from gaia_bench.paths import data_root
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan import to_model_range
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_config import VQGANConfig
from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train import (
    evaluate_pool,
    load_upstream,
    perceptual_network,
    resolve_upstream,
    train_vqgan,
)
from tests.helpers import cli

pytestmark = pytest.mark.slow

TINY = replace(VQGANConfig(), channels=(8, 16, 32), embed_dim=16, codebook_size=32, disc_channels=8, steps=25,
               batch=16, lr=1e-3, disc_start_share=0.6)


@pytest.fixture(scope="module")
def pool_images() -> torch.Tensor:
    registries = get_registries()
    pool = resolve_upstream(registries, "mini")
    upstream = load_upstream(pool, prepared_data_dir(data_root(), pool), TINY.image_size)
    return upstream.pixels[torch.randperm(len(upstream.pixels), generator=torch.Generator().manual_seed(0))[:96]]


@pytest.fixture(scope="module")
def trained(pool_images):
    feature_loss, _ = perceptual_network(get_registries(), TINY)
    return train_vqgan(pool_images, TINY, feature_loss, seed=0)


def test_reconstruction_error_falls_and_several_codes_are_used(trained, pool_images):
    model, record = trained
    history = record["history"]
    assert [h["step"] for h in history] == list(range(1, 26))
    first, last = history[0]["l1"], sum(h["l1"] for h in history[-3:]) / 3
    assert last < 0.7 * first, (first, last)
    assert record["disc_start_step"] == 15 and history[-1]["d_loss"] > 0 and history[0]["d_loss"] == 0
    _, quality = evaluate_pool(model, pool_images)
    assert quality["pool_codes_used"] > 1 and quality["pool_perplexity"] > 1


def test_codes_round_trip(trained, pool_images):
    model, _ = trained
    x = to_model_range(pool_images[:8].float() / 255)
    indices = model.encode_indices(x)
    assert indices.shape == (8, 8, 8) and indices.dtype == torch.long
    assert 0 <= int(indices.min()) and int(indices.max()) < TINY.codebook_size
    with torch.no_grad():
        quantized, direct_indices, _ = model.quantizer(model.encoder(x))
        assert torch.equal(direct_indices, indices)
        assert torch.allclose(model.decode_indices(indices), model.decoder(quantized), atol=1e-6)
        # stored as int16 (as the replay keeps them) they decode the same
        assert torch.equal(model.decode_indices(indices.to(torch.int16).long()), model.decode_indices(indices))


def test_cli_trains_once_and_writes_a_reconstruction_grid(tmp_path):
    from PIL import Image

    images = sorted((data_root() / "mini-upstream" / "surfaces" / "coins").glob("*.png"))[:3]
    assert len(images) == 3
    trained = cli(["vqgan", "train", "--upstream", "mini", "--steps", "2"])
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "codes used" in trained.stdout and "x the codes" in trained.stdout
    out = tmp_path / "grid.png"
    result = cli(["vqgan", "reconstruct", *map(str, images), "--out", str(out), "--steps", "2"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cached at" in result.stderr and "training on" not in result.stderr  # the cached model, not retrained
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.size == (2 * 128 + 3 * 4, 3 * (128 + 4) + 4)
    bad = cli(["vqgan", "reconstruct", str(tmp_path / "missing.png"), "--steps", "2"])
    assert bad.returncode != 0 and "no such image file" in bad.stderr and "Traceback" not in bad.stderr
