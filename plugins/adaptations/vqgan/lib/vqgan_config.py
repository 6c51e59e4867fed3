"""The VQ-GAN's configuration, importable without torch (adaptation specs list their defaults
from it, and listing plugins must stay fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VQGANConfig:
    """Everything that determines a trained VQ-GAN (with the pool and the seed): its cache key."""

    image_size: int = 32
    channels: tuple[int, ...] = (16, 32, 64)  # per resolution; len - 1 stride-2 steps
    embed_dim: int = 32
    codebook_size: int = 256
    codebook_decay: float = 0.8
    commitment_weight: float = 0.25
    dead_code_threshold: float = 2.0
    disc_channels: int = 32
    # training
    steps: int = 300
    batch: int = 32
    lr: float = 2e-4
    disc_start_share: float = 0.4  # the adversarial loss joins after this share of the steps
    disc_weight: float = 0.1
    perceptual_weight: float = 1.0
    perceptual_model: str = "tf_efficientnet_lite0"  # a frozen registered backbone's pyramid...
    perceptual_init: str = "imagenet"  # ...with this init's weights
    perceptual_levels: int = 2  # the finest pyramid levels compared
    l2_weight: float = 1.0  # reconstruction = L1 + l2_weight * L2

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def tokens_side(self) -> int:
        return self.image_size // self.downsample

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VQGANConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)


# What an adaptation that uses the VQ-GAN adds to its hyper-parameters (part of its job ids).
VQGAN_HYPERPARAMS = {"upstream": "mini", "vqgan_steps": VQGANConfig.steps,
                     "vqgan_codebook": VQGANConfig.codebook_size, "vqgan_seed": 0}
