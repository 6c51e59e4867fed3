"""Synthetic scenes with exact geometry for the dense datasets of the offline ``mini`` suite.

Detection, segmentation and depth need pixel-exact ground truth that ships with the code and works
without a network, so the scenes are drawn rather than downloaded — but from real photographs:
the ground, the wall and the objects' surfaces are pixels of scikit-image's bundled grass, gravel
and brick photos. One generator serves all three tasks, so every image's boxes, class map and depth
map describe the same geometry:

* a pinhole camera (focal ``FOCAL`` px, principal point at the image centre) ``CAMERA_HEIGHT_M``
  above a flat ground; the ground at depth Z appears on row ``horizon + f·h/Z``;
* above the horizon a brick wall "at infinity" (no depth: invalid, as lidar sees nothing there);
* 1–5 objects of ``CLASSES`` standing on the ground at a metric depth Z in [4, 60] m, their image
  size ``f·size/Z``, drawn far-to-near so nearer objects occlude farther ones; classes are
  long-tailed (frequency ∝ ``CLASS_DECAY``**class index).

Pixel coordinates are continuous with pixel ``(row r, col c)`` covering ``[c, c+1) × [r, r+1)``;
boxes are tight boxes of the visible mask in that convention (0-based xyxy, right/bottom exclusive).
Each image's randomness comes from ``numpy.random.default_rng([seed, index])``: an image does not
depend on how many images were generated before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
CLASS_DECAY = 0.6
ROWS, COLS = 128, 192
FOCAL = 150.0
CAMERA_HEIGHT_M = 1.6
HORIZON_ROW = 44.0
HORIZON_JITTER = 4.0  # rows: a little camera pitch per image
DEPTH_RANGE_M = (4.0, 60.0)
MAX_OBJECTS = 5
MIN_VISIBLE_PX = 20  # smaller instances are not drawn at all (labels stay exhaustive)
DIFFICULT_VISIBLE_FRACTION = 0.3
HAZE_M = 150.0  # atmospheric haze: contrast halves every ~100 m
TEXTURE_PX_PER_M = 48.0
TEXTURE_SIZE = 512  # scikit-image's grass, gravel and brick are 512×512

# Class-typical appearance: base colour (RGB), physical height in metres, width / height.
# Colours are jittered per instance enough that neighbouring hues overlap: shape has to matter.
STYLES: dict[str, tuple[tuple[int, int, int], float, float]] = {
    "circle": ((200, 55, 50), 1.6, 1.0),
    "square": ((55, 95, 200), 1.5, 1.0),
    "triangle": ((215, 185, 55), 1.9, 1.1),
    "star": ((225, 125, 40), 1.9, 1.0),
    "ring": ((150, 65, 170), 1.8, 1.0),
    "cross": ((45, 165, 150), 1.6, 1.0),
}
COLOUR_JITTER = 30.0
ROTATION_DEG = 15.0


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera above a flat ground; ``horizon`` is a continuous row."""

    focal: float
    height_m: float
    horizon: float
    rows: int = ROWS
    cols: int = COLS

    def ground_row(self, depth_m: float) -> float:
        return self.horizon + self.focal * self.height_m / depth_m

    def ground_depth(self, row_centre: np.ndarray) -> np.ndarray:
        """Depth (camera Z, metres) of the ground seen at these pixel-centre rows (below horizon)."""
        return self.focal * self.height_m / (row_centre - self.horizon)


@dataclass(frozen=True)
class Instance:
    """One drawn object. ``mask`` is what is visible, ``amodal`` the whole shape inside the image."""

    label: int
    depth_m: float
    mask: np.ndarray
    amodal: np.ndarray
    box: tuple[int, int, int, int]  # tight box of ``mask``: x1, y1, x2, y2 (right/bottom exclusive)
    truncated: bool  # the shape extends beyond the image border
    difficult: bool  # less than DIFFICULT_VISIBLE_FRACTION of the in-image shape is visible

    @property
    def name(self) -> str:
        return CLASSES[self.label]

    @property
    def visible_fraction(self) -> float:
        return float(self.mask.sum()) / float(self.amodal.sum())


@dataclass(frozen=True)
class Scene:
    """An image and its exact annotations; ``instances`` are ordered far to near.

    ``semantic``: 0 background, ``label + 1`` on object pixels. ``instance_map``: 0 background,
    ``i + 1`` on the visible pixels of ``instances[i]``. ``depth``: metres, 0 where there is no
    surface at finite distance (the wall above the horizon).
    """

    image: np.ndarray
    instances: tuple[Instance, ...]
    semantic: np.ndarray
    instance_map: np.ndarray
    depth: np.ndarray
    camera: Camera


def class_probabilities() -> np.ndarray:
    weights = CLASS_DECAY ** np.arange(len(CLASSES), dtype=np.float64)
    return weights / weights.sum()


