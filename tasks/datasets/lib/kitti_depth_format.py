"""Depth ground truth in the two formats monocular-depth code reads (BTS, AdaBins, ...).

* KITTI (depth completion ``data_depth_annotated``, used for the Eigen split): a 16-bit greyscale
  PNG, ``value = round(metres × 256)``, 0 = no measurement. Real ground truth is projected lidar:
  sparse, and nothing beyond its range — :func:`lidar_pattern` imitates that (scan lines on about a
  quarter of the rows, a jittered subsample of columns on each) and :data:`KITTI_MAX_DEPTH_M` caps it.
* NYU Depth v2 as BTS distributes it (``sync_depth_*.png``): a dense 16-bit PNG in millimetres,
  0 = no measurement; depths beyond the format's 65.535 m are written as 0, like a sensor out of
  range.

Readers return float32 metres with 0 = invalid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaia_bench.errors import DataError

KITTI_SCALE = 256.0
KITTI_MAX_DEPTH_M = 80.0
NYU_SCALE = 1000.0
NYU_MAX_DEPTH_M = 65535 / NYU_SCALE


def lidar_pattern(shape: tuple[int, int], rng: np.random.Generator, row_step: int = 4, col_step: int = 2) -> np.ndarray:
    """Where a scanning lidar lands: every ``row_step``-th row (random phase), and on each of those
    rows one column per ``col_step``-wide cell at a random position in it."""
    rows, cols = shape
    keep = np.zeros(shape, dtype=bool)
    scan_rows = np.arange(int(rng.integers(0, row_step)), rows, row_step)
    cells = np.arange(0, cols, col_step)
    jitter = rng.integers(0, col_step, size=(len(scan_rows), len(cells)))
    columns = np.minimum(cells[None, :] + jitter, cols - 1)
    keep[scan_rows[:, None], columns] = True
    return keep


def _quantize(depth_m: np.ndarray, scale: float, max_depth_m: float, keep: np.ndarray | None) -> np.ndarray:
    valid = (depth_m > 0) & (depth_m <= max_depth_m)
    if keep is not None:
        valid &= keep
    values = np.where(valid, np.rint(depth_m.astype(np.float64) * scale), 0)
    return np.clip(values, 0, 65535).astype(np.uint16)


def _write_png16(path: Path, values: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = values.shape
    Image.frombytes("I;16", (cols, rows), values.astype("<u2").tobytes()).save(path)


def _read_png16(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.exists():
        raise DataError(f"missing depth map {path}", "re-create the dataset with `gaia-bench datasets prepare`")
    with Image.open(path) as png:
        if png.mode not in ("I;16", "I;16B", "I"):
            raise DataError(f"{path} is a {png.mode} image, expected a 16-bit greyscale PNG",
                            "write depth as uint16 (KITTI: metres × 256, NYU: millimetres)")
        return np.array(png).astype(np.uint16)


def write_kitti_depth(path: Path, depth_m: np.ndarray, keep: np.ndarray | None = None) -> None:
    """KITTI ground truth: metres × 256 where ``keep`` (all pixels when None) has a depth ≤ 80 m."""
    _write_png16(path, _quantize(depth_m, KITTI_SCALE, KITTI_MAX_DEPTH_M, keep))


def read_kitti_depth(path: Path) -> np.ndarray:
    return (_read_png16(path) / np.float32(KITTI_SCALE)).astype(np.float32)


def write_nyu_depth(path: Path, depth_m: np.ndarray) -> None:
    """Dense NYU-style ground truth in millimetres; 0 where there is no depth or it exceeds 65.535 m."""
    _write_png16(path, _quantize(depth_m, NYU_SCALE, NYU_MAX_DEPTH_M, None))


def read_nyu_depth(path: Path) -> np.ndarray:
    return (_read_png16(path) / np.float32(NYU_SCALE)).astype(np.float32)
