"""Tile windows over a pixel grid.

Tiles have a fixed size and overlap. Along each axis the starts advance by
``size - overlap``; the last tile is shifted back so that it ends exactly on
the image edge (the edge handling of the U-Net thesis): no tile runs outside
the image and no strip is left unread. A grid smaller than one tile gets one
tile, padded by the reader.

Each tile also *owns* a part of the grid: the boundary between two neighbours
is the middle of their overlap. Owned regions partition the grid exactly; the
stitcher uses them to decide which tile reports an object seen by two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["axis_starts", "axis_owned", "Tiling"]


def axis_starts(length: int, size: int, overlap: int) -> np.ndarray:
    """Start offsets of tiles along one axis of ``length`` pixels.

    >>> axis_starts(10, 4, 1).tolist()
    [0, 3, 6]
    >>> axis_starts(11, 4, 1).tolist()
    [0, 3, 6, 7]
    >>> axis_starts(3, 4, 1).tolist()
    [0]
    """
    if length <= size:
        return np.zeros(1, dtype=np.int64)
    stride = size - overlap
    starts = np.arange(0, length - size, stride, dtype=np.int64)
    return np.unique(np.append(starts, length - size))


def axis_owned(starts: np.ndarray, length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Owned interval ``[lo, hi)`` of each tile: neighbours split their overlap in the middle.

    Boundaries are whole pixels, so owned regions tile the axis exactly.
    """
    ends = np.minimum(starts + size, length)
    mids = (ends[:-1] + starts[1:]) // 2  # middle of the overlap between tile i and i+1
    lo = np.concatenate([[0], mids]).astype(np.int64)
    hi = np.concatenate([mids, [length]]).astype(np.int64)
    return lo, hi


@dataclass(frozen=True)
class Tiling:
    """All tiles of a ``width`` x ``height`` grid, row-major."""

    width: int
    height: int
    size: int
    overlap: int

    def __post_init__(self) -> None:
        xs = axis_starts(self.width, self.size, self.overlap)
        ys = axis_starts(self.height, self.size, self.overlap)
        xlo, xhi = axis_owned(xs, self.width, self.size)
        ylo, yhi = axis_owned(ys, self.height, self.size)
        object.__setattr__(self, "_x", (xs, xlo, xhi))
        object.__setattr__(self, "_y", (ys, ylo, yhi))

    def __len__(self) -> int:
        return len(self._x[0]) * len(self._y[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(tile rows, tile columns)."""
        return len(self._y[0]), len(self._x[0])

    def tile(self, i: int) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) of tile ``i``; width/height clipped to the grid."""
        nrow, ncol = self.shape
        r, c = divmod(i, ncol)
        x0, y0 = int(self._x[0][c]), int(self._y[0][r])
        return x0, y0, min(self.size, self.width - x0), min(self.size, self.height - y0)

    def owned(self, i: int) -> tuple[int, int, int, int]:
        """Owned region (col_lo, row_lo, col_hi, row_hi) of tile ``i`` in grid pixels."""
        nrow, ncol = self.shape
        r, c = divmod(i, ncol)
        return int(self._x[1][c]), int(self._y[1][r]), int(self._x[2][c]), int(self._y[2][r])

    def owned_arrays(self, ids: np.ndarray) -> np.ndarray:
        """Owned regions of many tiles, (K, 4) [col_lo, row_lo, col_hi, row_hi]."""
        ncol = self.shape[1]
        r, c = np.divmod(np.asarray(ids, dtype=np.int64), ncol)
        return np.stack([self._x[1][c], self._y[1][r], self._x[2][c], self._y[2][r]], axis=1)

    def tile_arrays(self, ids: np.ndarray) -> np.ndarray:
        """Tile extents of many tiles, (K, 4) [col_lo, row_lo, col_hi, row_hi]."""
        ncol = self.shape[1]
        r, c = np.divmod(np.asarray(ids, dtype=np.int64), ncol)
        x0, y0 = self._x[0][c], self._y[0][r]
        return np.stack([x0, y0, np.minimum(x0 + self.size, self.width), np.minimum(y0 + self.size, self.height)], axis=1)
