"""GroupNorm + Weight Standardization: the normalization that lets a network train from scratch
with small batches as well as BatchNorm with ImageNet pretraining (He et al., *Rethinking ImageNet
Pre-training*; SM-NAS trains its searched backbones this way).

:func:`convert_gn_ws` walks a module tree and swaps, in place, every BatchNorm for a GroupNorm
over the same channels (timm's ``BatchNormAct2d`` for a ``GroupNormAct`` keeping its activation)
and every plain convolution for timm's ``StdConv2d``, which standardizes its weights in forward.
Architectures without BatchNorm (ViTs, LayerNorm ConvNeXts) already train from scratch with
their own normalization, so they are left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

MAX_GROUPS = 32  # Wu & He's default
MIN_GROUP_CHANNELS = 4  # narrow layers get fewer groups rather than per-channel (instance) norm


@dataclass(frozen=True)
class Converted:
    batchnorms: int
    convs: int


def num_groups(channels: int, max_groups: int = MAX_GROUPS, min_channels: int = MIN_GROUP_CHANNELS) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` and leaves at least
    ``min_channels`` channels a group (1 group when nothing else fits)."""
    limit = max(1, min(max_groups, channels // min_channels))
    return next(g for g in range(limit, 0, -1) if channels % g == 0)


def _group_norm(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    from timm.layers import BatchNormAct2d, GroupNormAct

    groups = num_groups(bn.num_features)
    if isinstance(bn, BatchNormAct2d):
        gn = GroupNormAct(bn.num_features, groups, eps=bn.eps, affine=True, apply_act=False)
        gn.act, gn.drop = bn.act, bn.drop
        return gn
    return nn.GroupNorm(groups, bn.num_features, eps=bn.eps, affine=True)


def _std_conv(conv: nn.Conv2d) -> nn.Module:
    import torch
    from timm.layers import StdConv2d, StdConv2dSame
    from timm.layers.conv2d_same import Conv2dSame

    kind = StdConv2dSame if isinstance(conv, Conv2dSame) else StdConv2d
    new = kind(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
               padding="SAME" if kind is StdConv2dSame else conv.padding, dilation=conv.dilation, groups=conv.groups,
               bias=conv.bias is not None, eps=1e-5)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _convertible_conv(module: nn.Module) -> bool:
    from timm.layers.conv2d_same import Conv2dSame

    return type(module) is nn.Conv2d and module.padding_mode == "zeros" or type(module) is Conv2dSame


def convert_gn_ws(model: nn.Module) -> Converted:
    """Swap BatchNorm -> GroupNorm and Conv2d -> weight-standardized Conv2d in place; returns the
    counts. A model without BatchNorm is not touched (it has its own scratch-friendly norm)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return Converted(0, 0)
    bns = convs = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, child_name, _group_norm(child))
                bns += 1
            elif _convertible_conv(child):
                setattr(parent, child_name, _std_conv(child))
                convs += 1
    return Converted(bns, convs)
