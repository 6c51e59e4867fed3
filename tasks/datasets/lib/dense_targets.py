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


@dataclass(frozen=True)
class FaceTarget(DetectionTarget):
    """WIDER FACE: boxes are ``(x, y, x + w, y + h)`` from the ``x y w h`` annotation (what the
    official evaluation compares with its ``+1`` overlap); ``easy`` / ``medium`` / ``hard`` say which
    faces each evaluation setting keeps (the official ``wider_*_val.mat`` lists on val). ``difficult``
    marks faces no detector should be trained on (invalid or zero-sized)."""

    easy: tuple[bool, ...] = ()
    medium: tuple[bool, ...] = ()
    hard: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("easy", "medium", "hard"):
            if len(getattr(self, name)) != len(self.boxes):
                raise ValueError(f"{len(getattr(self, name))} {name} flags for {len(self.boxes)} faces")


@dataclass(frozen=True)
class PedestrianTarget(DetectionTarget):
    """CityPersons: full-body boxes, ``visibility`` = visible-box area / full-box area, ``ignore`` for
    boxes the MR⁻² evaluation must not count as pedestrians (ignore regions, riders, sitting or other
    persons, groups). Ignored boxes are also ``difficult``, so no detector trains on them."""

    visibility: tuple[float, ...] = ()
    ignore: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not len(self.visibility) == len(self.ignore) == len(self.boxes):
            raise ValueError(f"{len(self.visibility)} visibilities and {len(self.ignore)} ignore flags "
                             f"for {len(self.boxes)} boxes")
