"""A small VQ-GAN for small images: the generative model that MF's stage 1 trains on the upstream
pool and that ``vqgan-replay`` stores the pool in.

* Encoder: convolutions and residual blocks, two stride-2 steps (32 px -> an 8 x 8 grid of tokens).
* Codebook: ``vector_quantize_pytorch.VectorQuantize`` (EMA codebook, k-means initialised, dead
  codes re-seeded from the batch), so a token is one index into ``codebook_size`` vectors.
* Decoder: the mirror image, ending in ``tanh`` (images live in [-1, 1]).
* Patch discriminator: a PatchGAN that scores overlapping patches real / reconstructed.

The training losses live in :mod:`gaia_bench.plugins.adaptations.vqgan.lib.vqgan_train`; this module is the model and
its public operations: :meth:`VQGAN.encode_indices`, :meth:`VQGAN.decode_indices`,
:meth:`VQGAN.reconstruct`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from vector_quantize_pytorch import VectorQuantize

from gaia_bench.plugins.adaptations.vqgan.lib.vqgan_config import VQGANConfig


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1), ResBlock(channels[0])]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), ResBlock(c_out)]
        layers += [_norm(channels[-1]), nn.SiLU(), nn.Conv2d(channels[-1], embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], embed_dim: int) -> None:
        super().__init__()
        rev = channels[::-1]
        layers: list[nn.Module] = [nn.Conv2d(embed_dim, rev[0], 3, padding=1), ResBlock(rev[0])]
        for c_in, c_out in zip(rev, rev[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1), ResBlock(c_out)]
        layers += [_norm(rev[-1]), nn.SiLU(), nn.Conv2d(rev[-1], 3, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PatchDiscriminator(nn.Module):
    """PatchGAN: one logit per overlapping patch (a 32 px image gives a 7 x 7 map)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels * 2, 4, stride=2, padding=1), _norm(channels * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(channels * 2, channels * 2, 3, padding=1), _norm(channels * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(channels * 2, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VQGAN(nn.Module):
    """Encoder, codebook and decoder (the discriminator is trained beside it, not part of it).

    Images in and out are ``[B, 3, S, S]`` in [-1, 1]; use :func:`to_model_range` /
    :func:`to_unit_range` at the edges."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.channels, config.embed_dim)
        self.quantizer = VectorQuantize(
            dim=config.embed_dim, codebook_size=config.codebook_size, decay=config.codebook_decay,
            commitment_weight=config.commitment_weight, kmeans_init=True,
            threshold_ema_dead_code=config.dead_code_threshold, accept_image_fmap=True,
        )
        self.decoder = Decoder(config.channels, config.embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, indices ``[B, h, w]``, commitment loss)."""
        quantized, indices, commit = self.quantizer(self.encoder(x))
        return self.decoder(quantized), indices, commit.sum()

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices ``[B, h, w]`` (int64) of images in [-1, 1]; the codebook is not updated."""
        was_training = self.training
        self.eval()
        _, indices, _ = self.quantizer(self.encoder(x))
        self.train(was_training)
        return indices

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from code indices ``[B, h, w]``."""
        return self.decoder(self.quantizer.get_output_from_indices(indices))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_indices(self.encode_indices(x))


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return images * 2.0 - 1.0


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
