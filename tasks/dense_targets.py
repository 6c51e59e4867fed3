"""What ``Sample.target`` holds for the dense tasks: small frozen records that dataset readers fill
and task plugins consume, so a detection or depth metric never has to know a file format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DetectionTarget:
    """Boxes are 0-based continuous ``(x1, y1, x2, y2)``: pixel ``c`` covers ``[c, c+1)``, so a box
    over columns 0..W-1 is ``(0, ·, W, ·)``. ``labels`` index the dataset's ``classes``;
    ``difficult`` objects are ignored by VOC's mAP (neither hits nor misses)."""

    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]
    difficult: tuple[bool, ...]
    width: int
    height: int

    def __post_init__(self) -> None:
        if not len(self.boxes) == len(self.labels) == len(self.difficult):
            raise ValueError(f"{len(self.boxes)} boxes, {len(self.labels)} labels, "
                             f"{len(self.difficult)} difficult flags")


@dataclass(frozen=True)
class SegmentationTarget:
    """A class-index PNG (VOC: palette indices, 0 = background, ``ignore_index`` = void)."""

    mask_path: Path
    ignore_index: int = 255


@dataclass(frozen=True)
class DepthTarget:
    """A 16-bit depth PNG: ``kind`` says its encoding (``kitti``: metres × 256, ``nyu``: millimetres;
    0 = invalid in both); evaluation caps at ``max_depth`` metres (KITTI 80, NYU 10 by convention)."""

    depth_path: Path
    max_depth: float
    kind: Literal["kitti", "nyu"]
