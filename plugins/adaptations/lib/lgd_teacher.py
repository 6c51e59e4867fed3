"""LGD's label-guided teacher (Zhang et al., *LGD: Label-Guided Self-Distillation for Object
Detection*, AAAI 2022): feature maps made from the labels and the student's own FPN maps, shaped
like the student's, that the student is distilled towards. Used by ``--adapt lgd``
(:mod:`gaia_bench.plugins.adaptations.lgd`); nothing here stays in the evaluated detector.

Three stages, as in the paper:

1. label-appearance encoding: each object's descriptor -- its box normalised to the image,
   ``(x1, y1, x2, y2)``, and its one-hot class, scaled to [-1, 1] -- goes through a PointNet
   (shared per-object MLP, a max-pool over the image's objects for the global feature, the two
   concatenated and fused), with LayerNorm in place of BatchNorm (a detection batch holds few
   objects): the *label embeddings*. The *appearance embeddings* are the student's FPN maps
   (after a 1x1 conv + LayerNorm + ReLU) mean-pooled inside each object's box, on every level;
2. inter-object relation adaptation: multi-head cross-attention on every level, the appearance
   embeddings as queries and the label embeddings as keys and values, each object attending only
   to the objects of its own image;
3. intra-object knowledge mapping: each object's attended embedding is painted into its box on a
   zero map of the level's size (overlapping boxes add up), then a 3x3 conv + ReLU and a small
   conv refinement give the teacher map of that level.

Facts taken from the paper's code (``megvii-research/LGD``), our own implementation: the
appearance embeddings are detached from the student (its Faster R-CNN configs), no context box
(most of its Faster R-CNN configs), LayerNorm without affine parameters, PointNet widths
C/4, C/2, 4C for C output channels (64, 128, 1024 at its C = 256). Left out: PointNet's
spatial-transformer sub-networks (they align rotated point clouds; box descriptors are already in
the image's frame). Added: an object always covers at least the cell holding its box centre, so
a small object still has an embedding (and a painted cell) on the coarse levels.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

def descriptors(boxes: torch.Tensor, labels: torch.Tensor, size: tuple[int, int], num_classes: int) -> torch.Tensor:
    """Each object's descriptor ``(N, 4 + num_classes)``: its box ``(x1, y1, x2, y2)`` in pixels of
    an image of ``size`` (h, w) divided by the image's width and height, then its one-hot class
    (``labels`` 1..C, torchvision's), all mapped from [0, 1] to [-1, 1]."""
    h, w = size
    scale = boxes.new_tensor([w, h, w, h])
    box = (boxes / scale).clamp(0.0, 1.0)
    onehot = torch.nn.functional.one_hot((labels - 1).long(), num_classes).to(box.dtype)
    return torch.cat([box, onehot], dim=1) * 2.0 - 1.0


def box_masks(boxes: torch.Tensor, size: tuple[int, int], map_size: tuple[int, int]) -> torch.Tensor:
    """Which cells of a ``map_size`` (h, w) map each box (pixels of an image of ``size``) covers,
    ``(N, h * w)`` of 0/1: the cells whose centre lies inside the box, and always the cell that
    holds the box's centre."""
    (h, w), (mh, mw) = size, map_size
    sy, sx = mh / h, mw / w
    ys = (torch.arange(mh, device=boxes.device, dtype=boxes.dtype) + 0.5)[None, :, None]
    xs = (torch.arange(mw, device=boxes.device, dtype=boxes.dtype) + 0.5)[None, None, :]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    inside = (xs >= x1 * sx) & (xs <= x2 * sx) & (ys >= y1 * sy) & (ys <= y2 * sy)
    cy = ((boxes[:, 1] + boxes[:, 3]) * 0.5 * sy).long().clamp(0, mh - 1)
    cx = ((boxes[:, 0] + boxes[:, 2]) * 0.5 * sx).long().clamp(0, mw - 1)
    inside[torch.arange(len(boxes), device=boxes.device), cy, cx] = True
    return inside.flatten(1).to(boxes.dtype)


def mask_pool(feature: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The mean of ``feature`` (C, h, w) over each mask's cells: ``(N, C)``."""
    pooled = masks @ feature.flatten(1).T
    return pooled / masks.sum(dim=1, keepdim=True).clamp(min=1.0)


def paint(embeddings: torch.Tensor, masks: torch.Tensor, map_size: tuple[int, int]) -> torch.Tensor:
    """Each object's embedding (``(N, C)``) written into its mask's cells of a zero map, overlaps
    added: ``(C, h, w)``."""
    return (embeddings.T @ masks).view(embeddings.shape[1], *map_size)


def _layer_norm_2d(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels, affine=False)  # one group: LayerNorm over (C, h, w)


class LabelEncoder(nn.Module):
    """The PointNet: descriptors ``(T, in_dim)`` of a batch's objects, ``counts`` of them per
    image -> label embeddings ``(T, out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        local, mid, wide = max(8, out_dim // 4), max(16, out_dim // 2), 4 * out_dim
        self.local = nn.Sequential(nn.Linear(in_dim, local), nn.LayerNorm(local, elementwise_affine=False), nn.ReLU())
        self.wide = nn.Sequential(nn.Linear(local, mid), nn.LayerNorm(mid, elementwise_affine=False), nn.ReLU(),
                                  nn.Linear(mid, wide), nn.LayerNorm(wide, elementwise_affine=False), nn.ReLU())
        self.fuse = nn.Sequential(nn.Linear(local + wide, out_dim), nn.LayerNorm(out_dim, elementwise_affine=False),
                                  nn.ReLU())

    def forward(self, x: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        local = self.local(x)
        wide = self.wide(local)
        pooled = [part.max(dim=0).values.expand(len(part), -1)  # the image's global feature, per object
                  for part in wide.split(list(counts)) if len(part)]
        return self.fuse(torch.cat([local, torch.cat(pooled)], dim=1))


class LabelGuidedTeacher(nn.Module):
    """``forward(features, boxes, labels, size)``: the student's FPN maps (``(B, C, h_l, w_l)`` per
    level), each image's boxes ``(N_i, 4)`` (pixels of an input of ``size``) and labels ``(N_i,)``
    (1..C) -> one teacher map per level, of the same shapes."""

    def __init__(self, num_classes: int, channels: int, heads: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encoder = LabelEncoder(4 + num_classes, channels)
        self.label_proj = nn.Sequential(nn.Linear(channels, channels), nn.LayerNorm(channels, elementwise_affine=False),
                                        nn.ReLU())
        self.appearance_proj = nn.Sequential(nn.Conv2d(channels, channels, 1), _layer_norm_2d(channels), nn.ReLU())
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.object_proj = nn.Linear(channels, channels)
        self.map_proj = nn.Conv2d(channels, channels, 3, padding=1)
        self.refine = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), _layer_norm_2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), _layer_norm_2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), _layer_norm_2d(channels))

    def interactions(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                     labels: Sequence[torch.Tensor], size: tuple[int, int]) -> list[tuple[torch.Tensor, list]]:
        """Per level: every object's attended embedding ``(T, C)`` (the batch's objects in order)
        and each image's box masks on that level."""
        counts = [len(b) for b in boxes]
        desc = torch.cat([descriptors(b, l, size, self.num_classes) for b, l in zip(boxes, labels)])
        keys = self.label_proj(self.encoder(desc, counts)).unsqueeze(0)  # (1, T, C)
        image_of = torch.repeat_interleave(torch.arange(len(counts), device=desc.device),
                                           torch.tensor(counts, device=desc.device))
        blocked = image_of[:, None] != image_of[None, :]  # each object attends within its image only
        out = []
        for feature in features:
            appearance = self.appearance_proj(feature.detach())
            masks = [box_masks(b, size, tuple(feature.shape[-2:])) for b in boxes]
            query = torch.cat([mask_pool(a, m) for a, m in zip(appearance, masks)]).unsqueeze(0)
            attended = self.attention(query, keys, keys, attn_mask=blocked, need_weights=False)[0][0]
            out.append((attended, masks))
        return out

    def paint_levels(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                     labels: Sequence[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """The painted maps (before the convolutions), one per level."""
        if sum(len(b) for b in boxes) == 0:
            return [torch.zeros_like(f) for f in features]
        counts = [len(b) for b in boxes]
        painted = []
        for feature, (attended, masks) in zip(features, self.interactions(features, boxes, labels, size)):
            per_image = self.object_proj(attended).split(counts)
            painted.append(torch.stack([paint(e, m, tuple(feature.shape[-2:])) for e, m in zip(per_image, masks)]))
        return painted

    def forward(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                labels: Sequence[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        return [self.refine(torch.relu(self.map_proj(p))) for p in self.paint_levels(features, boxes, labels, size)]
