"""Rows of a cached feature matrix, read in blocks (a library: registers nothing).

The probes that work on cached features (``knn``, ``ridge``) name the rows they use (the subset, its
fit part) instead of slicing the matrix: a slice is a copy, and a 100% ImageNet subset's copy is
another 10 GB (1.2M x 2048 float32). Blocks also bound what is moved to the device at once.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def row_blocks(features: np.ndarray, rows: Sequence[int] | np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, features[rows[start:start + size]])`` for consecutive blocks of ``rows``, in order."""
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), size):
        yield start, features[rows[start:start + size]]