@lru_cache(maxsize=1)
def _textures() -> dict[str, np.ndarray]:
    """scikit-image's bundled real photographs (512×512 greyscale), scaled to [0, 1]."""
    from skimage import data

    return {name: getattr(data, name)().astype(np.float32) / 255.0 for name in ("grass", "gravel", "brick")}


# ----------------------------------------------------------------------------- shapes
def _in_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorized over points."""
    inside = np.zeros(x.shape, dtype=bool)
    vx, vy = vertices[:, 0], vertices[:, 1]
    j = len(vertices) - 1
    for i in range(len(vertices)):
        crosses = (vy[i] > y) != (vy[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (vx[j] - vx[i]) * (y - vy[i]) / (vy[j] - vy[i]) + vx[i]
        inside ^= crosses & (x < x_at)
        j = i
    return inside


def _star_vertices(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_TRIANGLE = np.array([[0.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
_STAR = _star_vertices()

# Predicates on shape coordinates in [-1, 1]² (y grows downwards, like image rows).
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda x, y: x * x + y * y <= 1.0,
    "square": lambda x, y: np.maximum(np.abs(x), np.abs(y)) <= 1.0,
    "triangle": lambda x, y: _in_polygon(x, y, _TRIANGLE),
    "star": lambda x, y: _in_polygon(x, y, _STAR),
    "ring": lambda x, y: (x * x + y * y <= 1.0) & (x * x + y * y >= 0.55**2),
    "cross": lambda x, y: (np.maximum(np.abs(x), np.abs(y)) <= 1.0) & (np.minimum(np.abs(x), np.abs(y)) <= 0.33),
}


@dataclass(frozen=True)
class _Placed:
    """An object sampled in the world, before occlusion is resolved."""

    label: int
    depth_m: float
    amodal: np.ndarray
    truncated: bool
    colour: np.ndarray
    texture_offset: tuple[int, int]


def _shape_mask(camera: Camera, label: int, depth_m: float, centre_col: float, size_m: float,
                aspect: float, angle: float) -> tuple[np.ndarray, bool]:
    """The shape's pixels (pixel centres inside it) and whether it extends beyond the image."""
    height_px = camera.focal * size_m / depth_m
    width_px = height_px * aspect
    base = camera.ground_row(depth_m)
    centre_row = base - height_px / 2
    reach = 0.75 * max(height_px, width_px)
    r0, r1 = int(np.floor(centre_row - reach)), int(np.ceil(centre_row + reach))
    c0, c1 = int(np.floor(centre_col - reach)), int(np.ceil(centre_col + reach))
    mask = np.zeros((camera.rows, camera.cols), dtype=bool)
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, camera.rows), max(c0, 0), min(c1, camera.cols)
    if rr0 < rr1 and cc0 < cc1:
        dy, dx = np.mgrid[rr0:rr1, cc0:cc1].astype(np.float64) + 0.5
        dy -= centre_row
        dx -= centre_col
        cos, sin = np.cos(angle), np.sin(angle)
        x = (cos * dx + sin * dy) / (width_px / 2)
        y = (-sin * dx + cos * dy) / (height_px / 2)
        mask[rr0:rr1, cc0:cc1] = SHAPES[CLASSES[label]](x, y)
    truncated = (centre_col - width_px / 2 < 0 or centre_col + width_px / 2 > camera.cols
                 or centre_row - height_px / 2 < 0 or base > camera.rows)
    return mask, truncated


def _sample_objects(rng: np.random.Generator, camera: Camera) -> list[_Placed]:
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    labels = rng.choice(len(CLASSES), size=count, p=class_probabilities())
    placed = []
    for label in labels:
        colour_base, size_m, aspect = STYLES[CLASSES[label]]
        depth_m = float(np.float32(np.exp(rng.uniform(np.log(DEPTH_RANGE_M[0]), np.log(DEPTH_RANGE_M[1])))))
        centre_col = float(rng.uniform(-0.05, 1.05) * camera.cols)
        size = size_m * float(rng.uniform(0.8, 1.25))
        shape_aspect = aspect * float(rng.uniform(0.85, 1.15))
        angle = float(np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG)))
        amodal, truncated = _shape_mask(camera, int(label), depth_m, centre_col, size, shape_aspect, angle)
        colour = (np.array(colour_base, dtype=np.float32) + rng.normal(0, COLOUR_JITTER, 3).astype(np.float32))
        colour *= np.float32(rng.uniform(0.75, 1.2))
        offset = (int(rng.integers(0, TEXTURE_SIZE - ROWS)), int(rng.integers(0, TEXTURE_SIZE - COLS)))
        placed.append(_Placed(int(label), depth_m, amodal, truncated, colour, offset))
    return placed


def _keep_visible(placed: list[_Placed]) -> list[_Placed]:
    """Near-to-far: drop objects left with fewer than MIN_VISIBLE_PX visible pixels (never drawn)."""
    kept, covered = [], None
    for obj in sorted(placed, key=lambda o: o.depth_m):
        visible = obj.amodal if covered is None else obj.amodal & ~covered
        if int(visible.sum()) < MIN_VISIBLE_PX:
            continue
        kept.append(obj)
        covered = obj.amodal.copy() if covered is None else covered | obj.amodal
    return kept


