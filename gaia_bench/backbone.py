"""The runtime face of every backbone: pooled features, and a feature pyramid where possible."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from gaia_bench.errors import GaiaBenchError


class Backbone(nn.Module):
    """Wraps a plugin's network behind one contract.

    ``forward(x)`` returns pooled features ``[B, num_features]``; ``pyramid(x)`` returns feature
    maps from fine to coarse with ``pyramid_channels`` / ``pyramid_reductions``, or raises a clear
    error when the architecture cannot give one."""

    def __init__(self, trunk: nn.Module, num_features: int, *, name: str,
                 pool: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                 pyramid: Callable[[nn.Module, torch.Tensor], list[torch.Tensor]] | None = None,
                 pyramid_channels: Sequence[int] = (), pyramid_reductions: Sequence[int] = (),
                 no_pyramid_reason: str = "") -> None:
        super().__init__()
        self.trunk = trunk
        self.num_features = int(num_features)
        self.name = name
        self._pool = pool
        self._pyramid = pyramid
        self.pyramid_channels = tuple(pyramid_channels)
        self.pyramid_reductions = tuple(pyramid_reductions)
        self.no_pyramid_reason = no_pyramid_reason

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(self.trunk, x) if self._pool else self.trunk(x)

    @property
    def has_pyramid(self) -> bool:
        return self._pyramid is not None

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._pyramid is None:
            reason = self.no_pyramid_reason or "not supported"
            raise GaiaBenchError(f"backbone '{self.name}' gives no feature pyramid: {reason}",
                                 "dense tasks need a backbone with multi-scale features (e.g. a timm CNN or ViT)")
        return self._pyramid(self.trunk, x)
