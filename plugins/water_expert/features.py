"""The experts' per-pixel features: NDWI (optical) and an SFS direction-lines homogeneity (SAR).

Both are plain numpy/scipy on one tile, (H, W) float arrays in, (H, W) out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ndwi", "sfs_homogeneity", "mean_filter", "to_linear", "DIRECTIONS"]

#: the 8 direction lines of the SFS feature, as (d_row, d_col) steps
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def ndwi(green: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """McFeeters' Normalised Difference Water Index (green - nir) / (green + nir), in [-1, 1].

    Pixels where green + nir is 0 (both bands empty) get 0, the fixed threshold.

    >>> ndwi(np.array([0.3, 0.1, 0.0]), np.array([0.1, 0.3, 0.0])).round(2).tolist()
    [0.5, -0.5, 0.0]
    """
    g = np.asarray(green, np.float32)
    n = np.asarray(nir, np.float32)
    s = g + n
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(s > 0, (g - n) / np.where(s > 0, s, 1), 0.0)
    return np.clip(v, -1, 1).astype(np.float32)


def to_linear(vv: np.ndarray) -> np.ndarray:
    """Backscatter in linear power; a tile whose median is negative is taken to be in dB and converted.

    Linear sigma0 is never negative (noise-subtracted products dip below 0 on
    a few pixels, never at the median), dB values of land and water always are.
    """
    x = np.asarray(vv, np.float32)
    if np.nanmedian(x) < 0:
        return (10.0 ** (x / 10.0)).astype(np.float32)
    return np.maximum(x, 0.0)


def sfs_homogeneity(x: np.ndarray, t1: float, t2: int, directions=DIRECTIONS) -> np.ndarray:
    """Mean length of the SFS direction lines of every pixel, divided by ``t2`` (0..1).

    After Huang, Zhang & Li (2007), "An SVM ensemble approach combining
    spectral, structural, and semantic features for the classification of
    high-resolution remotely sensed imagery" (the Structural Feature Set): from
    every pixel a line is extended in each direction, pixel by pixel, while the
    value stays within ``t1`` of the central pixel's value, up to ``t2``
    pixels. Long lines = a locally homogeneous neighbourhood. Here the feature
    is the mean line length over 8 directions (SFS's mean/"length" member).
    Pixels outside the array are treated as stopping the line (edge).

    On linear backscatter with an absolute ``t1`` this measures darkness and
    smoothness together: speckle is multiplicative, so a dark water surface
    fluctuates by far less than ``t1`` and bright land by far more.
    """
    x = np.asarray(x, np.float32)
    h, w = x.shape
    pad = int(t2)
    xp = np.pad(x, pad, mode="constant", constant_values=np.inf)  # outside: never within t1
    total = np.zeros((h, w), np.float32)
    for dr, dc in directions:
        alive = np.ones((h, w), bool)
        for k in range(1, pad + 1):
            r0, c0 = pad + dr * k, pad + dc * k
            nb = xp[r0: r0 + h, c0: c0 + w]
            alive &= np.abs(nb - x) < t1
            if not alive.any():
                break
            total += alive
    return total / (len(directions) * float(t2))


def mean_filter(x: np.ndarray, size: int = 7) -> np.ndarray:
    """``size`` x ``size`` moving average (edges: nearest value repeated)."""
    from scipy import ndimage

    return ndimage.uniform_filter(np.asarray(x, np.float32), size=size, mode="nearest")