# ----------------------------------------------------------------------------- rendering
def _haze(depth_m: np.ndarray | float) -> np.ndarray:
    return 1.0 - np.exp(-np.asarray(depth_m, dtype=np.float32) / np.float32(HAZE_M))


def _tint(texture: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Real texture pixels as the brightness of a colour."""
    return (0.55 + 0.9 * texture)[..., None] * colour


def _background(rng: np.random.Generator, camera: Camera, haze_colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textured ground in perspective below the horizon, a brick wall above; and the depth map."""
    textures = _textures()
    ground_name = "grass" if rng.random() < 0.5 else "gravel"
    ground_colour = (np.array((95, 135, 60) if ground_name == "grass" else (140, 130, 115), dtype=np.float32)
                     + rng.normal(0, 12, 3).astype(np.float32))
    wall_colour = np.array((150, 85, 65), dtype=np.float32) + rng.normal(0, 15, 3).astype(np.float32)
    offset = rng.uniform(0, TEXTURE_SIZE, 2)

    rows = np.arange(camera.rows, dtype=np.float64) + 0.5
    first = int(np.searchsorted(rows, camera.horizon, side="right"))  # first row centre below the horizon
    depth_rows = np.zeros(camera.rows, dtype=np.float64)
    depth_rows[first:] = camera.ground_depth(rows[first:])
    ground_z = depth_rows[first:, None]
    lateral = (np.arange(camera.cols, dtype=np.float64) + 0.5 - camera.cols / 2)[None, :] * ground_z / camera.focal
    ty = np.floor(ground_z * TEXTURE_PX_PER_M + offset[0]).astype(np.int64) % TEXTURE_SIZE
    tx = np.floor(lateral * TEXTURE_PX_PER_M + offset[1]).astype(np.int64) % TEXTURE_SIZE
    texels = textures[ground_name][ty, tx]
    haze = _haze(ground_z)[..., None]

    wy, wx = int(rng.integers(0, TEXTURE_SIZE - 2 * first)), int(rng.integers(0, TEXTURE_SIZE - 2 * camera.cols))
    wall = _tint(textures["brick"][wy:wy + 2 * first:2, wx:wx + 2 * camera.cols:2], wall_colour)

    image = np.empty((camera.rows, camera.cols, 3), dtype=np.float32)
    image[:first] = wall * 0.75 + haze_colour * 0.25
    image[first:] = _tint(texels, ground_colour) * (1 - haze) + haze_colour * haze
    depth = np.repeat(depth_rows.astype(np.float32)[:, None], camera.cols, axis=1)
    return image, depth


def generate_scene(seed: int, index: int) -> Scene:
    """Image ``index`` of the scene stream ``seed``."""
    rng = np.random.default_rng([seed, index])
    camera = Camera(FOCAL, CAMERA_HEIGHT_M, HORIZON_ROW + float(rng.uniform(-HORIZON_JITTER, HORIZON_JITTER)))
    haze_colour = np.array((190, 200, 215), dtype=np.float32) + rng.normal(0, 8, 3).astype(np.float32)
    image, depth = _background(rng, camera, haze_colour)

    for _ in range(100):
        kept = _keep_visible(_sample_objects(rng, camera))
        if kept:
            break
    else:  # pragma: no cover - each object is kept with probability ~0.8
        raise RuntimeError(f"scene {seed}/{index}: no visible object after 100 draws")

    gravel = _textures()["gravel"]
    instance_map = np.zeros((camera.rows, camera.cols), dtype=np.int16)
    ordered = sorted(kept, key=lambda o: -o.depth_m)  # painter's order: far to near
    for i, obj in enumerate(ordered):
        ys, xs = np.nonzero(obj.amodal)
        oy, ox = obj.texture_offset
        shade = (1.1 - 0.2 * ys / camera.rows).astype(np.float32)[:, None]  # lit from above
        surface = _tint(gravel[oy + ys, ox + xs], obj.colour) * shade
        haze = _haze(obj.depth_m)
        image[ys, xs] = surface * (1 - haze) + haze_colour * haze
        depth[ys, xs] = obj.depth_m
        instance_map[ys, xs] = i + 1

    image += 3.0 * rng.standard_normal((camera.rows, camera.cols, 1), dtype=np.float32)  # sensor noise
    instances, semantic = [], np.zeros((camera.rows, camera.cols), dtype=np.uint8)
    for i, obj in enumerate(ordered):
        mask = instance_map == i + 1
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        instance = Instance(obj.label, obj.depth_m, mask, obj.amodal, box, obj.truncated, difficult=False)
        instances.append(replace(instance, difficult=instance.visible_fraction < DIFFICULT_VISIBLE_FRACTION))
        semantic[mask] = obj.label + 1
    return Scene(np.clip(np.rint(image), 0, 255).astype(np.uint8), tuple(instances), semantic,
                 instance_map, depth, camera)
